"""The gateway's factory and entry point: settings → logging → the FastAPI app → uvicorn.

The app owns one NATS connection, opened in its lifespan (never at import time). Until it is
up, /health answers and everything that needs the services answers 503.
"""

from __future__ import annotations

import gc
import logging
import resource
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

import uvicorn
from fastapi import Depends, FastAPI
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import ValidationError

from tradepulse.common.contracts.market import CandlesIngested, IngestFailed
from tradepulse.common.logging import configure_logging, get_logger
from tradepulse.common.metrics import serve_metrics
from tradepulse.gateway import dashboard, errors
from tradepulse.gateway.auth import ApiKeys
from tradepulse.gateway.backend import Backend, decode
from tradepulse.gateway.connections import guarded_protocol
from tradepulse.gateway.fanout import LiveHub
from tradepulse.gateway.metrics import GatewayMetrics
from tradepulse.gateway.middleware import GatewayMiddleware
from tradepulse.gateway.routes import (
    charts,
    config_status,
    configs,
    data,
    ensembles,
    health,
    strategies,
    training,
)
from tradepulse.gateway.settings import ConfigurationError, GatewaySettings, check_startable
from tradepulse.gateway.state import Gateway
from tradepulse.gateway.strict import strict_input
from tradepulse.gateway.tracking import RecentJobs

SERVICE = "gateway"
GRACEFUL_SHUTDOWN_S = 5

log = get_logger(__name__)

DESCRIPTION = """
Train and validate trading strategies over HTTP.

Every `POST` needs `Authorization: Bearer <key>` (keys from `TRADEPULSE_API_KEYS`); so do the
`GET`s under `/api/` unless `GATEWAY_OPEN_READS=true`. Errors answer
`{"detail": "...", "request_id": "...", "errors": [{"field": ..., "reason": ...}]}`.
"""


def version() -> str:
    try:
        return metadata.version("tradepulse-gateway")
    except metadata.PackageNotFoundError:
        return "0"


def create_app(settings: GatewaySettings) -> FastAPI:
    check_startable(settings)
    metrics = GatewayMetrics()
    keys = ApiKeys(settings.api_keys)
    backend = Backend(settings, metrics)
    gw = Gateway(
        settings=settings,
        keys=keys,
        metrics=metrics,
        backend=backend,
        recent_jobs=RecentJobs(settings.recent_job_ttl_s),
        streams=LiveHub(settings.names),
    )
    names = settings.names

    async def pong(msg: Msg) -> None:
        await msg.respond(settings.replica.encode())

    async def on_ingest_event(msg: Msg) -> None:
        outcome: CandlesIngested | IngestFailed | None = (
            decode(CandlesIngested, msg.data)
            if msg.subject == names.candles_ingested
            else decode(IngestFailed, msg.data)
        )
        if outcome is not None:
            gw.ingests.record(outcome)

    async def on_connect(nc: NatsClient) -> None:
        # Every replica answers (no queue group) with its name, as the supervisor expects.
        await nc.subscribe(names.ping(SERVICE), cb=pong)
        await nc.subscribe(names.candles_ingested, cb=on_ingest_event)
        await nc.subscribe(names.ingest_failed, cb=on_ingest_event)

    backend.on_connect(on_connect)
    backend.on_connect(gw.streams.setup)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not keys.configured:
            log.warning(
                "no_api_keys",
                detail="TRADEPULSE_API_KEYS is empty: every request that needs a key is refused",
            )
        await backend.start()
        port = serve_metrics(metrics.registry, settings.metrics_port)
        log.info(
            "started",
            namespace=names.prefix,
            keys=[k.name for k in settings.api_keys],
            open_reads=settings.open_reads,
            metrics_port=port,
        )
        try:
            yield
        finally:
            await backend.stop()
            log.info("stopped")

    app = FastAPI(
        title="TradePulse",
        version=version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # Every route refuses input that could be read more than one way (see strict).
        dependencies=[Depends(strict_input)],
    )
    app.state.gateway = gw
    errors.install(app)
    for module in (training, ensembles, configs, config_status, charts, data, strategies, health):
        app.include_router(module.router)
    dashboard.install(app)
    app.add_middleware(GatewayMiddleware, settings=settings, keys=keys, metrics=metrics)
    return app


class _UvicornToStructlog(logging.Handler):
    """uvicorn's own lines (start, stop, protocol errors) in the same JSON as the rest."""

    def emit(self, record: logging.LogRecord) -> None:
        get_logger(record.name).log(record.levelno, record.getMessage())


def _route_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [_UvicornToStructlog()]
        logger.propagate = False


# File descriptors kept for what is not a client connection: NATS, logs, metrics, uploads.
RESERVED_FDS = 100


def max_connections(settings: GatewaySettings) -> int:
    """GATEWAY_MAX_CONNECTIONS, but never more than the file descriptors allow (the soft
    limit is raised to the hard one first): running out of them is what stops `/ready`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft == resource.RLIM_INFINITY:
        return settings.max_connections
    return max(1, min(settings.max_connections, soft - RESERVED_FDS))


def main() -> int:
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        print(f"tradepulse gateway: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(SERVICE, settings.log_level, settings.log_json)
    _route_uvicorn_logs()
    try:
        app = create_app(settings)
    except ConfigurationError as exc:
        log.error("cannot_start", error=str(exc))
        return 2
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            server_header=False,
            # Slowloris: bounded header time, header size and connections (see connections).
            http=guarded_protocol(settings.header_timeout_s, max_connections(settings)),
            h11_max_incomplete_event_size=settings.max_header_bytes,
            timeout_keep_alive=settings.keep_alive_s,
        )
    )
    # What is built by now (modules, the app, its schemas: some 130,000 objects) lives as long
    # as the process; frozen, a full collection no longer walks it each time a burst of
    # connections promotes enough objects (one took 0.1 s, and 500 live streams opened at once
    # waited for several: tests/benchmarks/bench_live_streams.py).
    gc.collect()
    gc.freeze()
    server.run()
    return 0 if server.started else 1
