"""Requests the trainer answers: cancel a job, read jobs and trials.

Each is a `Responder` of the common skeleton (app.setup registers them with `Runtime.respond`),
which decodes the request and turns an exception into an `ErrorReply` whose code survives the
bus: a request that does not decode is INVALID_REQUEST, anything else (the store or NATS away)
UNAVAILABLE. An unknown id is not an error: the reply says it was not found (`found=False`,
`job=None`), which the gateway turns into its 404.
"""

from __future__ import annotations

from datetime import datetime

from tradepulse.common.contracts.training import (
    CancelJob,
    CancelReply,
    EnsembleReply,
    GetEnsemble,
    GetJob,
    JobReply,
    JobsReply,
    JobView,
    ListJobs,
    ListTrials,
    TrialsReply,
    TrialView,
)
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.handlers import publish_terminal
from tradepulse.trainer.ports import StoredTrial
from tradepulse.trainer.validation import ensemble_view


async def cancel_job(request: CancelJob, deps: Deps) -> CancelReply:
    """Flag the job and tell its holder; a job nobody holds ends as cancelled at once."""
    status = await deps.store.request_cancel(request.job_id)
    if status is None:
        return CancelReply(job_id=request.job_id, status=None, found=False)
    await deps.bus.broadcast_cancel(request.job_id)
    if status == "cancelled":
        await publish_terminal(request.job_id, deps)
    return CancelReply(job_id=request.job_id, status=status, found=True)


async def get_job(request: GetJob, deps: Deps) -> JobReply:
    return JobReply(job=await job_view(request.job_id, deps))


async def list_jobs(request: ListJobs, deps: Deps) -> JobsReply:
    total, ids = await deps.store.list_jobs(
        request.status, request.symbol, request.strategy, request.limit, request.offset
    )
    views = [await job_view(job_id, deps) for job_id in ids]
    return JobsReply(total=total, jobs=[v for v in views if v is not None])


async def get_ensemble(request: GetEnsemble, deps: Deps) -> EnsembleReply:
    rows = await deps.store.ensemble_jobs(request.ensemble_id)
    return EnsembleReply(ensemble=ensemble_view(request.ensemble_id, rows))


async def list_trials(request: ListTrials, deps: Deps) -> TrialsReply:
    """A page of the job's trials, or of one optimization's (`fold`: walk-forward fold i has
    trials `[i*n, (i+1)*n)`, the final optimization is fold K)."""
    job = await deps.store.get_job(request.job_id)
    n = job.request.n_iterations if job is not None else 1
    numbers = None if request.fold is None else range(request.fold * n, (request.fold + 1) * n)
    total, trials = await deps.store.list_trials(
        request.job_id, request.limit, request.offset, numbers
    )
    return TrialsReply(
        job_id=request.job_id, total=total, trials=[trial_view(t, n) for t in trials]
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def job_view(job_id: str, deps: Deps) -> JobView | None:
    job = await deps.store.get_job(job_id)
    if job is None:
        return None
    best = None
    if job.best_trial is not None:
        best = (await deps.store.trials_in(job_id, [job.best_trial])).get(job.best_trial)
    return JobView(
        job_id=job_id,
        status=job.status,
        progress=job.progress,
        trials_done=job.trials_done,
        n_iterations=job.n_iterations,
        request=job.request,
        best_value=job.best_value,
        best_trial=job.best_trial,
        best_params=best.params if best else None,
        best_metrics=best.metrics if best else None,
        error=job.error,
        sampler=job.sampler,
        sampler_version=job.sampler_version,
        batch_size=job.batch_size,
        holder=job.holder,
        created_at=job.created_at.isoformat(),
        started_at=_iso(job.started_at),
        finished_at=_iso(job.finished_at),
        validation=job.validation,
        walk_forward=job.walk_forward,
    )


def trial_view(t: StoredTrial, n_iterations: int) -> TrialView:
    return TrialView(
        number=t.number,
        fold=t.number // n_iterations,
        params=t.params,
        state=t.state,
        value=t.value,
        metrics=t.metrics,
        fingerprint=t.fingerprint,
        duration_ms=t.duration_ms,
        replica=t.replica,
        reason=t.reason,
    )
