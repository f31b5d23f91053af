"""The dashboard's data: the equity downsampler (pure core), the trainer's backtest RPC and its
walk-forward equity RPC, and the reports' degradation points (kept by one job, left out of
lists)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

from tests.unit.trainer_fakes import (
    BTC,
    SNAPSHOT,
    FakeDelivery,
    MemoryJobStore,
    Worker,
    job_request,
    make_deps,
    no_heartbeat,
    synthetic_candles,
)
from tradepulse.common.contracts.base import INVALID_REQUEST, NOT_FOUND, ErrorReply
from tradepulse.common.contracts.charts import (
    BacktestReply,
    GetCandles,
    GetWalkForwardEquity,
    RunBacktest,
    WalkForwardEquityReply,
)
from tradepulse.common.contracts.training import (
    BacktestSettingsModel,
    DataWindow,
    GetJob,
    ListJobs,
    TrainingRequested,
    TrialCompleted,
)
from tradepulse.quant import (
    BacktestSettings,
    Candles,
    LiquiditySweep,
    last_window,
    load_candles,
    run_backtest,
)
from tradepulse.quant.downsample import drawdown, extrema_indices
from tradepulse.quant.validation import MAX_DEGRADATION_POINTS
from tradepulse.quant.walkforward import run_test_folds, stitch
from tradepulse.trainer import deliveries, folds, queries
from tradepulse.trainer.errors import SnapshotMissingError
from tradepulse.trainer.evaluate import DatasetCache
from tradepulse.trainer.importances import param_importances, record_importances
from tradepulse.trainer.optimizer import BatchOptimizer, SamplerSpec, distributions

# Downsampler ---------------------------------------------------------------------------------


def test_a_short_series_is_kept_whole() -> None:
    assert extrema_indices(np.array([3.0, 1.0, 2.0, 5.0]), 4).tolist() == [0, 1, 2, 3]


def test_each_bucket_keeps_its_max_and_min_and_the_ends() -> None:
    # 8 values, 6 points: (6 - 2) // 2 = 2 buckets of 4: [5, 1, 9, 4] and [2, 8, 0, 3].
    values = np.array([5.0, 1.0, 9.0, 4.0, 2.0, 8.0, 0.0, 3.0])
    # ends 0 and 7; bucket one: max at 2, min at 1; bucket two: max at 5, min at 6.
    assert extrema_indices(values, 6).tolist() == [0, 1, 2, 5, 6, 7]


def test_ties_keep_the_first_index() -> None:
    values = np.array([1.0, 4.0, 4.0, 1.0, 0.0, 0.0, 2.0, 2.0, 7.0, 0.0])
    # 10 values, 4 points: one bucket (all), max 7 at 8, min 0 first at 4; ends 0 and 9.
    assert extrema_indices(values, 4).tolist() == [0, 4, 8, 9]


def test_a_trough_series_keeps_its_own_minimum_per_bucket() -> None:
    # The drawdown's deepest point (index 5: 5 under a peak of 20) is not equity's lowest
    # point (index 1) of the same bucket.
    equity = np.array([10.0, 8.0, 20.0, 19.0, 18.0, 15.0, 30.0, 29.0, 28.0, 27.0])
    under = drawdown(equity)
    assert under[5] == pytest.approx(-0.25)
    keep = extrema_indices(equity, 5, (under,)).tolist()  # one bucket: 3 slots + the ends
    assert keep == [0, 1, 5, 6, 9]


def test_drawdown_is_the_fraction_below_the_running_peak() -> None:
    assert drawdown(np.array([100.0, 120.0, 90.0, 130.0])).tolist() == pytest.approx(
        [0.0, 0.0, -0.25, 0.0]
    )


def test_bad_arguments_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="at least 4 with 0 trough series, got 3"):
        extrema_indices(np.zeros(5), 3)
    with pytest.raises(ValueError, match="at least 5 with 1 trough series, got 4"):
        extrema_indices(np.zeros(5), 4, (np.zeros(5),))
    with pytest.raises(ValueError, match="trough series has 3 values"):
        extrema_indices(np.zeros(5), 9, (np.zeros(3),))


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 3000), elements=st.floats(-1e6, 1e6)),
    points=st.integers(5, 500),
)
def test_the_extremes_survive_and_the_budget_holds(values: np.ndarray, points: int) -> None:
    keep = extrema_indices(values, points, (drawdown(values),))
    assert len(keep) <= points
    assert np.all(np.diff(keep) > 0)
    assert keep[0] == 0
    assert keep[-1] == len(values) - 1
    kept = values[keep]
    assert kept.max() == values.max()
    assert kept.min() == values.min()
    assert drawdown(values)[keep].min() == drawdown(values).min()


# The trainer's backtest RPC ------------------------------------------------------------------


def _request(**fields: object) -> RunBacktest:
    candles = synthetic_candles()
    strategy = LiquiditySweep()
    window = last_window(candles, 300, strategy.warmup_bars(300))
    c = window.candles
    values: dict[str, object] = {
        "strategy": "LIQUIDITY_SWEEP",
        "params": {p.name: int(p.low) if p.kind == "int" else p.low for p in strategy.space},
        "window": DataWindow(
            snapshot=SNAPSHOT,
            content_hash=candles.content_hash(),
            begin=c.first_row,
            stop=c.first_row + len(c),
            trade_from=window.trade_from,
            first_ms=int(c.open_time[window.trade_from]),
            last_ms=int(c.open_time[-1]),
        ),
        "settings": BacktestSettingsModel(),
        "regime": "any",
        **fields,
    }
    return RunBacktest.model_validate(values)


def _direct(request: RunBacktest):  # type: ignore[no-untyped-def]
    candles = synthetic_candles().slice(request.window.begin, request.window.stop)
    return run_backtest(
        candles,
        LiquiditySweep(),
        request.params,
        BacktestSettings(),
        trade_from=request.window.trade_from,
    )


async def test_the_backtest_rpc_reruns_the_window_and_thins_the_equity() -> None:
    request = _request(points=20)
    reply = await queries.backtest(request, make_deps())
    assert isinstance(reply, BacktestReply)
    direct = _direct(request)
    assert reply.fingerprint == direct.fingerprint
    assert reply.metrics == direct.metrics
    assert [t.model_dump() for t in reply.trades] == [t.to_dict() for t in direct.trades]
    assert reply.trades_total == len(direct.trades)
    curve = reply.equity
    assert curve.bars == len(direct.equity)
    assert len(curve.time) <= 20
    assert len(curve.time) == len(curve.equity) == len(curve.drawdown)
    assert max(curve.equity) == direct.equity.max()
    assert min(curve.equity) == direct.equity.min()
    assert curve.equity[-1] == direct.equity[-1]
    assert curve.time == sorted(curve.time)


async def test_a_range_keeps_the_trades_entered_in_it_and_its_bars_only() -> None:
    whole = await queries.backtest(_request(), make_deps())
    assert isinstance(whole, BacktestReply)
    assert whole.trades_total >= 2
    second = whole.trades[1]
    start, end = second.entry_time, second.entry_time + 300_000
    reply = await queries.backtest(_request(start_ms=start, end_ms=end), make_deps())
    assert isinstance(reply, BacktestReply)
    assert [t.entry_time for t in reply.trades] == [second.entry_time]
    assert reply.fingerprint == whole.fingerprint
    assert reply.equity.time == [start]


async def test_trades_are_paged() -> None:
    whole = await queries.backtest(_request(), make_deps())
    assert isinstance(whole, BacktestReply)
    page = await queries.backtest(_request(trade_offset=1, trade_limit=1), make_deps())
    assert isinstance(page, BacktestReply)
    assert page.trades == whole.trades[1:2]
    assert page.trades_total == whole.trades_total


async def test_parameters_the_core_refuses_are_an_invalid_request() -> None:
    reply = await queries.backtest(_request(params={"nope": 1}), make_deps())
    assert isinstance(reply, ErrorReply)
    assert reply.code == INVALID_REQUEST


async def test_a_vanished_snapshot_is_not_found() -> None:
    request = _request()
    gone = request.model_copy(
        update={"window": request.window.model_copy(update={"snapshot": "x"})}
    )
    reply = await queries.backtest(gone, make_deps())
    assert isinstance(reply, ErrorReply)
    assert reply.code == NOT_FOUND


def test_a_range_that_ends_before_it_starts_does_not_decode() -> None:
    with pytest.raises(ValueError, match="end_ms must be after start_ms"):
        _request(start_ms=10, end_ms=10)
    with pytest.raises(ValueError, match="end_ms must be after start_ms"):
        GetCandles(dataset=BTC, start_ms=5, end_ms=1)


# Parameter importances ------------------------------------------------------------------------


def _results(values: list[float | None], **fixed: float) -> dict[int, TrialCompleted]:
    """Trials whose objective is `values`; the first parameter runs 0, 1, 2, ..., the others
    stay at their lowest value unless given in `fixed`."""
    space = list(LiquiditySweep().space)
    out = {}
    for n, value in enumerate(values):
        params: dict[str, float | int] = {p.name: fixed.get(p.name, p.low) for p in space}
        first = space[0]
        params[first.name] = first.low + (n % 5) * ((first.high - first.low) / 5)
        if first.kind == "int":
            params[first.name] = int(params[first.name])
        out[n] = TrialCompleted(
            job_id="j",
            number=n,
            params=params,
            state="complete" if value is not None else "failed",
            value=value,
            metrics={},
            fingerprint="f",
            duration_ms=1.0,
            replica="r",
        )
    return out


def test_importances_name_the_parameter_that_moves_the_objective() -> None:
    results = _results([float(n % 5) for n in range(40)])
    found = param_importances(job_request(), results)
    assert found is not None
    first = next(iter(LiquiditySweep().space)).name
    assert set(found) == {p.name for p in LiquiditySweep().space}
    assert sum(found.values()) == pytest.approx(1.0)
    assert max(found, key=lambda k: found[k]) == first
    assert found[first] > 0.5, "more than every other parameter together"
    assert param_importances(job_request(), results) == found  # no randomness: the same every time


def test_importances_are_those_of_a_study_built_with_add_trials() -> None:
    """The study is written through its storage's calls, not `add_trials`: same figures."""
    space = LiquiditySweep().space
    optimizer = BatchOptimizer(SamplerSpec("random", 64), 3, space)
    asked = optimizer.ask_batch(300)
    results = {
        a.number: TrialCompleted(
            job_id="j",
            number=a.number,
            params=a.params,
            state="complete" if a.number % 7 else "failed",
            value=float(a.params["risk_reward_ratio"]) ** 2 - a.number % 5
            if a.number % 7
            else None,
            metrics={},
            fingerprint="f",
            duration_ms=1.0,
            replica="r",
        )
        for a in asked
    }
    dists = distributions(space)
    reference = optuna.create_study(direction="maximize")
    reference.add_trials(
        [
            optuna.trial.create_trial(params=dict(r.params), distributions=dists, value=r.value)
            for r in results.values()
            if r.value is not None
        ]
    )
    expected = get_param_importances(
        reference, evaluator=PedAnovaImportanceEvaluator(), normalize=True
    )
    assert param_importances(job_request(), results) == expected


