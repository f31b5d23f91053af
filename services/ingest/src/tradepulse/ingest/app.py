"""The service's assembly and life cycle: settings → logging → database → NATS → subscribers →
metrics → ping, then run until SIGTERM/SIGINT and stop cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys

from nats.aio.msg import Msg
from pydantic import ValidationError

from tradepulse.common.bus import connect, ensure_streams
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.common.logging import configure_logging, get_logger
from tradepulse.common.metrics import new_registry, serve_metrics
from tradepulse.ingest.exchange import ExchangeFactory, ccxt_factory
from tradepulse.ingest.handlers import Deps
from tradepulse.ingest.metrics import IngestMetrics
from tradepulse.ingest.settings import IngestSettings
from tradepulse.ingest.snapshots import NatsSnapshotStore, NatsUploadStore
from tradepulse.ingest.subscribers import build_app

SERVICE = "ingest"
SCHEMA = "market"

log = get_logger(__name__)


async def run(
    settings: IngestSettings,
    stop: asyncio.Event,
    *,
    exchange_factory: ExchangeFactory | None = None,
) -> None:
    """Serve until `stop` is set. `exchange_factory` replaces the real ccxt exchanges."""
    names = settings.names
    pool = await create_pool(settings.database_url)
    try:
        applied = await apply_migrations(pool, SCHEMA, "tradepulse.ingest.migrations")
        if applied:
            log.info("migrations applied", migrations=applied)
        nc = await connect(settings.nats_url, f"{SERVICE}-{settings.replica}")
        try:
            js = nc.jetstream()
            await ensure_streams(js, names, settings.stream_replicas)
            registry = new_registry()
            deps = Deps(
                pool=pool,
                snapshots=NatsSnapshotStore(await js.object_store(names.candles_bucket)),
                uploads=NatsUploadStore(js, names.uploads_bucket),
                exchange_factory=exchange_factory or ccxt_factory(settings.exchange_timeout_ms),
                settings=settings,
                metrics=IngestMetrics.register(registry),
            )
            app = build_app(deps, js, registry)
            await app.start()
            try:
                metrics_port = serve_metrics(registry, settings.metrics_port)

                async def pong(msg: Msg) -> None:
                    await msg.respond(b"pong")

                ping = await nc.subscribe(names.ping(SERVICE), queue=names.ingest_queue, cb=pong)
                log.info("ready", namespace=names.prefix, metrics_port=metrics_port)
                await stop.wait()
                await ping.unsubscribe()
            finally:
                await app.stop()
        finally:
            await nc.drain()
    finally:
        await pool.close()
    log.info("stopped")


async def _serve(settings: IngestSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)


def main() -> int:
    try:
        settings = IngestSettings()
    except ValidationError as exc:
        print(f"{SERVICE}: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(SERVICE, settings.log_level, settings.log_json)
    try:
        asyncio.run(_serve(settings))
    except ConnectionError as exc:
        log.error("cannot start", error=str(exc))
        return 1
    return 0
