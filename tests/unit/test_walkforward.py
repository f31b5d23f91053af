"""Walk-forward (validation spec section 3): layouts, windows, seeds, stitching and ratios."""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit import test_properties as props
from tradepulse.quant import (
    BacktestSettings,
    Candles,
    LiquiditySweep,
    LiquiditySweepParams,
    run_backtest,
)
from tradepulse.quant.backtest.types import BacktestResult
from tradepulse.quant.errors import (
    FoldTooShortError,
    QuantError,
    WalkForwardError,
    WarmupRoomError,
    WindowError,
)
from tradepulse.quant.metrics import periods_per_year
from tradepulse.quant.strategies.space import ParamSpec, SearchSpace
from tradepulse.quant.walkforward import (
    FLAT_NO_CAPITAL,
    FLAT_NO_USABLE_TRIAL,
    FoldTest,
    Span,
    ann,
    check_warmup_room,
    efficiency,
    flat_fold,
    fold_dispersion,
    fold_efficiencies,
    fold_seed,
    fold_test_window,
    fold_train_window,
    layout,
    oos_psr,
    run_test_folds,
    stitch,
    stitched_wfe,
    wfe,
)

PPY = periods_per_year(300)
STRATEGY = LiquiditySweep(props.SMALL)
# Trades often on the random candles of test_properties.
BUSY = LiquiditySweepParams(
    key_level_lookback=5,
    min_level_touches=1,
    pierce_depth=0.0,
    volume_spike_threshold=0.0,
    reversal_candles=1,
    min_distance_from_level=0.0,
    atr_multiplier_sl=1.0,
    risk_reward_ratio=1.0,
    max_holding_periods=10,
)


def spans(pairs: list[tuple[int, int]]) -> list[Span]:
    return [Span(a, b) for a, b in pairs]


# --- layout --------------------------------------------------------------------------------


def test_rolling_layout_with_a_remainder() -> None:
    # W = 103, K = 3, rho = 2: L = floor(103/5) = 20, I = 103 - 60 = 43 (the 3 left over
    # land in the first training span).
    wf = layout(103, 10, 3, 2, "rolling")
    assert (wf.test_bars, wf.train_bars, wf.n) == (20, 43, 113)
    assert [wf.test_span(i) for i in range(3)] == spans([(53, 73), (73, 93), (93, 113)])
    assert [wf.train_span(i) for i in range(3)] == spans([(10, 53), (30, 73), (50, 93)])
    assert wf.final_span == Span(70, 113)
    assert wf.train_span(3) == wf.final_span
    assert wf.oos_span == Span(53, 113)


def test_anchored_layout_trains_from_the_window_start() -> None:
    wf = layout(103, 10, 3, 2, "anchored")
    assert [wf.test_span(i) for i in range(3)] == spans([(53, 73), (73, 93), (93, 113)])
    assert [wf.train_span(i) for i in range(3)] == spans([(10, 53), (10, 73), (10, 93)])
    assert wf.final_span == Span(10, 113)


def test_exact_division_and_defaults() -> None:
    # W = 90 = 9 * 10 with the defaults K = 5, rho = 4: I = 40 = rho * L exactly.
    wf = layout(90, 0)
    assert (wf.folds, wf.is_oos_ratio, wf.mode) == (5, 4, "rolling")
    assert (wf.test_bars, wf.train_bars) == (10, 40)
    assert wf.test_span(4) == Span(80, 90)
    assert wf.train_span(4) == Span(40, 80)
    assert wf.final_span == Span(50, 90)


def test_the_first_training_span_is_at_least_rho_test_spans() -> None:
    for w in range(18, 400, 7):
        for k in (2, 5, 20):
            for rho in (1, 4, 20):
                try:
                    wf = layout(w, 3, k, rho)
                except FoldTooShortError:
                    assert w // (k + rho) < 2
                    continue
                assert wf.train_bars >= rho * wf.test_bars
                assert wf.test_span(k - 1).stop == wf.n == 3 + w


