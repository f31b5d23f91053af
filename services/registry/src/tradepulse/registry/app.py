"""The registry's factory and entry point: wire settings, database, NATS and subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from faststream import FastStream
from faststream.nats import NatsBroker
from faststream.nats.prometheus import NatsPrometheusMiddleware
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from tradepulse.common import bus
from tradepulse.common.contracts.registry import ConfigPromoted
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.common.logging import configure_logging, get_logger
from tradepulse.common.metrics import new_registry, serve_metrics
from tradepulse.registry import subscribers
from tradepulse.registry.handlers import Deps
from tradepulse.registry.metrics import RegistryMetrics
from tradepulse.registry.outbox import Outbox
from tradepulse.registry.repository import Repository
from tradepulse.registry.settings import RegistrySettings

SERVICE = "registry"
SCHEMA = "registry"

log = get_logger(__name__)


def create_app(settings: RegistrySettings, deps: Deps, registry: CollectorRegistry) -> FastStream:
    broker = NatsBroker(
        settings.nats_url,
        name=f"{SERVICE}-{settings.replica}",
        max_reconnect_attempts=-1,
        # FastStream's own lines go through structlog (JSON off a TTY); per-message lines
        # only at DEBUG, so that every query does not write two log lines.
        logger=get_logger("faststream"),
        log_level=logging.DEBUG,
        middlewares=[NatsPrometheusMiddleware(registry=registry, app_name=f"tradepulse-{SERVICE}")],
    )
    subscribers.register(broker, deps)
    return FastStream(broker)


async def serve(settings: RegistrySettings) -> None:
    """Run until SIGTERM or SIGINT, then stop taking work and release every connection."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    names = settings.names

    pool = await create_pool(settings.database_url)
    try:
        applied = await apply_migrations(pool, SCHEMA, "tradepulse.registry.migrations")
        log.info("migrations_applied", applied=applied)
        nc = await bus.connect(settings.nats_url, f"{SERVICE}-{settings.replica}-js")
        try:
            js = nc.jetstream()
            await bus.ensure_streams(js, names, settings.stream_replicas)
            registry = new_registry()
            metrics = RegistryMetrics(registry)
            repo = Repository(pool)

            async def publish(subject: str, message: ConfigPromoted) -> object:
                return await bus.publish(js, subject, message)

            outbox = Outbox(repo, publish, metrics)
            # Events a previous run committed but never published go out before new work.
            await outbox.try_flush()
            deps = Deps(
                repo=repo, outbox=outbox, names=names, rules=settings.rules, metrics=metrics
            )
            app = create_app(settings, deps, registry)
            await app.start()
            relay = asyncio.create_task(outbox.run(settings.outbox_interval_s))
            try:
                port = serve_metrics(registry, settings.metrics_port)

                async def pong(msg: Msg) -> None:
                    await msg.respond(b"pong")

                await nc.subscribe(names.ping(SERVICE), queue=names.registry_queue, cb=pong)
                log.info("ready", metrics_port=port, namespace=names.prefix)
                await stop.wait()
                log.info("stopping")
            finally:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
                await app.stop()
        finally:
            await nc.drain()
    finally:
        await pool.close()


def main() -> int:
    settings = RegistrySettings()
    configure_logging(SERVICE, settings.log_level, settings.log_json)
    try:
        asyncio.run(serve(settings))
    except ConnectionError as exc:
        log.error("cannot_start", error=str(exc))
        return 1
    log.info("stopped")
    return 0