def test_no_importances_without_two_usable_trials_or_any_spread() -> None:
    assert param_importances(job_request(), _results([1.0, None, None])) is None
    assert param_importances(job_request(), _results([2.0] * 10)) is None


async def test_a_completed_job_stores_its_importances_and_shows_them() -> None:
    deps = make_deps()
    store = deps.store
    assert isinstance(store, MemoryJobStore)
    request = job_request(n_iterations=30)
    await store.create_job(request)
    await store.take_job(request.job_id, "r", 30)
    await store.start_job(
        request.job_id,
        sampler="random",
        sampler_version="v",
        batch_size=10,
        window=_request().window,
    )
    await record_importances(request, _results([float(n % 5) for n in range(30)]), deps)
    view = await queries.job_view(request.job_id, deps)
    assert view is not None
    assert view.param_importances is not None
    assert sum(view.param_importances.values()) == pytest.approx(1.0)


# The trainer's walk-forward equity RPC ---------------------------------------------------------
# A walk-forward job on in-memory ports with the trainer's real backtest: the first 6,000 rows
# of the shared candles, a window of the last 3,000, 2 folds at a ratio of 2 (test spans of
# 750 bars), 6 trials per optimization.

WF_N = 6


@pytest.fixture(scope="module")
def wf_candles(candles_excerpt: Path) -> Candles:
    return load_candles(candles_excerpt)