def test_test_spans_shorter_than_two_bars_are_refused_naming_folds() -> None:
    assert layout(18, 0, 5, 4).test_bars == 2  # 18 // 9
    with pytest.raises(FoldTooShortError, match=r"^walk_forward\.folds: .*1 bars") as info:
        layout(17, 0, 5, 4)
    assert info.value.field == "walk_forward.folds"
    assert isinstance(info.value, QuantError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"folds": 1}, "walk_forward.folds"),
        ({"folds": 21}, "walk_forward.folds"),
        ({"folds": True}, "walk_forward.folds"),
        ({"folds": 5.0}, "walk_forward.folds"),
        ({"is_oos_ratio": 0}, "walk_forward.is_oos_ratio"),
        ({"is_oos_ratio": 21}, "walk_forward.is_oos_ratio"),
        ({"mode": "expanding"}, "walk_forward.mode"),
    ],
)
def test_out_of_range_requests_name_their_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(WalkForwardError) as info:
        layout(10_000, 0, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_limits_are_accepted() -> None:
    assert layout(10_000, 0, 2, 1).folds == 2
    assert layout(10_000, 0, 20, 20).is_oos_ratio == 20
    with pytest.raises(WalkForwardError, match="fold"):
        layout(103, 10, 3, 2).test_span(3)


@given(
    w=st.integers(1, 5000),
    s=st.integers(0, 3000),
    k=st.integers(2, 20),
    rho=st.integers(1, 20),
    mode=st.sampled_from(["rolling", "anchored"]),
)
def test_any_layout_tiles_the_window(w: int, s: int, k: int, rho: int, mode: str) -> None:
    try:
        wf = layout(w, s, k, rho, mode)
    except FoldTooShortError:
        assert w // (k + rho) < 2
        return
    tests = [wf.test_span(i) for i in range(k)]
    assert tests[0].start == s + wf.train_bars == wf.oos_span.start
    assert all(a.stop == b.start for a, b in itertools.pairwise(tests))
    assert all(t.bars == wf.test_bars >= 2 for t in tests)
    assert tests[-1].stop == wf.oos_span.stop == s + w
    for i, test in enumerate(tests):
        train = wf.train_span(i)
        assert train.stop == test.start
        assert train.start == (test.start - wf.train_bars if mode == "rolling" else s)
        assert train.start >= s
    assert wf.final_span.stop == s + w
    assert wf.final_span.bars == (wf.train_bars if mode == "rolling" else w)


# --- windows -------------------------------------------------------------------------------


def test_training_windows_take_fewer_warm_up_bars_where_the_history_starts() -> None:
    history = props.random_candles(1, 113)
    wf = layout(103, 10, 3, 2, "rolling")
    w0 = fold_train_window(history, wf, 0, 20)
    assert (w0.candles.first_row, len(w0.candles), w0.trade_from) == (0, 53, 10)
    w1 = fold_train_window(history, wf, 1, 20)
    assert (w1.candles.first_row, len(w1.candles), w1.trade_from) == (10, 63, 20)
    final = fold_train_window(history, wf, 3, 20)
    assert (final.candles.first_row, len(final.candles), final.trade_from) == (50, 63, 20)


def test_test_windows_need_their_full_warm_up() -> None:
    history = props.random_candles(1, 113)
    wf = layout(103, 10, 3, 2, "rolling")
    w = fold_test_window(history, wf, 1, 53)
    assert (w.candles.first_row, len(w.candles), w.trade_from) == (20, 73, 53)
    check_warmup_room(wf, 53)  # fold 0 tests from bar 53: exactly enough
    with pytest.raises(WarmupRoomError, match="1 bars too late") as info:
        check_warmup_room(wf, 54)
    assert info.value.field == "walk_forward.is_oos_ratio"
    with pytest.raises(WarmupRoomError):
        fold_test_window(history, wf, 2, 54)


def test_a_window_for_another_history_is_refused() -> None:
    wf = layout(103, 10, 3, 2)
    with pytest.raises(WindowError, match="113 bars"):
        fold_train_window(props.random_candles(1, 112), wf, 0, 10)


# --- seeds ---------------------------------------------------------------------------------


def test_fold_seeds_follow_the_documented_function() -> None:
    for seed, fold in ((0, 0), (42, 3), (2**63 - 1, 20)):
        digest = hashlib.sha256(f"tradepulse-walk-forward-seed-v1:{seed}:{fold}".encode()).digest()
        assert fold_seed(seed, fold) == int.from_bytes(digest[:8], "big") % 2**63
    # Pinned: a change of the function would change every stored walk-forward job's trials.
    assert fold_seed(42, 0) == fold_seed(42, 0) == 0x73C115FFFD210D20


def test_fold_seeds_differ_between_folds_and_neighbouring_seeds() -> None:
    seeds = {fold_seed(s, i) for s in range(50) for i in range(21)}
    assert len(seeds) == 50 * 21
    assert all(0 <= x <= 2**63 - 1 for x in seeds)
    with pytest.raises(WalkForwardError):
        fold_seed(1, -1)


# --- ratios and their null rules -----------------------------------------------------------


def test_ann_and_its_nulls() -> None:
    assert ann(10.0, 99, 105120.0) == 10.0 * 105120.0 / 99
    assert ann(None, 99, 105120.0) is None
    assert ann(float("nan"), 99, 105120.0) is None
    assert ann(10.0, 0, 105120.0) is None


def test_efficiency_and_its_nulls() -> None:
    assert efficiency(3.0, 4.0) == 0.75
    assert efficiency(-3.0, 4.0) == -0.75
    assert efficiency(3.0, 0.0) is None  # ann(train) <= 0
    assert efficiency(3.0, -1.0) is None
    assert efficiency(3.0, None) is None  # no usable trial
    assert efficiency(None, 4.0) is None  # a test without capital


def test_wfe_and_its_nulls() -> None:
    # Mean over the folds with a usable trial only: (2 + 6) / 2 = 4.
    assert wfe(2.0, [2.0, None, 6.0]) == 0.5
    assert wfe(-2.0, [4.0]) == -0.5
    assert wfe(2.0, [None, None]) is None  # no fold had a usable trial
    assert wfe(2.0, []) is None
    assert wfe(2.0, [1.0, -1.0]) is None  # mean 0
    assert wfe(2.0, [-3.0, 1.0]) is None  # mean < 0
    assert wfe(None, [1.0]) is None


def test_efficiencies_count_each_backtests_returns_anchored() -> None:
    # Anchored training spans of 43, 63, 83 bars (42, 62, 82 returns); tests of 20 bars (19).
    wf = layout(103, 10, 3, 2, "anchored")
    train = [{"net_profit_pct": 4.2}, {"net_profit_pct": 6.2}, None]
    tests = [
        FoldTest(i, wf.test_span(i), 100.0, None, None, {"net_profit_pct": pct})
        for i, pct in enumerate((1.9, -0.95, 3.0))
    ]
    got = fold_efficiencies(wf, train, tests, PPY)
    # fold 0: (1.9/19) / (4.2/42) = 1; fold 1: (-0.95/19) / (6.2/62) = -0.5; fold 2: no trial.
    assert got[0] == pytest.approx(1.0, rel=1e-12)
    assert got[1] == pytest.approx(-0.5, rel=1e-12)
    assert got[2] is None
    # A losing best trial has no efficiency; a test without capital has none either.
    train_losing = [{"net_profit_pct": -4.2}, {"net_profit_pct": 0.0}, None]
    assert fold_efficiencies(wf, train_losing, tests, PPY) == [None, None, None]
    no_capital = [*tests[:2], FoldTest(2, wf.test_span(2), 0.0, None, FLAT_NO_CAPITAL, None)]
    assert fold_efficiencies(wf, [*train[:2], {"net_profit_pct": 1.0}], no_capital, PPY)[2] is None


def test_wfe_over_the_stitched_bars_and_the_usable_folds() -> None:
    wf = layout(103, 10, 3, 2, "anchored")
    stitched = BacktestResult(
        np.empty((0, 5), dtype=np.int64),
        np.empty((0, 9)),
        np.arange(60, dtype=np.int64),
        53,
        np.ones(60),
        {"net_profit_pct": 5.9},
        0,
    )
    # ann(stitched) = 5.9/59; the usable folds' mean is (4.2/42 + 12.4/62) / 2 = 0.15.
    train = [{"net_profit_pct": 4.2}, {"net_profit_pct": 12.4}, None]
    assert stitched_wfe(wf, train, stitched, PPY) == pytest.approx(0.1 / 0.15, rel=1e-12)
    assert stitched_wfe(wf, [None, None, None], stitched, PPY) is None
    losing = [{"net_profit_pct": -4.2}, {"net_profit_pct": 1.0}, None]
    assert stitched_wfe(wf, losing, stitched, PPY) is None  # mean <= 0


SPACE = SearchSpace(
    (
        ParamSpec("a", "int", 0, 10, 1),
        ParamSpec("b", "float", 1.0, 3.0),
        ParamSpec("c", "float", 2.0, 2.0),
    )
)


def test_dispersion_over_the_usable_folds() -> None:
    best = [{"a": 2, "b": 1.0, "c": 2.0}, None, {"a": 6, "b": 2.0, "c": 2.0}]
    d = fold_dispersion(best, SPACE)
    # a: std([2, 6]) = 2 over a range of 10; b: std([1, 2]) = 0.5 over 2; c: no range.
    assert d == {"a": 0.2, "b": 0.25, "c": 0.0}


def test_dispersion_is_null_with_fewer_than_two_usable_folds() -> None:
    assert fold_dispersion([{"a": 2, "b": 1.0, "c": 2.0}, None], SPACE) == dict.fromkeys("abc")
    assert fold_dispersion([None, None, None], SPACE) == dict.fromkeys("abc")


# --- test folds, carried capital, stitching ------------------------------------------------


def test_capital_carries_from_fold_to_fold() -> None:
    history = props.random_candles(3, 1230)
    wf = layout(1200, 30, 4, 2, "rolling")  # L = 200, I = 400
    settings = BacktestSettings(initial_capital=5000.0, fee_rate=0.0005)
    tests = run_test_folds(history, wf, STRATEGY, [BUSY] * 4, settings, warmup_bars=30)
    assert [t.fold for t in tests] == [0, 1, 2, 3]
    assert tests[0].initial_capital == 5000.0
    for prev, test in itertools.pairwise(tests):
        assert test.initial_capital == prev.final_capital == float(prev.equity[-1])
    for test in tests:
        assert test.result is not None
        assert test.flat_reason is None
        assert test.equity[0] == test.initial_capital
        assert len(test.equity) == wf.test_bars
        # The same backtest as one run by hand over the spec's slice with C_i.
        span = wf.test_span(test.fold)
        by_hand = run_backtest(
            history.slice(span.start - 30, span.stop),
            STRATEGY,
            BUSY,
            BacktestSettings(initial_capital=test.initial_capital, fee_rate=0.0005),
            trade_from=30,
        )
        assert by_hand.fingerprint == test.result.fingerprint
        assert test.metrics == by_hand.metrics
    assert sum(len(t.result.trades) for t in tests if t.result) > 8  # the case means trades


def test_stitched_record_chains_the_folds_with_zero_boundary_returns() -> None:
    history = props.random_candles(3, 1230)
    wf = layout(1200, 30, 4, 2, "rolling")
    settings = BacktestSettings(initial_capital=5000.0)
    tests = run_test_folds(history, wf, STRATEGY, [BUSY] * 4, settings, warmup_bars=30)
    oos = stitch(history, wf, tests, 5000.0)

    assert np.array_equal(oos.equity, np.concatenate([t.equity for t in tests]))
    returns = oos.equity[1:] / oos.equity[:-1] - 1.0
    for i in range(1, 4):
        boundary = i * wf.test_bars  # index of fold i's first bar in the stitched curve
        assert oos.equity[boundary] == oos.equity[boundary - 1]
        assert returns[boundary - 1] == 0.0
    fold_trades = [t for test in tests if test.result for t in test.result.trades]
    assert oos.trades == tuple(fold_trades)
    assert oos.first_row == wf.oos_span.start
    m = oos.metrics
    assert m["net_profit"] == tests[-1].final_capital - 5000.0
    assert m["total_trades"] == len(fold_trades)
    # LS section 6 by hand over the stitched curve.
    expected_sharpe = float(np.mean(returns) / np.std(returns, ddof=1) * math.sqrt(PPY))
    assert m["sharpe_ratio"] == pytest.approx(expected_sharpe, rel=1e-9)
    exposed = sum(t.exit_bar - t.entry_bar + 1 for t in fold_trades)
    assert m["exposure_pct"] == pytest.approx(exposed / len(oos.equity) * 100.0, rel=1e-12)
    assert oos.ambiguous_exits == sum(t.result.ambiguous_exits for t in tests if t.result)
    # The fingerprint is BacktestResult's canonical form over these trades and metrics.
    again = BacktestResult(
        oos.trade_ints, oos.trade_floats, oos.open_time, oos.first_row, oos.equity, m, 0
    )
    assert again.fingerprint == oos.fingerprint
    assert oos_psr(oos) is not None


def test_a_fold_without_a_usable_trial_stays_flat_and_passes_its_capital_on() -> None:
    history = props.random_candles(3, 1230)
    wf = layout(1200, 30, 4, 2, "rolling")
    settings = BacktestSettings(initial_capital=5000.0)
    tests = run_test_folds(
        history, wf, STRATEGY, [BUSY, None, BUSY, BUSY], settings, warmup_bars=30
    )
    flat = tests[1]
    assert flat.result is None
    assert flat.flat_reason == FLAT_NO_USABLE_TRIAL
    assert flat.initial_capital == tests[0].final_capital
    assert np.array_equal(flat.equity, np.full(wf.test_bars, flat.initial_capital))
    assert flat.final_capital == tests[2].initial_capital
    assert flat.metrics is not None
    assert (flat.metrics["net_profit"], flat.metrics["total_trades"]) == (0.0, 0)
    assert flat.metrics["sharpe_ratio"] == 0.0
    oos = stitch(history, wf, tests, 5000.0)
    start = wf.test_bars
    assert np.all(oos.equity[start : 2 * start] == tests[0].final_capital)
    assert all(not (start <= t.entry_bar - wf.oos_span.start < 2 * start) for t in oos.trades)


def test_stitched_metrics_by_hand_over_three_small_folds() -> None:
    # Fold 0 gains 10 % twice, fold 1 is flat (no usable trial), fold 2 gains 10 % then loses
    # 1/11: returns 0.1, 0.1 | 0, 0, 0 | 0, 0.1, -1/11 with the boundaries' zeros.
    history = props.random_candles(5, 15)
    wf = layout(12, 3, 3, 1, "rolling")  # L = 3, I = 3: tests [6, 9), [9, 12), [12, 15)
    curves = [np.array([100.0, 110.0, 121.0]), None, np.array([121.0, 133.1, 121.0])]
    tests: list[FoldTest] = []
    capital = 100.0
    for fold, curve in enumerate(curves):
        span = wf.test_span(fold)
        if curve is None:
            tests.append(flat_fold(fold, span, capital, FLAT_NO_USABLE_TRIAL, PPY))
        else:
            result = BacktestResult(
                np.empty((0, 5), dtype=np.int64),
                np.empty((0, 9)),
                history.open_time[span.start - 3 : span.stop],
                span.start - 3,
                curve,
                {},
                0,
            )
            tests.append(FoldTest(fold, span, capital, result, None, {}))
        capital = tests[-1].final_capital
    oos = stitch(history, wf, tests, 100.0)
    assert oos.equity.tolist() == [100.0, 110.0, 121.0, 121.0, 121.0, 121.0, 121.0, 133.1, 121.0]
    r = np.array([0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 133.1 / 121.0 - 1.0, 121.0 / 133.1 - 1.0])
    m = oos.metrics
    assert m["net_profit"] == pytest.approx(21.0, rel=1e-12)
    assert m["net_profit_pct"] == pytest.approx(21.0, rel=1e-12)
    assert m["total_trades"] == 0
    assert m["sharpe_ratio"] == pytest.approx(
        float(np.mean(r) / np.std(r, ddof=1) * math.sqrt(PPY)), rel=1e-12
    )
    assert m["max_drawdown_pct"] == pytest.approx((133.1 - 121.0) / 133.1 * 100.0, rel=1e-12)
    # ann(stitched) over its 8 returns; the folds' training figures are given.
    stitched_ann = ann(m["net_profit_pct"], len(oos.equity) - 1, PPY)
    assert stitched_ann == pytest.approx(21.0 * PPY / 8, rel=1e-12)


def test_a_fold_without_capital_trades_nothing_and_has_no_percentages() -> None:
    test = flat_fold(2, Span(10, 20), 0.0, FLAT_NO_CAPITAL, PPY)
    assert test.metrics is None
    assert test.result is None
    assert test.final_capital == 0.0
    assert flat_fold(2, Span(10, 20), -3.0, FLAT_NO_CAPITAL, PPY).metrics is None


def test_stitch_refuses_capital_that_was_not_carried() -> None:
    history = props.random_candles(3, 1230)
    wf = layout(1200, 30, 4, 2, "rolling")
    folds = [flat_fold(i, wf.test_span(i), 100.0, FLAT_NO_USABLE_TRIAL, PPY) for i in range(4)]
    stitch(history, wf, folds, 100.0)
    with pytest.raises(WalkForwardError, match="C_0"):
        stitch(history, wf, folds, 99.0)
    broken = [*folds[:3], flat_fold(3, wf.test_span(3), 101.0, FLAT_NO_USABLE_TRIAL, PPY)]
    with pytest.raises(WalkForwardError, match=r"fold 3 starts with 101\.0"):
        stitch(history, wf, broken, 100.0)


def test_an_all_flat_record_has_no_psr() -> None:
    history = props.random_candles(3, 1230)
    wf = layout(1200, 30, 4, 2, "rolling")
    folds = [flat_fold(i, wf.test_span(i), 100.0, FLAT_NO_USABLE_TRIAL, PPY) for i in range(4)]
    oos = stitch(history, wf, folds, 100.0)
    assert oos.metrics["net_profit"] == 0.0
    assert oos.metrics["sharpe_ratio"] == 0.0
    assert oos_psr(oos) is None  # m_2 = 0


# --- no look-ahead -------------------------------------------------------------------------


def with_new_tail(history: Candles, at: int, seed: int) -> Candles:
    """The same candles before bar `at`, others from `at` on (same length: same layout)."""
    other = props.random_candles(seed, len(history), base=float(history.close[at - 1]))
    cols = [
        np.concatenate([getattr(history, c)[:at], getattr(other, c)[at:]])
        for c in ("open", "high", "low", "close", "volume")
    ]
    o, h, lo, c, v = cols
    h = np.maximum(h, np.maximum(o, c))
    lo = np.minimum(lo, np.minimum(o, c))
    return Candles.from_arrays(history.open_time, o, h, lo, c, v, timeframe_seconds=300)


@props.FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    params=props.params_strategy,
    folds=st.integers(2, 5),
    rho=st.integers(1, 4),
    mode=st.sampled_from(["rolling", "anchored"]),
    data=st.data(),
)
def test_bars_after_a_fold_span_change_nothing_in_its_backtests(
    seed: int, params: LiquiditySweepParams, folds: int, rho: int, mode: str, data: st.DataObject
) -> None:
    warmup = 30
    history = props.random_candles(seed, 400)
    wf = layout(400 - warmup, warmup, folds, rho, mode)
    fold = data.draw(st.integers(0, folds), label="fold")  # folds: the final optimization
    span = wf.train_span(fold)
    window = fold_train_window(history, wf, fold, warmup)
    # No trial sees a bar at or after train_end, nor one before its warm-up.
    assert window.candles.first_row == max(0, span.start - warmup)
    assert window.candles.first_row + len(window.candles) == span.stop
    assert window.candles.first_row + window.trade_from == span.start
    base = run_backtest(window.candles, STRATEGY, params, trade_from=window.trade_from)
    if span.stop < len(history):
        changed = with_new_tail(history, span.stop, seed + 1)
        again = fold_train_window(changed, wf, fold, warmup)
        other = run_backtest(again.candles, STRATEGY, params, trade_from=again.trade_from)
        assert other.fingerprint == base.fingerprint
        assert np.array_equal(other.equity, base.equity)
    if fold < folds:
        # The same for the fold's test: nothing at or after test_end reaches it.
        test = wf.test_span(fold)
        tw = fold_test_window(history, wf, fold, warmup)
        assert tw.candles.first_row == test.start - warmup
        assert tw.candles.first_row + len(tw.candles) == test.stop
        tested = run_backtest(tw.candles, STRATEGY, params, trade_from=tw.trade_from)
        if test.stop < len(history):
            changed = with_new_tail(history, test.stop, seed + 2)
            again = fold_test_window(changed, wf, fold, warmup)
            other = run_backtest(again.candles, STRATEGY, params, trade_from=again.trade_from)
            assert other.fingerprint == tested.fingerprint
