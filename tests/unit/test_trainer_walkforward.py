"""A walk-forward job's holder on in-memory ports, with the trainer's real backtest.

The history is the first 6,000 rows of the shared BTC candles; the job's window is its last
3,000 (2,316 warm-up bars before it), 2 folds at a ratio of 2: test spans of 750 bars.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tradepulse.cli.main import main
from tradepulse.common.contracts.training import (
    CancelJob,
    JobCompleted,
    JobFailed,
    JobProgress,
    ListTrials,
    TrainingRequested,
    TrialCompleted,
)
from tradepulse.quant import BacktestSettings, Candles, get_strategy, load_candles, run_backtest
from tradepulse.quant.walkforward import fold_seed
from tradepulse.trainer import deliveries, folds, queries
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.evaluate import evaluate
from tradepulse.trainer.study import completed_from_stored
from tradepulse.trainer.trials import store_trials

from .trainer_fakes import (
    FakeDelivery,
    MemoryBus,
    MemoryJobStore,
    Worker,
    eventually,
    job_request,
    make_deps,
    no_heartbeat,
)

N = 6
FOLDS = 2
STRATEGY = get_strategy("LIQUIDITY_SWEEP")


@pytest.fixture(scope="module")
def candles(candles_excerpt: Path) -> Candles:
    return load_candles(candles_excerpt)


def wf_job(**fields: Any) -> TrainingRequested:
    values: dict[str, Any] = {
        "lookback_candles": 3000,
        "n_iterations": N,
        "walk_forward": {"folds": FOLDS, "is_oos_ratio": 2},
        **fields,
    }
    return job_request(**values)


def parts(deps: Deps) -> tuple[MemoryJobStore, MemoryBus]:
    assert isinstance(deps.store, MemoryJobStore)
    assert isinstance(deps.bus, MemoryBus)
    return deps.store, deps.bus


def events(deps: Deps, kind: type[Any]) -> list[Any]:
    return parts(deps)[1].events_of(kind)


async def deliver(deps: Deps, job: TrainingRequested, attempt: int = 1) -> FakeDelivery:
    delivery = FakeDelivery(job.to_bytes(), attempt=attempt)
    await deliveries.job(delivery, deps, no_heartbeat)
    return delivery


class RealWorker(Worker):
    """Replicas evaluating with the trainer's backtest; `alter` may change a result."""

    def __init__(
        self, deps: Deps, alter: Callable[[TrialCompleted], TrialCompleted] | None = None, **kw: Any
    ) -> None:
        super().__init__(deps, **kw)
        self.alter = alter or (lambda r: r)

    async def _run(self) -> None:
        while True:
            work = await self.bus.work.get()
            while self.limit is not None and work.trials[-1].number >= self.limit:
                self._changed.clear()
                await self._changed.wait()
            results = [
                self.alter(await evaluate(work, t, self.deps.cache, "trainer-w"))
                for t in work.trials
            ]
            await store_trials(work, results, self.deps)


async def run(job: TrainingRequested, candles: Candles, **kw: Any) -> Deps:
    deps = make_deps(candles=candles)
    async with RealWorker(deps, **kw):
        delivery = await deliver(deps, job)
    assert delivery.settled == ["ack"]
    return deps


def outcome(deps: Deps, job_id: str) -> list[tuple[Any, ...]]:
    trials = parts(deps)[0].trials[job_id]
    return [(k, trials[k].params, trials[k].value, trials[k].metrics) for k in sorted(trials)]


@pytest.fixture(scope="module")
def reference(candles: Candles) -> tuple[TrainingRequested, Deps]:
    job = wf_job()
    return job, asyncio.run(run(job, candles))


def test_each_fold_trains_on_its_own_window_with_its_seed_and_trial_numbers(
    reference: tuple[TrainingRequested, Deps], candles: Candles
) -> None:
    job, deps = reference
    store, bus = parts(deps)
    row = store.jobs[job.job_id]
    assert (row.status, row.n_iterations, row.trials_done) == ("completed", 18, 18)
    assert row.data_window is not None
    plan_ = folds.fold_plan(job, row.data_window, candles)
    wf = plan_.layout
    assert (wf.test_bars, wf.train_bars, wf.trade_from) == (750, 1500, 2316)
    assert sorted(t.number for w in bus.published_work for t in w.trials) == list(range(18))
    for work in bus.published_work:
        owners = {folds.fold_of(t.number, N) for t in work.trials}
        assert len(owners) == 1, "a work item holds one optimization's trials"
        window = plan_.train_windows[owners.pop()]
        assert work.window == window
    # Fold 1 trains on [s + L, s + L + I) of the history with up to warmup bars before it.
    one = plan_.train_windows[1]
    start = row.data_window.begin + 2316 + 750
    assert (one.begin, one.trade_from, one.stop) == (start - 2316, 2316, start + 1500)
    final = plan_.train_windows[2]
    assert final.stop == row.data_window.stop, "the final optimization ends at the window's end"
    # A random sampler's asks depend on its seed only: fold i asks what a plain job seeded
    # fold_seed(seed, i) asks, numbered from i*n.
    for fold in range(FOLDS + 1):
        plain_job = job_request(lookback_candles=3000, n_iterations=N, seed=fold_seed(12345, fold))
        plain = asyncio.run(run(plain_job, candles))
        plain_trials = parts(plain)[0].trials[plain_job.job_id]
        plain_params = [plain_trials[k].params for k in range(N)]
        mine = store.trials[job.job_id]
        assert [mine[fold * N + k].params for k in range(N)] == plain_params


