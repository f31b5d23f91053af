"""The NATS endpoints: decode, call the handler, publish what it returns; the common consumer
settles each delivery (see `tradepulse.common.subscribe`)."""

from __future__ import annotations

import structlog

from tradepulse.common.bus import publish
from tradepulse.common.contracts.charts import GetCandles, GetGaps
from tradepulse.common.contracts.market import (
    CandlesIngested,
    CoverageQuery,
    GetIngest,
    IngestRequested,
)
from tradepulse.common.logging import get_logger
from tradepulse.common.service import Runtime
from tradepulse.common.subscribe import AckPolicy, ConsumerSpec
from tradepulse.ingest import handlers
from tradepulse.ingest.errors import give_up_reason
from tradepulse.ingest.settings import IngestSettings

# An exchange pull can take minutes; heartbeats every ACK_WAIT_S / 3 keep it held meanwhile.
ACK_WAIT_S = 60.0
# Fixed in code: a durable consumer keeps the max_deliver it was created with, and the give-up
# must happen on the delivery the server treats as the last.
MAX_DELIVER = 5
MAX_RETRY_DELAY_S = 60.0

log = get_logger(__name__)


def ack_policy(settings: IngestSettings) -> AckPolicy:
    """Every failure is retried (bugs included), with a delay doubling per delivery; after
    MAX_DELIVER deliveries the request is refused for good and leaves the work queue."""
    return AckPolicy(
        ack_wait_s=ACK_WAIT_S,
        max_deliver=MAX_DELIVER,
        retry_delay_s=settings.redelivery_delay_s,
        retry_backoff=2.0,
        max_retry_delay_s=MAX_RETRY_DELAY_S,
    )


async def register(rt: Runtime[IngestSettings], deps: handlers.Deps) -> None:
    """The ingest work-queue consumer and the coverage, candles, gaps and import-status responders."""
    names = rt.names

    async def on_ingest_requested(request: IngestRequested) -> None:
        with structlog.contextvars.bound_contextvars(request_id=request.request_id):
            outcome = await handlers.ingest(request, deps)
            subject = (
                names.candles_ingested
                if isinstance(outcome, CandlesIngested)
                else names.ingest_failed
            )
            await publish(rt.js, subject, outcome)

    async def give_up(request: IngestRequested, error: Exception, attempts: int) -> None:
        with structlog.contextvars.bound_contextvars(request_id=request.request_id):
            # The client reads a fixed text per kind of failure; the exception goes to the log.
            log.error(
                "ingest_given_up",
                attempts=attempts,
                exc_info=error,
            )
            failed = await handlers.refuse(
                request, {"reason": give_up_reason(error, attempts)}, deps
            )
            await publish(rt.js, names.ingest_failed, failed)

    await rt.consume(
        ConsumerSpec(
            name="ingest_requested",
            stream=names.ingest_stream,
            subject=names.ingest_requested,
            durable=names.ingest_durable,
            policy=ack_policy(deps.settings),
        ),
        IngestRequested,
        on_ingest_requested,
        give_up=give_up,
    )
    await rt.respond(
        names.coverage, CoverageQuery, lambda q: handlers.coverage(q, deps), name="coverage"
    )
    await rt.respond(
        names.get_candles, GetCandles, lambda q: handlers.candles(q, deps), name="get_candles"
    )
    await rt.respond(names.get_gaps, GetGaps, lambda q: handlers.gaps(q, deps), name="get_gaps")
    await rt.respond(
        names.get_ingest, GetIngest, lambda q: handlers.ingest_status(q, deps), name="get_ingest"
    )
