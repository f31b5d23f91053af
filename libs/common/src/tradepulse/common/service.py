"""One service skeleton, the life of every TradePulse service process.

    settings → logging → pool → migrations → connection → streams → the service's endpoints
    → metrics → ping → run until SIGTERM/SIGINT → teardown

A service gives a `ServiceSpec` (its name, schema and migrations package) and a `Setup`: an
async function that builds its dependencies from the `Runtime` and registers its endpoints
with `Runtime.consume` (JetStream pull consumers), `Runtime.respond` (request/reply, in the
service's queue group), `Runtime.background` (periodic tasks) and `Runtime.on_stop` (its own
teardown steps). Its `main()` is then
`return run_service(SPEC, Settings, setup)`.

Ping: every replica answers `Names.ping(<service>)` (no queue group) with its replica name
(`TP_REPLICA`) as plain bytes, and subscribes to it last, so that an answer means "ready".

Teardown, in reverse order: run the on-stop hooks, stop the consumers (a message in hand is nak'ed for another
replica), the responders, the ping and the background tasks, then close NATS and the pool.
Each step is bounded by `CommonSettings.shutdown_grace_s`, so a lost database or NATS cannot
keep the process from exiting.

Exit codes of `run_service`: 0 after a clean stop, 1 when a server cannot be reached at start,
2 for invalid settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from tradepulse.common.bus import connect, ensure_streams
from tradepulse.common.contracts.base import Message
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.common.logging import configure_logging, get_logger
from tradepulse.common.metrics import new_registry, serve_metrics
from tradepulse.common.settings import CommonSettings
from tradepulse.common.subscribe import (
    Consumer,
    ConsumerSpec,
    EndpointMetrics,
    GiveUp,
    Handler,
    Responder,
    respond,
)

S = TypeVar("S", bound=CommonSettings)
M = TypeVar("M", bound=Message)
Q = TypeVar("Q", bound=Message)

log = get_logger(__name__)


@dataclass(frozen=True)
class ServiceSpec:
    """What the skeleton needs to know of a service."""

    name: str  # "ingest": log field, ping subject, queue group, NATS connection name
    schema: str  # the PostgreSQL schema it owns, e.g. "market"
    migrations: str  # the package holding the schema's NNNN_name.sql files
    pool_size: int = 5
    # Run on every new pool connection (e.g. type codecs).
    pool_init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None


class Runtime(Generic[S]):
    """The resources the skeleton opened, handed to the service's setup, and the endpoints
    the setup registered (the skeleton stops them at teardown)."""

    def __init__(
        self,
        spec: ServiceSpec,
        settings: S,
        pool: asyncpg.Pool,
        nc: NatsClient,
        registry: CollectorRegistry,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.names: Names = settings.names
        self.pool = pool
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.registry = registry
        self.endpoint_metrics = EndpointMetrics.register(registry)
        self._consumers: list[Consumer[Any]] = []
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []

    async def consume(
        self,
        spec: ConsumerSpec,
        contract: type[M],
        handler: Handler[M],
        *,
        give_up: GiveUp[M] | None = None,
    ) -> Consumer[M]:
        consumer = Consumer(
            self.js, spec, contract, handler, give_up=give_up, metrics=self.endpoint_metrics
        )
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def respond(
        self, subject: str, contract: type[Q], handler: Responder[Q], *, name: str
    ) -> None:
        subscription = await respond(
            self.nc,
            subject,
            contract,
            handler,
            service=self.spec.name,
            name=name,
            queue=self.spec.name,
            metrics=self.endpoint_metrics,
        )
        self._subscriptions.append(subscription)

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` first at teardown, before the endpoints stop (e.g. to hand work back);
        bounded by the grace period like every other step."""
        self._on_stop.append(hook)

    def background(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run `work` until teardown; it is cancelled then."""
        self._tasks.append(asyncio.create_task(work, name=name))

    async def _ping(self) -> None:
        replica = self.settings.replica.encode()

        async def pong(msg: Msg) -> None:
            if msg.reply:
                with contextlib.suppress(nats.errors.Error):
                    await msg.respond(replica)

        self._subscriptions.append(
            await self.nc.subscribe(self.names.ping(self.spec.name), cb=pong)
        )

    async def _stop_endpoints(self, grace: float) -> None:
        for hook in reversed(self._on_stop):
            try:
                await asyncio.wait_for(hook(), grace)
            except Exception as exc:  # teardown goes on: the process must exit
                log.warning("stop_hook_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.gather(*(c.stop(grace) for c in self._consumers))
        for subscription in self._subscriptions:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await asyncio.wait_for(subscription.unsubscribe(), grace)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)


Setup = Callable[[Runtime[S]], Awaitable[None]]


async def serve(spec: ServiceSpec, settings: S, setup: Setup[S], stop: asyncio.Event) -> None:
    """Open everything, let `setup` register the endpoints, answer pings until `stop` is set,
    then tear down (see the module doc). A server that cannot be reached at start raises
    ConnectionError."""
    grace = settings.shutdown_grace_s
    names = settings.names
    pool = await create_pool(settings.database_url, max_size=spec.pool_size, init=spec.pool_init)
    try:
        applied = await apply_migrations(pool, spec.schema, spec.migrations)
        if applied:
            log.info("migrations_applied", schema=spec.schema, migrations=applied)
        nc = await connect(settings.nats_url, f"{spec.name}-{settings.replica}")
        try:
            await ensure_streams(nc.jetstream(), names, settings.stream_replicas)
            runtime = Runtime(spec, settings, pool, nc, new_registry())
            try:
                await setup(runtime)
                port = serve_metrics(runtime.registry, settings.metrics_port)
                await runtime._ping()
                log.info(
                    "ready", namespace=names.prefix, replica=settings.replica, metrics_port=port
                )
                await stop.wait()
                log.info("stopping")
            finally:
                await runtime._stop_endpoints(grace)
        finally:
            # Every message handled has been settled by now; draining would only wait for
            # the open fetches of the pull subscriptions to time out.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await asyncio.wait_for(nc.close(), grace)
    finally:
        try:
            await asyncio.wait_for(pool.close(), grace)
        except (TimeoutError, OSError, asyncpg.exceptions.PostgresError):
            pool.terminate()
    log.info("stopped")


def run_service(spec: ServiceSpec, settings_type: type[S], setup: Setup[S]) -> int:
    """A service's `main()`: settings from the environment, logging, then `serve` until
    SIGTERM or SIGINT. Returns the process's exit code."""
    try:
        settings = settings_type()
    except ValidationError as exc:
        print(f"{spec.name}: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(spec.name, settings.log_level, settings.log_json)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(spec, settings, setup, stop)

    try:
        asyncio.run(main())
    except ConnectionError as exc:
        log.error("cannot_start", error=str(exc))
        return 1
    return 0
