"""The NATS endpoints, and the only FastStream code: decode, call the handler, publish, ack."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
import structlog
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsMessage, PullSub
from faststream.nats.prometheus import NatsPrometheusMiddleware
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as ServerAckPolicy
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from tradepulse.common.bus import publish
from tradepulse.common.contracts.base import ErrorReply
from tradepulse.common.contracts.market import (
    CandlesIngested,
    CoverageQuery,
    GetIngest,
    IngestRequested,
)
from tradepulse.common.logging import get_logger
from tradepulse.ingest import handlers

ACK_WAIT_S = 60.0
HEARTBEAT_S = ACK_WAIT_S / 3
# Fixed in code: a durable consumer keeps the max_deliver it was created with, and the give-up
# below must happen on the delivery the server treats as the last.
MAX_DELIVER = 5
MAX_RETRY_DELAY_S = 60.0

log = get_logger(__name__)


def build_app(deps: handlers.Deps, js: JetStreamContext, registry: CollectorRegistry) -> FastStream:
    """The broker with the ingest work-queue consumer and the coverage responder."""
    settings = deps.settings
    names = settings.names
    broker = NatsBroker(
        settings.nats_url,
        name=f"ingest-{settings.replica}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        # FastStream's own lines go through structlog like the rest; per-message lines only at
        # DEBUG, so that every coverage query does not write two log lines.
        logger=get_logger("faststream"),
        log_level=logging.DEBUG,
        middlewares=[NatsPrometheusMiddleware(registry=registry, app_name="tradepulse-ingest")],
    )

    @broker.subscriber(
        names.ingest_requested,
        stream=JStream(name=names.ingest_stream, declare=False),
        durable=names.ingest_durable,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        config=ConsumerConfig(
            ack_policy=ServerAckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_deliver=MAX_DELIVER
        ),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_ingest_requested(msg: NatsMessage) -> None:
        try:
            request = IngestRequested.from_bytes(msg.body)
        except ValidationError as exc:
            log.error("dropped a message that is not an IngestRequested", error=str(exc))
            await msg.reject()
            return
        with structlog.contextvars.bound_contextvars(request_id=request.request_id):
            heartbeat = asyncio.create_task(_keep_alive(msg))
            try:
                await _ingest(request, msg, deps, js)
            finally:
                heartbeat.cancel()

    @broker.subscriber(names.coverage, queue=names.ingest_queue)
    async def on_coverage(msg: NatsMessage) -> bytes:
        try:
            query = CoverageQuery.from_bytes(msg.body)
        except ValidationError as exc:
            log.warning("refused a malformed CoverageQuery", error=str(exc))
            return ErrorReply(error=f"not a CoverageQuery: {exc}").to_bytes()
        return (await handlers.coverage(query, deps)).to_bytes()

    @broker.subscriber(names.get_ingest, queue=names.ingest_queue)
    async def on_get_ingest(msg: NatsMessage) -> bytes:
        try:
            query = GetIngest.from_bytes(msg.body)
        except ValidationError as exc:
            log.warning("refused a malformed GetIngest", error=str(exc))
            return ErrorReply(error=f"not a GetIngest: {exc}").to_bytes()
        return (await handlers.ingest_status(query, deps)).to_bytes()

    return FastStream(broker)


async def _ingest(
    request: IngestRequested,
    msg: NatsMessage,
    deps: handlers.Deps,
    js: JetStreamContext,
) -> None:
    names = deps.settings.names
    try:
        outcome = await handlers.ingest(request, deps)
        subject = (
            names.candles_ingested if isinstance(outcome, CandlesIngested) else names.ingest_failed
        )
        await publish(js, subject, outcome)
    except Exception as exc:  # every failure here is retried by redelivery, bugs included
        delivered = msg.raw_message.metadata.num_delivered
        if delivered < MAX_DELIVER:
            log.warning(
                "ingest attempt failed; it will be delivered again",
                attempt=delivered,
                error=f"{type(exc).__name__}: {exc}",
            )
            delay = deps.settings.redelivery_delay_s * 2 ** (delivered - 1)
            await msg.nack(delay=min(MAX_RETRY_DELAY_S, delay))
            return
        log.exception("ingest gave up", attempts=delivered)
        failed = await handlers.refuse(
            request,
            {"reason": f"gave up after {delivered} attempts: {type(exc).__name__}: {exc}"},
            deps,
        )
        await publish(js, names.ingest_failed, failed)
    await msg.ack_sync()


async def _keep_alive(msg: NatsMessage) -> None:
    """Tell JetStream the request is still being worked on, so it is not handed to another
    replica while a long exchange pull runs."""
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        # A lost heartbeat only risks a redelivery, which the handler tolerates.
        with contextlib.suppress(nats.errors.Error):
            await msg.in_progress()
