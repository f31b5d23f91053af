"""Training jobs through the bus: validate against the data, submit, look up, cancel."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import structlog

from tradepulse.common.contracts.base import ID_PATTERN
from tradepulse.common.contracts.market import CoverageQuery, CoverageReply, DatasetCoverage
from tradepulse.common.contracts.registry import ConfigReply, GetConfig
from tradepulse.common.contracts.training import (
    TERMINAL_STATUSES,
    CancelJob,
    CancelReply,
    GetJob,
    JobReply,
    JobView,
    TrainingRequested,
)
from tradepulse.common.logging import get_logger
from tradepulse.gateway.backend import PublishError
from tradepulse.gateway.errors import (
    ApiError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from tradepulse.gateway.schemas.common import iso_ms, to_ms
from tradepulse.gateway.schemas.training import TrainingBody, queued_view
from tradepulse.gateway.state import Gateway
from tradepulse.quant import get_strategy, parse_timeframe
from tradepulse.quant.errors import WalkForwardError
from tradepulse.quant.walkforward import check_warmup_room, layout

JOB_ID = re.compile(ID_PATTERN)
# A cancel sent before the trainers' intake recorded the job is sent again for this long.
CANCEL_UNRECORDED_S = 3.0
POLL_S = 0.05
COVERAGE_TTL_S = 5.0

log = get_logger(__name__)


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


def new_ensemble_id() -> str:
    return "ens_" + uuid.uuid4().hex


def describe(c: DatasetCoverage) -> str:
    key = c.dataset
    return f"{key.exchange} {key.symbol} {key.timeframe}"


async def check_data(gw: Gateway, body: TrainingBody) -> DatasetCoverage:
    """The job's dataset, asked of the ingest service; 422 if it cannot hold the window (or,
    for a walk-forward job, its layout: see `walk_forward_problem`)."""
    coverage = await _coverage_for(gw, body)
    problem = walk_forward_problem(body, coverage)
    if problem is not None:
        raise problem
    return coverage


def window_rows(
    body: TrainingBody, coverage: DatasetCoverage, warmup: int
) -> tuple[int, int] | None:
    """(W, s): the job's window bars and the warm-up bars loaded before it, as the trainer
    will cut them (LS section 8); None when the coverage cannot tell (a range window over a
    dataset with gaps: the trainer then checks, and fails the job naming the field)."""
    rows = coverage.rows
    if body.lookback_candles is not None:
        last = body.lookback_candles
        return last, min(warmup, rows - last)
    if coverage.gaps or coverage.missing_candles:
        return None
    step = parse_timeframe(coverage.dataset.timeframe) * 1000
    start, end = to_ms(body.start), to_ms(body.end)
    assert start is not None
    first = max(0, -(-(start - coverage.first_ms) // step))
    stop = rows if end is None else min(rows, max(0, -(-(end - coverage.first_ms) // step)))
    return stop - first, min(warmup, first)


def walk_forward_problem(body: TrainingBody, coverage: DatasetCoverage) -> InvalidInputError | None:
    """A walk-forward layout the job's window cannot hold (validation spec section 3): test
    spans under 2 bars (`walk_forward.folds`), or a first test span without room for its
    warm-up in the dataset (`walk_forward.is_oos_ratio`); the core decides and names the
    field."""
    wf = body.walk_forward
    if wf is None:
        return None
    warmup = get_strategy(body.strategy).warmup_bars(parse_timeframe(coverage.dataset.timeframe))
    window = window_rows(body, coverage, warmup)
    if window is None:
        return None
    bars, trade_from = window
    try:
        wf_layout = layout(bars, trade_from, wf.folds, wf.is_oos_ratio, wf.mode)
        check_warmup_room(wf_layout, warmup)
    except WalkForwardError as exc:
        return InvalidInputError(exc.field, exc.problem)
    return None


async def _coverage_for(gw: Gateway, body: TrainingBody) -> DatasetCoverage:
    """The job's dataset, asked of the ingest service; 422 if it cannot hold the window.

    A dataset only grows, so a coverage that accepted the window a few seconds ago still
    does: bursts of jobs on one dataset ask ingest once. A refusal is always checked afresh.
    """
    key = body.dataset
    cached = gw.coverage_cache.get(key)
    if (
        cached is not None
        and time.monotonic() - cached[1] < COVERAGE_TTL_S
        and window_problem(body, cached[0]) is None
    ):
        return cached[0]
    reply = await gw.backend.request(
        gw.names.coverage,
        CoverageQuery(exchange=key.exchange, symbol=key.symbol, timeframe=key.timeframe),
        CoverageReply,
        service="ingest",
    )
    found = [c for c in reply.datasets if c.dataset == key]
    if not found:
        raise InvalidInputError(
            "symbol",
            f"no candles for {key.exchange} {key.symbol} {key.timeframe}: ingest them first "
            "(POST /api/v2/data/ingest or /api/v2/data/upload)",
        )
    coverage = found[0]
    gw.coverage_cache[key] = (coverage, time.monotonic())
    problem = window_problem(body, coverage)
    if problem is not None:
        raise problem
    return coverage


def window_problem(body: TrainingBody, coverage: DatasetCoverage) -> InvalidInputError | None:
    if body.lookback_candles is not None and body.lookback_candles > coverage.rows:
        return InvalidInputError(
            "lookback_candles",
            f"{body.lookback_candles} is more than the {coverage.rows} candles of "
            f"{describe(coverage)}",
        )
    start, end = to_ms(body.start), to_ms(body.end)
    if start is None:
        return None
    # The first candle of the grid at or after `start`: the window [start, end) must hold it.
    step = parse_timeframe(coverage.dataset.timeframe) * 1000
    first_in = coverage.first_ms + max(0, -(-(start - coverage.first_ms) // step)) * step
    if first_in > coverage.last_ms or (end is not None and end <= first_in):
        return InvalidInputError(
            "start",
            f"no candles in the requested range [start, end); {describe(coverage)} covers "
            f"{iso_ms(coverage.first_ms)} to {iso_ms(coverage.last_ms)}, one every "
            f"{coverage.dataset.timeframe}",
        )
    return None


async def submit(gw: Gateway, requests: list[TrainingRequested]) -> None:
    """Publish the jobs; each one is accepted (it will run) once JetStream has stored it."""
    if not await gw.backend.job_consumers_exist():
        raise UnavailableError(
            f"no trainer has ever started in namespace {gw.names.prefix!r}, so a job sent now "
            "would be lost; start the trainer service first. Nothing was queued"
        )
    results = await asyncio.gather(
        *(gw.backend.publish(gw.names.training_requested, r) for r in requests),
        return_exceptions=True,
    )
    accepted: list[TrainingRequested] = []
    uncertain: list[tuple[TrainingRequested, PublishError]] = []
    failures: list[tuple[TrainingRequested, PublishError]] = []
    for request, result in zip(requests, results, strict=True):
        if isinstance(result, PublishError):
            (uncertain if result.maybe_sent else failures).append((request, result))
        elif isinstance(result, BaseException):
            raise result
        else:
            accepted.append(request)
            gw.recent_jobs.add(request)
            log.info(
                "job_accepted",
                job_id=request.job_id,
                strategy=request.strategy,
                dataset=f"{request.dataset.exchange} {request.dataset.symbol} {request.dataset.timeframe}",
                optimizer=request.optimizer,
                n_iterations=request.n_iterations,
                seed=request.seed,
            )
    gw.metrics.commands.labels("training", "accepted").inc(len(accepted))
    if not (uncertain or failures):
        return
    gw.metrics.commands.labels("training", "refused").inc(len(uncertain) + len(failures))
    first = (uncertain or failures)[0][1]
    log.warning("jobs_not_accepted", error=str(first), accepted=len(accepted))
    extra: dict[str, object] = {}
    parts = [
        f"NATS did not accept {len(requests) - len(accepted)} of {len(requests)} job(s): {first}"
    ]
    if accepted:
        extra["accepted_job_ids"] = [r.job_id for r in accepted]
        parts.append("the accepted ones (accepted_job_ids) will run")
    if uncertain:
        extra["unconfirmed_job_ids"] = [r.job_id for r, _ in uncertain]
        parts.append(
            "NATS did not confirm some in time (unconfirmed_job_ids): they may run all the "
            "same, check GET /api/v2/training/job/{job_id} before submitting again"
        )
    else:
        parts.append("nothing of them was queued: submit again later")
    detail = "; ".join(parts)
    raise UnavailableError(detail, extra=extra)


async def find_job(gw: Gateway, job_id: str) -> JobView | None:
    if not JOB_ID.match(job_id):
        return None
    reply = await gw.backend.request(
        gw.names.get_job, GetJob(job_id=job_id), JobReply, service="trainer"
    )
    if reply.job is not None:
        return reply.job
    recent = gw.recent_jobs.get(job_id)
    return None if recent is None else queued_view(recent.request, recent.created_at)


async def load_job(gw: Gateway, job_id: str) -> JobView:
    structlog.contextvars.bind_contextvars(job_id=job_id)
    view = await find_job(gw, job_id)
    if view is None:
        raise NotFoundError(f"no job {job_id!r}")
    return view


async def config_id_of(gw: Gateway, view: JobView) -> str | None:
    """The configuration the registry made of a completed job; None until it has (or while
    the registry does not answer: the job itself is still worth showing)."""
    if view.status != "completed":
        return None
    cached = gw.config_ids.get(view.job_id)
    if cached is not None:
        return cached
    try:
        reply = await gw.backend.request(
            gw.names.get_config, GetConfig(job_id=view.job_id), ConfigReply, service="registry"
        )
    except ApiError as exc:
        log.warning("config_id_unknown", job_id=view.job_id, error=exc.detail)
        return None
    if reply.config is None:
        return None
    gw.remember_config_id(view.job_id, reply.config.config_id)
    return reply.config.config_id


async def cancel(gw: Gateway, job_id: str) -> JobView:
    """Ask the trainers to cancel; wait a little for a running job to stop. The job as it is
    then: cancelled, or still running while it winds down."""
    if not JOB_ID.match(job_id):
        raise NotFoundError(f"no job {job_id!r}")
    loop = asyncio.get_running_loop()
    give_up = loop.time() + CANCEL_UNRECORDED_S
    while True:
        reply = await gw.backend.request(
            gw.names.cancel_job, CancelJob(job_id=job_id), CancelReply, service="trainer"
        )
        if reply.found:
            break
        if gw.recent_jobs.get(job_id) is None or loop.time() > give_up:
            raise NotFoundError(f"no job {job_id!r}")
        await asyncio.sleep(POLL_S * 2)
    log.info("cancel_requested", job_id=job_id, status=reply.status)
    if reply.status in ("completed", "failed"):
        raise ConflictError(f"job {job_id} has already {reply.status}; there is nothing to cancel")
    deadline = loop.time() + gw.settings.cancel_wait_s
    while True:
        view = await load_job(gw, job_id)
        if view.status in TERMINAL_STATUSES or loop.time() >= deadline:
            break
        await asyncio.sleep(POLL_S)
    if view.status in ("completed", "failed"):
        raise ConflictError(f"job {job_id} {view.status} before it could be cancelled")
    return view
