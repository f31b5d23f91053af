"""A job's overfitting statistics and its seed ensemble (validation spec sections 1-2, 4).

Each evaluated trial carries its per-block sums of returns (computed where it is evaluated,
stored with it); the replica holding the job assembles the report from the stored trials
and one more backtest of the selected trial, before the job is completed. The report is a
pure function of the stored trials and the data window, so a replica that takes a job over
after a crash stores the same report.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tradepulse.common.contracts.training import (
    TERMINAL_STATUSES,
    ConvergenceReport,
    DataWindow,
    EnsembleMember,
    EnsembleView,
    TrainingRequested,
    ValidationReport,
)
from tradepulse.common.logging import get_logger
from tradepulse.quant import BacktestResult, BacktestSettings, get_strategy, run_backtest
from tradepulse.quant.metrics import periods_per_year
from tradepulse.quant.validation import (
    EvaluatedTrial as ReportTrial,
)
from tradepulse.quant.validation import (
    result_block_sums,
    result_returns,
    seed_convergence,
    validation_report,
)
from tradepulse.trainer.ports import EnsembleJob, EvaluatedTrial, JobStore

log = get_logger("trainer")

if TYPE_CHECKING:
    # evaluate.py imports this module for trial_block_sums.
    from tradepulse.trainer.evaluate import DatasetCache


def trial_block_sums(result: BacktestResult, blocks: int) -> list[float] | None:
    """What a trial carries for PBO: its S block sums of returns, then of squared returns.

    None for a trial that is not evaluated (spec section 0: its Sharpe is null). Sums that
    are not finite (an equity through 0, which also nulls the Sharpe) are None as well:
    they have no JSON form, and the report then gives a null PBO rather than a wrong one.
    """
    if result.metrics.get("sharpe_ratio") is None:
        return None
    s1, s2 = result_block_sums(result, blocks)
    sums = [*s1.tolist(), *s2.tolist()]
    return sums if all(math.isfinite(x) for x in sums) else None


def assemble_report(
    trials: Sequence[EvaluatedTrial],
    selected_trial: int | None,
    selected_returns: Sequence[float] | Any,
    *,
    ppy: float,
    blocks: int,
) -> ValidationReport:
    """The job's report from its evaluated trials (any order) and the selected trial's returns
    (`selected_trial` None: the optimization had no usable trial, sections 1-2 are null).

    A trial's per-bar Sharpe is its stored `sharpe_ratio / sqrt(ppy)` (spec section 0), so
    the report agrees to the bit with the trials the API lists. Readings chosen here: when an
    evaluated trial has no block sums (stored before they existed, or non-finite), PBO is
    null while section 1's figures stand, since they need only the Sharpes; when the selected
    trial is not evaluated itself (its objective is not the Sharpe, and its Sharpe is null,
    e.g. fewer than 2 returns), there is no Sharpe to judge and sections 1-2 are null, as
    for a job with no usable trial (`n_trials` still counts the evaluated ones).
    """
    root = math.sqrt(ppy)
    complete = all(t.block_sums is not None and len(t.block_sums) == 2 * blocks for t in trials)
    zeros = [0.0] * blocks
    report_trials = [
        ReportTrial(
            number=t.number,
            sharpe_per_bar=t.sharpe_ratio / root,
            s1=t.block_sums[:blocks] if complete and t.block_sums else zeros,
            s2=t.block_sums[blocks:] if complete and t.block_sums else zeros,
        )
        for t in trials
    ]
    judged = (
        selected_trial
        if selected_trial is not None and any(t.number == selected_trial for t in trials)
        else None
    )
    report = validation_report(report_trials, judged, selected_returns, ppy=ppy, blocks=blocks)
    if not complete:
        report["pbo"] = None
    return ValidationReport.model_validate(report)


def _rerun(
    request: TrainingRequested,
    window: DataWindow,
    params: dict[str, Any],
    candles: Any,
    prepared: Any,
) -> BacktestResult:
    strategy = get_strategy(request.strategy)
    return run_backtest(
        candles,
        strategy,
        strategy.parse_params(params),
        BacktestSettings(**request.settings.model_dump()),
        regime=request.regime,
        trade_from=window.trade_from,
        prepared=prepared,
    )


async def record_report(
    store: JobStore,
    cache: DatasetCache,
    request: TrainingRequested,
    window: DataWindow,
    selected_trial: int,
) -> ValidationReport:
    """Assemble and store the report of a job whose trials are all stored; `selected_trial`
    is its best.

    The selected trial's backtest runs once more here, for its returns (T, skew, kurtosis):
    trials carry only their block sums, not their equity curves.
    """
    job_id = request.job_id
    started = time.perf_counter()
    trials = await store.evaluated_trials(job_id)
    selected = (await store.trials_in(job_id, [selected_trial]))[selected_trial]
    candles, prepared = await cache.window(request.strategy, window)
    ppy = periods_per_year(candles.timeframe_seconds)
    read = time.perf_counter()

    def compute() -> ValidationReport:
        result = _rerun(request, window, selected.params, candles, prepared)
        return assemble_report(
            trials,
            selected_trial,
            result_returns(result),
            ppy=ppy,
            blocks=request.pbo_blocks,
        )

    # PBO over thousands of trials takes a good part of a second: off the event loop, which
    # keeps renewing the job's lease meanwhile.
    report = await asyncio.to_thread(compute)
    computed = time.perf_counter()
    await store.store_validation(job_id, report)
    done = time.perf_counter()
    log.info(
        "validation_report_stored",
        n_trials=report.n_trials,
        dsr=report.dsr,
        pbo=report.pbo.pbo if report.pbo else None,
        read_ms=round((read - started) * 1000, 1),
        compute_ms=round((computed - read) * 1000, 1),
        store_ms=round((done - computed) * 1000, 1),
        duration_ms=round((done - started) * 1000, 1),
    )
    return report


def ensemble_view(ensemble_id: str, rows: Sequence[EnsembleJob]) -> EnsembleView | None:
    """An ensemble from its recorded jobs (JobStore.ensemble_jobs); None if none is.

    It has ended once every seed's job is recorded and terminal; the convergence report then
    covers the completed ones (spec section 4).
    """
    if not rows:
        return None
    first = rows[0].request
    size = first.ensemble_size or len(rows)
    members = [
        EnsembleMember(
            job_id=r.job_id,
            seed=r.request.seed,
            status=r.status,
            best_value=r.best_value,
            best_trial=r.best_trial,
            best_params=r.best_params,
        )
        for r in rows
    ]
    ended = len(members) >= size and all(m.status in TERMINAL_STATUSES for m in members)
    convergence = None
    if ended:
        done = [
            m
            for m in members
            if m.status == "completed" and m.best_params is not None and m.best_value is not None
        ]
        body = seed_convergence(
            [m.best_params for m in done if m.best_params is not None],
            [m.best_value for m in done if m.best_value is not None],
            get_strategy(first.strategy).space,
            first.max_dispersion,
        )
        convergence = ConvergenceReport.model_validate({"completed": len(done), **body})
    return EnsembleView(
        ensemble_id=ensemble_id,
        size=size,
        max_dispersion=first.max_dispersion,
        ended=ended,
        jobs=members,
        convergence=convergence,
    )
