"""/api/v2/training: submit jobs (alone or for several seeds), follow, list and cancel them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from tradepulse.common.contracts.training import (
    MAX_FOLDS,
    JobsReply,
    JobStatus,
    JobView,
    ListJobs,
    ListTrials,
    TrialsReply,
    TrialView,
)
from tradepulse.gateway import jobs
from tradepulse.gateway.deps import ApiKeyDep, GatewayDep, ReadKeyDep
from tradepulse.gateway.errors import ERRORS, NotFoundError
from tradepulse.gateway.live import open_stream
from tradepulse.gateway.paging import fetch_pages
from tradepulse.gateway.schemas.common import StrategyName, Symbol
from tradepulse.gateway.schemas.training import (
    CancelOut,
    EnsembleBody,
    JobAccepted,
    JobOut,
    JobsPage,
    TrainingBody,
    TrialsPage,
    job_out,
    trial_out,
)
from tradepulse.gateway.schemas.validation import EnsembleAccepted

router = APIRouter(prefix="/api/v2/training", tags=["training"])

CONFIG_LOOKUPS = 16
CONFIG_LOOKUP_BUDGET_S = 2.0
# Per NATS request, so that a reply stays well under the 1 MB message limit (the trainer
# refuses trial pages over 250).
JOBS_PER_REQUEST = 200
TRIALS_PER_REQUEST = 250

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such job"}}


@router.post(
    "/start",
    status_code=202,
    response_model=JobAccepted,
    summary="Submit a training job",
    responses=ERRORS,
)
async def start(
    body: TrainingBody, gw: GatewayDep, _: ApiKeyDep, response: Response
) -> JobAccepted:
    """Queue a job; 202 means JetStream has stored it and it will run. Follow it with
    `GET /job/{job_id}` or `GET /job/{job_id}/events`."""
    await jobs.check_data(gw, body)
    request = body.to_request(jobs.new_job_id())
    structlog.contextvars.bind_contextvars(job_id=request.job_id)
    await jobs.submit(gw, [request])
    response.headers["Location"] = f"/api/v2/training/job/{request.job_id}"
    return JobAccepted(job_id=request.job_id)


@router.post(
    "/ensemble",
    status_code=202,
    response_model=EnsembleAccepted,
    summary="Submit the same job for several seeds",
    responses=ERRORS,
)
async def ensemble(body: EnsembleBody, gw: GatewayDep, _: ApiKeyDep) -> EnsembleAccepted:
    await jobs.check_data(gw, body)
    seeds = body.seed_list()
    ensemble_id = jobs.new_ensemble_id()
    requests = [
        body.to_request(
            jobs.new_job_id(),
            seed=seed,
            ensemble_id=ensemble_id,
            ensemble_size=len(seeds),
            max_dispersion=body.max_dispersion,
        )
        for seed in seeds
    ]
    await jobs.submit(gw, requests)
    return EnsembleAccepted(
        ensemble_id=ensemble_id, job_ids=[r.job_id for r in requests], seeds=seeds
    )


@router.get(
    "/job/{job_id}",
    response_model=JobOut,
    summary="A job: status, progress, best so far, timings",
    responses={**ERRORS, **NOT_FOUND},
)
async def get_job(job_id: str, gw: GatewayDep, _: ReadKeyDep) -> JobOut:
    view = await jobs.load_job(gw, job_id)
    return job_out(view, await jobs.config_id_of(gw, view))


@router.get(
    "/jobs",
    response_model=JobsPage,
    summary="Jobs, newest first",
    responses=ERRORS,
)
async def list_jobs(
    gw: GatewayDep,
    _: ReadKeyDep,
    status: JobStatus | None = None,
    symbol: Annotated[Symbol | None, Query()] = None,
    strategy: Annotated[StrategyName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> JobsPage:
    async def page(start: int, count: int) -> tuple[int, list[JobView]]:
        reply = await gw.backend.request(
            gw.names.list_jobs,
            ListJobs(status=status, symbol=symbol, strategy=strategy, limit=count, offset=start),
            JobsReply,
            service="trainer",
        )
        return reply.total, list(reply.jobs)

    total, views = await fetch_pages(page, offset, limit, JOBS_PER_REQUEST)
    gate = asyncio.Semaphore(CONFIG_LOOKUPS)

    async def one(view: JobView) -> str | None:
        async with gate:
            return await jobs.config_id_of(gw, view)

    # A slow registry costs the list its config ids (null, as while the registry has not made
    # them yet), not minutes: the lookups share one time budget.
    lookups = [asyncio.ensure_future(one(v)) for v in views]
    if lookups:
        _done, late = await asyncio.wait(lookups, timeout=CONFIG_LOOKUP_BUDGET_S)
        for task in late:
            task.cancel()
    items = [
        job_out(v, t.result() if t.done() and not t.cancelled() else None)
        for v, t in zip(views, lookups, strict=True)
    ]
    return JobsPage(total=total, limit=limit, offset=offset, jobs=items)


@router.post(
    "/job/{job_id}/cancel",
    response_model=CancelOut,
    summary="Cancel a job",
    responses={
        **ERRORS,
        **NOT_FOUND,
        202: {"model": CancelOut, "description": "cancel requested; the job is winding down"},
        409: {"description": "the job has already completed or failed"},
    },
)
async def cancel_job(job_id: str, gw: GatewayDep, _: ApiKeyDep, response: Response) -> CancelOut:
    """200 once the job is cancelled (a running job stops within about a second); 202 if it
    is still winding down when the gateway stops waiting. Cancelling twice is harmless."""
    view = await jobs.cancel(gw, job_id)
    if view.status != "cancelled":
        response.status_code = 202
    return CancelOut(job_id=job_id, status=view.status)


@router.get(
    "/job/{job_id}/trials",
    response_model=TrialsPage,
    summary="A job's trials, in trial order",
    responses={**ERRORS, **NOT_FOUND},
)
async def list_trials(
    job_id: str,
    gw: GatewayDep,
    _: ReadKeyDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    fold: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_FOLDS,
            description="a walk-forward job's optimization i (the final one is fold K): its "
            "trials are numbers i*n_iterations .. (i+1)*n_iterations - 1",
        ),
    ] = None,
) -> TrialsPage:
    if not jobs.JOB_ID.match(job_id):
        raise NotFoundError(f"no job {job_id!r}")

    async def page(start: int, count: int) -> tuple[int, list[TrialView]]:
        reply = await gw.backend.request(
            gw.names.list_trials,
            ListTrials(job_id=job_id, limit=count, offset=start, fold=fold),
            TrialsReply,
            service="trainer",
        )
        return reply.total, list(reply.trials)

    total, trials = await fetch_pages(page, offset, limit, TRIALS_PER_REQUEST)
    if total == 0:
        await jobs.load_job(gw, job_id)  # 404 for a job that does not exist
    return TrialsPage(
        job_id=job_id,
        total=total,
        limit=limit,
        offset=offset,
        trials=[trial_out(t) for t in trials],
    )


@router.get(
    "/job/{job_id}/events",
    summary="A job's live progress (server-sent events)",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        **NOT_FOUND,
        200: {
            "description": "events `state`, `progress`, `best`, then `completed`, `failed` or "
            "`cancelled`, after which the stream ends",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
)
async def job_events(job_id: str, gw: GatewayDep, _: ReadKeyDep) -> StreamingResponse:
    stream = await open_stream(gw, job_id)
    return StreamingResponse(
        stream.events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