async def _run_walk_forward(candles: Candles) -> tuple[TrainingRequested, MemoryJobStore]:
    job = job_request(
        lookback_candles=3000,
        n_iterations=WF_N,
        walk_forward={"folds": 2, "is_oos_ratio": 2},
        pbo_blocks=12,  # 924 splits: the report keeps a sample of them
    )
    deps = make_deps(candles=candles)
    async with Worker(deps, real=True):
        delivery = FakeDelivery(job.to_bytes())
        await deliveries.job(delivery, deps, no_heartbeat)
    assert delivery.settled == ["ack"]
    assert isinstance(deps.store, MemoryJobStore)
    return job, deps.store


@pytest.fixture(scope="module")
def wf_job(wf_candles: Candles) -> tuple[TrainingRequested, MemoryJobStore]:
    return asyncio.run(_run_walk_forward(wf_candles))


async def test_the_walk_forward_equity_is_the_stored_stitched_record(
    wf_job: tuple[TrainingRequested, MemoryJobStore], wf_candles: Candles
) -> None:
    job, store = wf_job
    row = store.jobs[job.job_id]
    assert row.status == "completed"
    report, window = row.walk_forward, row.data_window
    assert report is not None
    assert window is not None
    reply = await queries.walk_forward_equity(
        GetWalkForwardEquity(job_id=job.job_id, points=40),
        make_deps(store=store, candles=wf_candles),
    )
    assert isinstance(reply, WalkForwardEquityReply)
    assert reply.matches_report is True
    assert reply.fingerprint == report.oos.fingerprint
    assert reply.metrics == report.oos.metrics
    assert reply.trades == sum(f.test_trades for f in report.fold_results)
    # The same record built directly from the core's functions, from the report's parameters.
    plan_ = folds.fold_plan(job, window, wf_candles)
    strategy = LiquiditySweep()
    tests = run_test_folds(
        plan_.history,
        plan_.layout,
        strategy,
        [strategy.parse_params(f.params) if f.params else None for f in report.fold_results],
        BacktestSettings(),
        warmup_bars=plan_.warmup_bars,
    )
    direct = stitch(plan_.history, plan_.layout, tests, BacktestSettings().initial_capital)
    assert direct.fingerprint == reply.fingerprint
    curve = reply.equity
    assert curve.bars == len(direct.equity) == 2 * 750
    assert len(curve.time) <= 40
    assert len(curve.time) == len(curve.equity) == len(curve.drawdown)
    assert curve.time == sorted(curve.time)
    assert curve.time[0] == report.oos.span.first_ms
    assert curve.time[-1] == report.oos.span.last_ms
    assert max(curve.equity) == direct.equity.max()
    assert min(curve.equity) == direct.equity.min()
    assert min(curve.drawdown) == drawdown(direct.equity).min()
    assert curve.equity[0] == job.settings.initial_capital
    assert curve.equity[-1] == report.fold_results[-1].final_capital


