"""Walk-forward jobs (validation spec section 3): the fold studies and the job's report.

A walk-forward job of K folds and `n = n_iterations` runs K + 1 optimizations side by side:
fold i = 0..K-1 and the final one, fold K. Optimization i:
- is seeded `fold_seed(seed, i)` (tradepulse.quant.walkforward: sha256 of the job's seed and i);
- numbers its trials `[i*n, (i+1)*n)`, so a trial's fold is `number // n` and the job's stored
  trials keep one numbering (a trial is still stored once per (job, number));
- backtests its own training sub-window of the job's loaded history: a DataWindow over the
  job's snapshot whose begin/stop/trade_from are `fold_train_window`'s, so its work items go
  to every replica like any job's and no trial sees a bar at or after its span's end.

Once every study has ended, `build_report` derives everything else (each fold's best, the
test backtests with carried capital, the stitched record, efficiencies, WFE, dispersion and
a validation report per optimization) from the stored trials and the data alone, so a
replica that takes the job over after a crash stores the same report.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tradepulse.common.contracts.training import (
    BarSpan,
    DataWindow,
    FinalOptimization,
    FoldResult,
    JobProgress,
    OutOfSample,
    TrainingRequested,
    TrialCompleted,
    ValidationReport,
    WalkForwardReport,
)
from tradepulse.quant import BacktestResult, BacktestSettings, Candles, get_strategy, run_backtest
from tradepulse.quant.errors import WalkForwardError
from tradepulse.quant.metrics import periods_per_year
from tradepulse.quant.validation import result_returns
from tradepulse.quant.walkforward import (
    FoldTest,
    Span,
    WalkForwardLayout,
    check_warmup_room,
    fold_dispersion,
    fold_efficiencies,
    fold_seed,
    fold_train_window,
    layout,
    oos_psr,
    run_test_folds,
    stitch,
    stitched_wfe,
)
from tradepulse.trainer import plan
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.errors import JobTakenOverError
from tradepulse.trainer.optimizer import SamplerSpec
from tradepulse.trainer.ports import EvaluatedTrial, StoredTrial
from tradepulse.trainer.study import StudyRunner, StudySpec
from tradepulse.trainer.validation import assemble_report


def fold_of(number: int, n_iterations: int) -> int:
    """The optimization a trial belongs to: fold i has trials `[i*n, (i+1)*n)`."""
    return number // n_iterations


def fold_numbers(fold: int, n_iterations: int) -> range:
    return range(fold * n_iterations, (fold + 1) * n_iterations)


@dataclass(frozen=True, eq=False)
class FoldPlan:
    """A walk-forward job's layout over its loaded history (`history`: rows `window.begin ..
    window.stop - 1` of the snapshot) and each optimization's training window (index K: the
    final one)."""

    request: TrainingRequested
    window: DataWindow
    history: Candles
    layout: WalkForwardLayout
    warmup_bars: int
    train_windows: tuple[DataWindow, ...]

    def bar_span(self, span: Span) -> BarSpan:
        """A span of the history as rows of the dataset, with their open times."""
        return BarSpan(
            first_bar=self.window.begin + span.start,
            last_bar=self.window.begin + span.stop - 1,
            bars=span.bars,
            first_ms=int(self.history.open_time[span.start]),
            last_ms=int(self.history.open_time[span.stop - 1]),
        )


def fold_plan(request: TrainingRequested, window: DataWindow, history: Candles) -> FoldPlan:
    """The plan of a walk-forward job over its data window of the snapshot `history`.

    Raises the core's WalkForwardError (naming the request's field) when the layout is refused:
    test spans under 2 bars, or a first test span without room for its warm-up.
    """
    wf_request = request.walk_forward
    if wf_request is None:
        raise ValueError(f"job {request.job_id} is not a walk-forward job")
    loaded = history.slice(window.begin, window.stop)
    warmup = get_strategy(request.strategy).warmup_bars(loaded.timeframe_seconds)
    wf = layout(
        len(loaded) - window.trade_from,
        window.trade_from,
        folds=wf_request.folds,
        is_oos_ratio=wf_request.is_oos_ratio,
        mode=wf_request.mode,
    )
    check_warmup_room(wf, warmup)
    windows = []
    for fold in range(wf.folds + 1):
        w = fold_train_window(loaded, wf, fold, warmup)
        c = w.candles
        windows.append(
            DataWindow(
                snapshot=window.snapshot,
                content_hash=window.content_hash,
                begin=c.first_row - history.first_row,
                stop=c.first_row - history.first_row + len(c),
                trade_from=w.trade_from,
                first_ms=int(c.open_time[w.trade_from]),
                last_ms=int(c.open_time[-1]),
            )
        )
    return FoldPlan(request, window, loaded, wf, warmup, tuple(windows))


def fold_specs(plan_: FoldPlan, sampler: SamplerSpec) -> list[StudySpec]:
    request = plan_.request
    n = request.n_iterations
    return [
        StudySpec(
            request=request,
            window=w,
            sampler=sampler,
            seed=fold_seed(request.seed, fold),
            n=n,
            first=fold * n,
        )
        for fold, w in enumerate(plan_.train_windows)
    ]


class FoldProgress:
    """The job's progress over every fold's trials: recorded (and published) only when the
    total grew, so it never goes back and each JobProgress id (`<job>.progress.<total>`) is
    used once. The job's best so far is the final optimization's (the configuration)."""

    def __init__(self, request: TrainingRequested, studies: Sequence[StudyRunner], deps: Deps):
        self.request = request
        self.studies = studies
        self.deps = deps
        self.done = [s.resumed_from for s in studies]
        self.recorded = -1
        self._lock = asyncio.Lock()

    @property
    def total(self) -> int:
        return sum(self.done)

    def on_batch_of(self, fold: int) -> Any:
        async def on_batch(done: int, results: Mapping[int, TrialCompleted]) -> None:
            self.done[fold] = done
            await self.record()

        return on_batch

    async def record(self) -> None:
        async with self._lock:
            total = self.total
            if total <= self.recorded:
                return
            await self._write(total)
            self.recorded = total

    async def _write(self, total: int) -> None:
        request = self.request
        job_id = request.job_id
        n_all = request.total_trials
        best = plan.best_of(self.studies[-1].results)
        progress = plan.progress_of(total, n_all)
        if not await self.deps.store.update_progress(
            job_id,
            holder=self.deps.replica,
            trials_done=total,
            progress=progress,
            best_trial=best.number if best else None,
            best_value=best.value if best else None,
        ):
            raise JobTakenOverError(job_id)
        await self.deps.bus.publish_event(
            JobProgress(
                message_id=f"{job_id}.progress.{total}",
                job_id=job_id,
                status="running",
                progress=progress,
                trials_done=total,
                n_iterations=n_all,
                best_value=best.value if best else None,
                best_trial=best.number if best else None,
            )
        )


async def run_studies(
    studies: Sequence[StudyRunner], progress: FoldProgress, stop: asyncio.Event
) -> list[dict[int, TrialCompleted]] | None:
    """Run every study side by side; None once the job is cancelled, which stops every one
    (`stop` is the event the studies were opened with; a study that saw the cancel sets it
    for the others)."""

    async def one(fold: int, study: StudyRunner) -> dict[int, TrialCompleted] | None:
        out = await study.run(progress.on_batch_of(fold))
        if out is None:
            stop.set()
        return out

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(i, s)) for i, s in enumerate(studies)]
    results = [t.result() for t in tasks]
    if any(r is None for r in results):
        return None
    return [r for r in results if r is not None]


@contextlib.asynccontextmanager
async def mirrored(cancel: asyncio.Event) -> Any:
    """An event set when `cancel` is (the job's cancel) or by a study of the job."""
    stop = asyncio.Event()

    async def mirror() -> None:
        await cancel.wait()
        stop.set()

    task = asyncio.create_task(mirror())
    try:
        yield stop
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def fold_bests(
    plan_: FoldPlan, results: Sequence[Mapping[int, TrialCompleted]]
) -> list[int | None]:
    """Each optimization's best trial number (any job's rule); None: no usable trial."""
    out = []
    for r in results:
        best = plan.best_of(r)
        out.append(best.number if best else None)
    return out


@dataclass(frozen=True)
class FoldData:
    """What `build_report` reads: the stored best trials, each optimization's evaluated
    trials, and the prepared candles of each training window."""

    bests: list[StoredTrial | None]
    evaluated: list[list[EvaluatedTrial]]
    prepared: list[Any]


def test_and_stitch(
    plan_: FoldPlan, fold_params: Sequence[Mapping[str, float | int] | None]
) -> tuple[list[FoldTest], BacktestResult]:
    """Every fold's test backtest with carried capital and the stitched out-of-sample record;
    `fold_params[i]` is fold i's best parameters (None: it had no usable trial)."""
    request = plan_.request
    strategy = get_strategy(request.strategy)
    settings = BacktestSettings(**request.settings.model_dump())
    tests = run_test_folds(
        plan_.history,
        plan_.layout,
        strategy,
        [strategy.parse_params(p) if p is not None else None for p in fold_params],
        settings,
        warmup_bars=plan_.warmup_bars,
        regime=request.regime,
    )
    return tests, stitch(plan_.history, plan_.layout, tests, settings.initial_capital)


def stitched_again(
    request: TrainingRequested, window: DataWindow, history: Candles, report: WalkForwardReport
) -> BacktestResult:
    """A completed job's stitched out-of-sample record, re-run from its stored report (each
    fold's best parameters) by the code that made the report, so its fingerprint and metrics
    are the report's `oos` ones. CPU-bound (K test backtests): run it off the event loop."""
    plan_ = fold_plan(request, window, history)
    if len(report.fold_results) != plan_.layout.folds:
        raise WalkForwardError(
            "walk_forward",
            f"the report has {len(report.fold_results)} folds, the job's layout "
            f"{plan_.layout.folds}",
        )
    return test_and_stitch(plan_, [f.params for f in report.fold_results])[1]


def build_report(plan_: FoldPlan, data: FoldData) -> tuple[WalkForwardReport, ValidationReport]:
    """The walk-forward report and the final optimization's validation report (the job's).

    Pure: a function of the stored trials and the data. CPU-bound (K + 1 reruns of the bests
    for their returns, K test backtests, K + 1 PBOs): run it off the event loop.
    """
    request = plan_.request
    wf = plan_.layout
    k = wf.folds
    strategy = get_strategy(request.strategy)
    settings = BacktestSettings(**request.settings.model_dump())
    ppy = periods_per_year(plan_.history.timeframe_seconds)
    validations: list[ValidationReport] = []
    for fold in range(k + 1):
        best = data.bests[fold]
        returns: Any = []
        if best is not None:
            w = plan_.train_windows[fold]
            result = run_backtest(
                plan_.history.slice(w.begin - plan_.window.begin, w.stop - plan_.window.begin),
                strategy,
                strategy.parse_params(best.params),
                settings,
                regime=request.regime,
                trade_from=w.trade_from,
                prepared=data.prepared[fold],
            )
            returns = result_returns(result)
        validations.append(
            assemble_report(
                data.evaluated[fold],
                best.number if best else None,
                returns,
                ppy=ppy,
                blocks=request.pbo_blocks,
            )
        )
    fold_best = data.bests[:k]
    tests, stitched = test_and_stitch(plan_, [b.params if b else None for b in fold_best])
    train_metrics = [b.metrics if b else None for b in fold_best]
    efficiencies = fold_efficiencies(wf, train_metrics, tests, ppy)
    fold_results = [
        FoldResult(
            fold=fold,
            train=plan_.bar_span(wf.train_span(fold)),
            test=plan_.bar_span(test.span),
            best_trial=best.number if best else None,
            best_value=best.value if best else None,
            params=best.params if best else None,
            train_metrics=best.metrics if best else None,
            initial_capital=test.initial_capital,
            final_capital=test.final_capital,
            test_metrics=dict(test.metrics) if test.metrics is not None else None,
            test_trades=0 if test.result is None else len(test.result.trade_ints),
            flat_reason=test.flat_reason,
            efficiency=efficiencies[fold],
            validation=validations[fold],
        )
        for fold, (best, test) in enumerate(zip(fold_best, tests, strict=True))
    ]
    final_best = data.bests[k]
    report = WalkForwardReport(
        folds=k,
        mode=wf.mode,
        is_oos_ratio=wf.is_oos_ratio,
        train_bars=wf.train_bars,
        test_bars=wf.test_bars,
        fold_results=fold_results,
        final=FinalOptimization(
            fold=k,
            span=plan_.bar_span(wf.final_span),
            best_trial=final_best.number if final_best else None,
            validation=validations[k],
        ),
        oos=OutOfSample(
            span=plan_.bar_span(wf.oos_span),
            metrics=dict(stitched.metrics),
            psr=oos_psr(stitched),
            fingerprint=stitched.fingerprint,
        ),
        wfe=stitched_wfe(wf, train_metrics, stitched, ppy),
        dispersion=fold_dispersion([b.params if b else None for b in fold_best], strategy.space),
    )
    return report, validations[k]