def test_the_report_carries_capital_from_fold_to_fold_and_the_final_best_is_the_config(
    reference: tuple[TrainingRequested, Deps], candles: Candles
) -> None:
    job, deps = reference
    store = parts(deps)[0]
    [completed] = events(deps, JobCompleted)
    report = completed.walk_forward
    assert report is not None
    assert (report.folds, report.mode, report.is_oos_ratio) == (2, "rolling", 2)
    trials = store.trials[job.job_id]
    final_best = max(
        (t for k, t in trials.items() if k >= 2 * N and t.value is not None),
        key=lambda t: (t.value, -t.number),
    )
    assert completed.best_trial == final_best.number == report.final.best_trial
    assert completed.validation == report.final.validation
    capital = job.settings.initial_capital
    row = store.jobs[job.job_id]
    assert row.data_window is not None
    plan_ = folds.fold_plan(job, row.data_window, candles)
    for fold, result in enumerate(report.fold_results):
        assert result.initial_capital == capital
        span = plan_.layout.test_span(fold)
        assert (result.test.first_bar, result.test.bars) == (
            row.data_window.begin + span.start,
            750,
        )
        if result.best_trial is None:
            assert result.flat_reason == "no usable trial"
            assert result.final_capital == capital
            continue
        assert result.train_metrics == trials[result.best_trial].metrics
        test = run_backtest(
            plan_.history.slice(span.start - plan_.warmup_bars, span.stop),
            STRATEGY,
            result.params,
            dataclasses.replace(BacktestSettings(), initial_capital=capital),
            trade_from=plan_.warmup_bars,
        )
        assert result.test_metrics == test.metrics
        assert result.test_trades == len(test.trades)
        capital = float(test.equity[-1])
        assert result.final_capital == capital


async def test_a_fold_without_a_usable_trial_is_flat_and_the_job_still_completes(
    candles: Candles,
) -> None:
    def fail_fold_zero(r: TrialCompleted) -> TrialCompleted:
        if r.number >= N:
            return r
        return r.model_copy(update={"state": "failed", "value": None, "reason": "forced"})

    job = wf_job()
    deps = await run(job, candles, alter=fail_fold_zero)
    [completed] = events(deps, JobCompleted)
    report = completed.walk_forward
    assert report is not None
    zero = report.fold_results[0]
    assert (zero.best_trial, zero.params, zero.efficiency, zero.test_trades) == (
        None,
        None,
        None,
        0,
    )
    assert zero.flat_reason == "no usable trial"
    assert zero.validation.selected is None
    assert zero.final_capital == zero.initial_capital == report.fold_results[1].initial_capital
    assert all(v is None for v in report.dispersion.values()), "one usable fold is too few"


async def test_the_job_fails_when_the_final_optimization_has_no_usable_trial(
    candles: Candles,
) -> None:
    def fail_final(r: TrialCompleted) -> TrialCompleted:
        if r.number < 2 * N:
            return r
        return r.model_copy(update={"state": "failed", "value": None, "reason": "forced"})

    deps = await run(wf_job(), candles, alter=fail_final)
    [failed] = events(deps, JobFailed)
    assert "final optimization" in failed.reason
    assert events(deps, JobCompleted) == []


