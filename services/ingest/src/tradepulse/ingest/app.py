"""The service's assembly on the common skeleton (`tradepulse.common.service`): its
dependencies from the runtime the skeleton opened, then its endpoints."""

from __future__ import annotations

import asyncio

from tradepulse.common.service import Runtime, ServiceSpec, Setup, run_service, serve
from tradepulse.ingest import subscribers
from tradepulse.ingest.exchange import ExchangeFactory, ccxt_factory
from tradepulse.ingest.handlers import Deps
from tradepulse.ingest.metrics import IngestMetrics
from tradepulse.ingest.settings import IngestSettings
from tradepulse.ingest.snapshots import NatsSnapshotStore, NatsUploadStore

SPEC = ServiceSpec(name="ingest", schema="market", migrations="tradepulse.ingest.migrations")


def setup_with(exchange_factory: ExchangeFactory | None) -> Setup[IngestSettings]:
    """The service's setup; `exchange_factory` replaces the real ccxt exchanges."""

    async def setup(rt: Runtime[IngestSettings]) -> None:
        settings = rt.settings
        deps = Deps(
            pool=rt.pool,
            snapshots=NatsSnapshotStore(await rt.js.object_store(rt.names.candles_bucket)),
            uploads=NatsUploadStore(rt.js, rt.names.uploads_bucket),
            exchange_factory=exchange_factory or ccxt_factory(settings.exchange_timeout_ms),
            settings=settings,
            metrics=IngestMetrics.register(rt.registry),
        )
        await subscribers.register(rt, deps)

    return setup


async def run(
    settings: IngestSettings,
    stop: asyncio.Event,
    *,
    exchange_factory: ExchangeFactory | None = None,
) -> None:
    """Serve in this process until `stop` is set."""
    await serve(SPEC, settings, setup_with(exchange_factory), stop)


def main() -> int:
    return run_service(SPEC, IngestSettings, setup_with(None))
