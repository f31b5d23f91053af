"""The registry's assembly on the common skeleton (`tradepulse.common.service`): repository,
outbox and endpoints from the runtime the skeleton opened."""

from __future__ import annotations

from tradepulse.common import bus
from tradepulse.common.contracts.registry import ConfigPromoted
from tradepulse.common.service import Runtime, ServiceSpec, run_service
from tradepulse.registry import subscribers
from tradepulse.registry.handlers import Deps
from tradepulse.registry.metrics import RegistryMetrics
from tradepulse.registry.outbox import Outbox
from tradepulse.registry.repository import Repository
from tradepulse.registry.settings import RegistrySettings

SPEC = ServiceSpec(name="registry", schema="registry", migrations="tradepulse.registry.migrations")


async def setup(rt: Runtime[RegistrySettings]) -> None:
    settings = rt.settings
    metrics = RegistryMetrics(rt.registry)
    repo = Repository(rt.pool)

    async def publish(subject: str, message: ConfigPromoted) -> object:
        return await bus.publish(rt.js, subject, message)

    outbox = Outbox(repo, publish, metrics)
    # Events a previous run committed but never published go out before new work.
    await outbox.try_flush()
    deps = Deps(repo=repo, outbox=outbox, names=rt.names, rules=settings.rules, metrics=metrics)
    await subscribers.register(rt, deps)
    rt.background(outbox.run(settings.outbox_interval_s), name="outbox")


def main() -> int:
    return run_service(SPEC, RegistrySettings, setup)