def test_progress_counts_every_folds_trials_and_never_goes_back(
    reference: tuple[TrainingRequested, Deps],
) -> None:
    _, deps = reference
    progress = events(deps, JobProgress)
    done = [e.trials_done for e in progress]
    assert done == sorted(set(done)), "strictly increasing"
    assert len({e.message_id for e in progress}) == len(progress)
    assert (done[-1], progress[-1].progress, progress[-1].n_iterations) == (18, 100.0, 18)
    assert [e.progress for e in progress] == sorted(e.progress for e in progress)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param({0, 1, 2, 3, 6, 7, 8, 12}, id="mid-fold"),
        pytest.param(set(range(18)), id="every-trial-stored"),
    ],
)
async def test_a_resumed_walk_forward_job_stores_the_same_report(
    reference: tuple[TrainingRequested, Deps], candles: Candles, stored: set[int]
) -> None:
    job, ref = reference
    deps = make_deps(candles=candles)
    store = parts(deps)[0]
    first = parts(ref)[0].jobs[job.job_id]
    assert first.data_window is not None
    assert first.batch_size is not None
    await store.create_job(job)
    assert await store.take_job(job.job_id, "trainer-dead", 15)
    await store.start_job(
        job.job_id,
        sampler="s",
        sampler_version="v",
        batch_size=first.batch_size,
        window=first.data_window,
    )
    store.expire_lease(job.job_id)
    before = parts(ref)[0].trials[job.job_id]
    # What the dead holder's replicas stored, block sums included.
    copies = [
        completed_from_stored(job.job_id, before[k]).model_copy(
            update={"block_sums": before[k].block_sums}
        )
        for k in stored
    ]
    await store.insert_trials([(c, before[c.number].system_attrs) for c in copies])
    async with RealWorker(deps):
        delivery = await deliver(deps, job, attempt=2)
    assert delivery.settled == ["ack"]
    assert outcome(deps, job.job_id) == outcome(ref, job.job_id)
    [mine], [theirs] = events(deps, JobCompleted), events(ref, JobCompleted)
    assert mine.model_dump() == theirs.model_dump()
    assert store.jobs[job.job_id].walk_forward == first.walk_forward
    done = [e.trials_done for e in events(deps, JobProgress)]
    assert done == sorted(set(done))
    assert done[-1] == 18


async def test_a_cancel_stops_every_fold(candles: Candles) -> None:
    job = wf_job(n_iterations=40)
    deps = make_deps(candles=candles)
    store, bus = parts(deps)
    # No trial is evaluated until the cancel: every fold waits on its in-flight batches
    # (2 batches of 4 trials, 2 items each, per fold).
    async with RealWorker(deps, limit=0) as worker:
        holding = asyncio.create_task(deliver(deps, job))
        await eventually(lambda: len(bus.published_work) >= 12, within=30)
        reply = await queries.cancel_job(CancelJob(job_id=job.job_id), deps)
        assert reply.status == "running"
        deps.cancels.cancel(job.job_id)
        delivery = await holding
        worker.allow(None)
    assert delivery.settled == ["ack"]
    assert store.jobs[job.job_id].status == "cancelled"
    assert bus.subscriptions == [], "no fold's study listens for results any more"
    numbers = {folds.fold_of(t.number, 40) for w in bus.published_work for t in w.trials}
    assert numbers == {0, 1, 2}, "every fold had started"
    assert len(bus.published_work) == 3 * 4, "no fold asked beyond its in-flight batches"
    assert events(deps, JobCompleted) == []


async def test_one_folds_trials_are_listed_with_their_fold(
    reference: tuple[TrainingRequested, Deps],
) -> None:
    job, deps = reference
    page = await queries.list_trials(ListTrials(job_id=job.job_id, fold=1, limit=4), deps)
    assert page.total == N
    assert [(t.number, t.fold) for t in page.trials] == [(6, 1), (7, 1), (8, 1), (9, 1)]
    whole = await queries.list_trials(ListTrials(job_id=job.job_id, offset=12, limit=10), deps)
    assert [t.fold for t in whole.trials] == [2] * N


async def test_a_layout_with_test_spans_under_two_bars_fails_the_job_naming_the_field(
    candles: Candles,
) -> None:
    job = wf_job(lookback_candles=30, walk_forward={"folds": 20, "is_oos_ratio": 20})
    deps = await run(job, candles)
    [failed] = events(deps, JobFailed)
    assert "walk_forward.folds" in failed.reason
    assert parts(deps)[1].published_work == []


def test_tradepulse_backtest_over_a_folds_span_gives_its_train_metrics(
    reference: tuple[TrainingRequested, Deps],
    candles_excerpt: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The snapshot is the excerpt file itself, so the report's bar numbers are its rows."""
    job, deps = reference
    row = parts(deps)[0].jobs[job.job_id]
    assert row.walk_forward is not None
    checked = 0
    for fold in [*row.walk_forward.fold_results]:
        if fold.best_trial is None:
            continue
        code = main(
            [
                "backtest",
                "--data",
                str(candles_excerpt),
                "--params",
                json.dumps(fold.params),
                "--from-bar",
                str(fold.train.first_bar),
                "--to-bar",
                str(fold.train.last_bar + 1),
                "--json",
            ]
        )
        assert code == 0
        result = json.loads(capsys.readouterr().out)
        assert result["metrics"] == fold.train_metrics
        assert (
            result["fingerprint"] == parts(deps)[0].trials[job.job_id][fold.best_trial].fingerprint
        )
        checked += 1
    assert checked >= 1
