"""Requests the trainer answers: cancel a job, read jobs and trials, re-run a backtest or a
walk-forward job's stitched out-of-sample record.

Each is a `Responder` of the common skeleton (app.setup registers them with `Runtime.respond`),
which decodes the request and turns an exception into an `ErrorReply` whose code survives the
bus: a request that does not decode is INVALID_REQUEST, anything else (the store or NATS away)
UNAVAILABLE. An unknown id is not an error: the reply says it was not found (`found=False`,
`job=None`), which the gateway turns into its 404.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import numpy as np

from tradepulse.common.contracts.base import (
    INVALID_REQUEST,
    NOT_FOUND,
    ErrorReply,
)
from tradepulse.common.contracts.charts import (
    BacktestReply,
    EquityCurve,
    TradeView,
    WalkForwardEquityReply,
)

# Re-exported: the trainer's app registers the responder with it.
from tradepulse.common.contracts.charts import GetWalkForwardEquity as GetWalkForwardEquity
from tradepulse.common.contracts.charts import RunBacktest as RunBacktest
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
from tradepulse.quant import BacktestSettings, QuantError, get_strategy, run_backtest
from tradepulse.quant.downsample import drawdown, extrema_indices
from tradepulse.trainer import folds
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.errors import SnapshotMissingError
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
    return JobsReply(total=total, jobs=[v.listed() for v in views if v is not None])


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
        param_importances=job.param_importances,
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


async def backtest(request: RunBacktest, deps: Deps) -> BacktestReply | ErrorReply:
    """Re-run a configuration on its whole stored window (from the dataset cache), so the
    fingerprint is the one the job computed; then keep the trades entered in
    [start_ms, end_ms) and the equity of the bars opening there, thinned to `points` by
    min/max per bucket (the drawdown's trough per bucket kept too).

    A missing snapshot is not_found; parameters, settings or a regime the core refuses are an
    invalid request.
    """
    started = time.perf_counter()
    try:
        strategy = get_strategy(request.strategy)
        candles, prepared = await deps.cache.window(request.strategy, request.window)
        result = run_backtest(
            candles,
            strategy,
            strategy.parse_params(request.params),
            BacktestSettings(**request.settings.model_dump()),
            regime=request.regime,  # type: ignore[arg-type]  # the core checks it
            trade_from=request.window.trade_from,
            prepared=prepared,
        )
    except SnapshotMissingError as exc:
        return ErrorReply(error=str(exc), code=NOT_FOUND)
    except (QuantError, ValueError, KeyError) as exc:
        return ErrorReply(error=f"cannot backtest this configuration: {exc}", code=INVALID_REQUEST)
    equity = result.equity
    times = candles.open_time[len(candles.open_time) - len(equity) :]
    low = 0 if request.start_ms is None else int(np.searchsorted(times, request.start_ms))
    high = len(times) if request.end_ms is None else int(np.searchsorted(times, request.end_ms))
    span = equity[low:high]
    under = drawdown(equity)[low:high]
    keep = extrema_indices(span, request.points, (under,)) if len(span) else np.arange(0)
    trades = [
        t
        for t in result.trades
        if (request.start_ms is None or t.entry_time >= request.start_ms)
        and (request.end_ms is None or t.entry_time < request.end_ms)
    ]
    page = trades[request.trade_offset : request.trade_offset + request.trade_limit]
    return BacktestReply(
        fingerprint=result.fingerprint,
        metrics=result.metrics,
        trades_total=len(trades),
        trade_offset=request.trade_offset,
        trades=[TradeView(**t.to_dict()) for t in page],
        equity=EquityCurve(
            bars=len(span),
            time=times[low:high][keep].tolist(),
            equity=span[keep].tolist(),
            drawdown=under[keep].tolist(),
        ),
        compute_ms=(time.perf_counter() - started) * 1000,
    )


async def walk_forward_equity(
    request: GetWalkForwardEquity, deps: Deps
) -> WalkForwardEquityReply | ErrorReply:
    """Re-run a completed walk-forward job's fold tests from its stored report (each fold's
    best parameters, capital carried) on its data window, from the dataset cache, stitch them
    as the report did (folds.stitched_again), and thin the stitched equity to `points` by
    min/max per bucket with the drawdown's trough per bucket, as `backtest` does.

    An unknown job, one without a walk-forward report (a plain job, or one not completed) and
    a missing snapshot are not_found; a report the core cannot re-run an invalid request.
    """
    started = time.perf_counter()
    job = await deps.store.get_job(request.job_id)
    if job is None:
        return ErrorReply(error=f"no job {request.job_id!r}", code=NOT_FOUND)
    report, window = job.walk_forward, job.data_window
    if report is None or window is None:
        return ErrorReply(
            error=f"job {request.job_id} has no walk-forward report: it is not a walk-forward "
            f"job, or it has not completed (it is {job.status})",
            code=NOT_FOUND,
        )
    try:
        history = await deps.cache.history(window.snapshot)
        stitched = await asyncio.to_thread(
            folds.stitched_again, job.request, window, history, report
        )
    except SnapshotMissingError as exc:
        return ErrorReply(error=str(exc), code=NOT_FOUND)
    except (QuantError, ValueError, KeyError) as exc:
        return ErrorReply(
            error=f"cannot re-run job {request.job_id}'s folds: {exc}", code=INVALID_REQUEST
        )
    equity = stitched.equity
    under = drawdown(equity)
    keep = extrema_indices(equity, request.points, (under,))
    return WalkForwardEquityReply(
        job_id=request.job_id,
        fingerprint=stitched.fingerprint,
        matches_report=stitched.fingerprint == report.oos.fingerprint,
        metrics=stitched.metrics,
        trades=len(stitched.trade_ints),
        equity=EquityCurve(
            bars=len(equity),
            time=stitched.open_time[keep].tolist(),
            equity=equity[keep].tolist(),
            drawdown=under[keep].tolist(),
        ),
        compute_ms=(time.perf_counter() - started) * 1000,
    )