async def test_walk_forward_equity_of_no_walk_forward_report_is_not_found(
    wf_job: tuple[TrainingRequested, MemoryJobStore], wf_candles: Candles
) -> None:
    job, store = wf_job
    deps = make_deps(store=store, candles=wf_candles)
    unknown = await queries.walk_forward_equity(GetWalkForwardEquity(job_id="nope"), deps)
    assert isinstance(unknown, ErrorReply)
    assert (unknown.code, unknown.error) == (NOT_FOUND, "no job 'nope'")
    plain = job_request()
    await store.create_job(plain)
    queued = await queries.walk_forward_equity(GetWalkForwardEquity(job_id=plain.job_id), deps)
    assert isinstance(queued, ErrorReply)
    assert queued.code == NOT_FOUND
    assert "has no walk-forward report" in queued.error
    assert "queued" in queued.error

    async def lost(name: str) -> bytes:
        raise SnapshotMissingError(f"dataset snapshot {name} is no longer in the object store")

    elsewhere = make_deps(store=store)
    elsewhere.cache = DatasetCache(lost)  # a replica whose object store lost the snapshot
    gone = await queries.walk_forward_equity(GetWalkForwardEquity(job_id=job.job_id), elsewhere)
    assert isinstance(gone, ErrorReply)
    assert gone.code == NOT_FOUND
    assert "no longer in the object store" in gone.error
    with pytest.raises(ValueError, match="points"):
        GetWalkForwardEquity(job_id=job.job_id, points=5)


async def test_a_job_keeps_its_degradation_points_and_a_list_leaves_them_out(
    wf_job: tuple[TrainingRequested, MemoryJobStore], wf_candles: Candles
) -> None:
    job, store = wf_job
    deps = make_deps(store=store, candles=wf_candles)
    view = (await queries.get_job(GetJob(job_id=job.job_id), deps)).job
    assert view is not None
    assert view.validation is not None
    assert view.walk_forward is not None
    assert view.validation.pbo is not None
    assert view.validation.pbo.sets == 924
    points = view.validation.pbo.degradation.points
    assert points is not None
    assert len(points.is_performance) == len(points.oos_performance) == MAX_DEGRADATION_POINTS
    for fold in view.walk_forward.fold_results:
        assert fold.validation.pbo is None or fold.validation.pbo.degradation.points is not None
    listed = (await queries.list_jobs(ListJobs(), deps)).jobs
    [mine] = [v for v in listed if v.job_id == job.job_id]
    assert mine.validation is not None
    assert mine.validation.pbo is not None
    assert mine.validation.pbo.degradation.points is None
    assert mine.validation.pbo.degradation.slope == view.validation.pbo.degradation.slope
    assert mine.walk_forward is not None
    for fold in mine.walk_forward.fold_results:
        assert fold.validation.pbo is None or fold.validation.pbo.degradation.points is None
    assert mine.walk_forward.final.validation.pbo is not None
    assert mine.walk_forward.final.validation.pbo.degradation.points is None
    # Everything else is the job's own.
    assert mine.model_copy(update={"validation": None, "walk_forward": None}) == view.model_copy(
        update={"validation": None, "walk_forward": None}
    )
