"""General rules of the spec checked on random candles (hypothesis).

The candles are random walks on a 1/8 price grid with wicks and volume spikes, so that sweeps
and trades happen often and mirrored prices (c - p) are exact in floating point.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradepulse.quant import (
    BacktestSettings,
    Candles,
    IndicatorSettings,
    LiquiditySweep,
    LiquiditySweepParams,
    run_backtest,
)

STEP_MS = 300_000
SMALL = IndicatorSettings(
    atr_period=5, volume_window=5, touch_tolerance=0.001, regime_lookback_days=30 * 300 / 86400
)


def random_candles(seed: int, n: int, base: float = 1000.0) -> Candles:
    rng = np.random.default_rng(seed)
    close = base + np.cumsum(rng.integers(-40, 41, n)) / 8
    close = np.maximum(close, 100.0)
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1] + rng.integers(-2, 3, n - 1) / 8
    open_ = np.maximum(open_, 50.0)
    wick_up = rng.integers(0, 24, n) / 8 * (rng.random(n) < 0.3)
    wick_dn = rng.integers(0, 24, n) / 8 * (rng.random(n) < 0.3)
    high = np.maximum(open_, close) + wick_up
    low = np.minimum(open_, close) - wick_dn
    volume = rng.integers(1, 100, n).astype(float) * np.where(rng.random(n) < 0.15, 5.0, 1.0)
    times = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * STEP_MS
    return Candles.from_arrays(times, open_, high, low, close, volume, timeframe_seconds=300)


params_strategy = st.builds(
    LiquiditySweepParams,
    key_level_lookback=st.integers(3, 30),
    min_level_touches=st.integers(1, 3),
    pierce_depth=st.sampled_from([0.0, 0.0005, 0.001, 0.002]),
    volume_spike_threshold=st.sampled_from([0.0, 1.0, 1.5, 2.0]),
    reversal_candles=st.integers(1, 5),
    min_distance_from_level=st.sampled_from([0.0, 0.0005, 0.001]),
    atr_multiplier_sl=st.sampled_from([0.5, 1.0, 2.0]),
    risk_reward_ratio=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    max_holding_periods=st.integers(1, 40),
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def trade_key(t: object) -> tuple[object, ...]:
    return tuple(getattr(t, f) for f in t.__slots__)  # type: ignore[attr-defined]


@FAST
@given(seed=st.integers(0, 2**32 - 1), params=params_strategy, data=st.data())
def test_candles_after_bar_k_change_nothing_up_to_k(
    seed: int, params: LiquiditySweepParams, data: st.DataObject
) -> None:
    full = random_candles(seed, 300)
    k = data.draw(st.integers(20, 298), label="k")
    strategy = LiquiditySweep(SMALL)
    short = full.slice(0, k + 1)

    sig_full = strategy.signals(strategy.prepare(full), params, regime="any", trade_from=0)
    sig_short = strategy.signals(strategy.prepare(short), params, regime="any", trade_from=0)
    upto = sig_full.bar <= k
    assert np.array_equal(sig_full.bar[upto], sig_short.bar)
    assert np.array_equal(sig_full.direction[upto], sig_short.direction)
    assert np.array_equal(sig_full.stop_loss[upto], sig_short.stop_loss)
    assert np.array_equal(sig_full.take_profit[upto], sig_short.take_profit)

    r_full = run_backtest(full, strategy, params)
    r_short = run_backtest(short, strategy, params)
    closed = [trade_key(t) for t in r_full.trades if t.exit_bar <= k]
    assert closed == [trade_key(t) for t in r_short.trades[: len(closed)]]
    # The bar k itself may close a still-open trade as end_of_data in the short run.
    assert np.array_equal(r_full.equity[:k], r_short.equity[:k])


def mirrored(c: Candles, pivot: float) -> Candles:
    return Candles.from_arrays(
        c.open_time,
        pivot - c.open,
        pivot - c.low,
        pivot - c.high,
        pivot - c.close,
        c.volume,
        timeframe_seconds=c.timeframe_seconds,
    )


@FAST
@given(seed=st.integers(0, 2**32 - 1), params=params_strategy)
def test_mirrored_prices_turn_longs_into_shorts_on_the_same_bars(
    seed: int, params: LiquiditySweepParams
) -> None:
    # Exact mirroring needs the multiplicative tolerances at 0 and the price-dependent costs
    # (slippage, fees, the leverage cap on the fill) out of the way.
    exact = dataclasses.replace(params, pierce_depth=0.0, min_distance_from_level=0.0)
    indicators = IndicatorSettings(atr_period=5, volume_window=5, touch_tolerance=0.0)
    strategy = LiquiditySweep(indicators)
    costless = BacktestSettings(fee_rate=0.0, slippage=0.0, max_leverage=1e12)
    candles = random_candles(seed, 300)
    pivot = float(np.ceil(candles.high.max()) + 1000.0)
    mirror = mirrored(candles, pivot)

    a = run_backtest(candles, strategy, exact, costless)
    b = run_backtest(mirror, strategy, exact, costless)
    assert len(a.trades) == len(b.trades)
    for x, y in zip(a.trades, b.trades, strict=True):
        assert x.side != y.side
        assert (x.signal_bar, x.entry_bar, x.exit_bar, x.exit_reason) == (
            y.signal_bar,
            y.entry_bar,
            y.exit_bar,
            y.exit_reason,
        )
        assert y.stop_loss == pytest.approx(pivot - x.stop_loss, rel=1e-12)
        assert y.net_pnl == pytest.approx(x.net_pnl, rel=1e-6, abs=1e-6)


@FAST
@given(seed=st.integers(0, 2**32 - 1), params=params_strategy, trade_from=st.integers(0, 250))
def test_final_equity_is_capital_plus_net_pnl(
    seed: int, params: LiquiditySweepParams, trade_from: int
) -> None:
    candles = random_candles(seed, 300)
    result = run_backtest(candles, LiquiditySweep(SMALL), params, trade_from=trade_from)
    net = sum(t.net_pnl for t in result.trades)
    assert result.equity[0] == 10000.0
    assert len(result.equity) == len(candles) - trade_from
    assert result.equity[-1] == pytest.approx(10000.0 + net, rel=1e-9, abs=1e-6)
    assert result.metrics["total_trades"] == len(result.trades)
    for t in result.trades:
        assert t.signal_bar >= trade_from
        assert t.entry_bar == t.signal_bar + 1
        assert t.entry_bar <= t.exit_bar <= t.entry_bar + params.max_holding_periods - 1
        assert t.net_pnl == pytest.approx(t.gross_pnl - t.fees, rel=1e-12, abs=1e-9)
    for first, second in zip(result.trades, result.trades[1:], strict=False):
        assert second.signal_bar >= first.exit_bar


@FAST
@given(seed=st.integers(0, 2**32 - 1), params=params_strategy)
def test_same_inputs_same_fingerprint(seed: int, params: LiquiditySweepParams) -> None:
    candles = random_candles(seed, 250)
    strategy = LiquiditySweep(SMALL)
    prepared = strategy.prepare(candles)
    one = run_backtest(candles, strategy, params, prepared=prepared)
    two = run_backtest(candles, LiquiditySweep(SMALL), params.to_dict())
    assert one.fingerprint == two.fingerprint
    assert one.metrics == two.metrics
    assert np.array_equal(one.equity, two.equity)


def test_fingerprint_is_the_same_in_a_fresh_process() -> None:
    params = {
        "key_level_lookback": 10,
        "min_level_touches": 2,
        "pierce_depth": 0.0,
        "volume_spike_threshold": 1.0,
        "reversal_candles": 3,
        "min_distance_from_level": 0.0,
        "atr_multiplier_sl": 1.0,
        "risk_reward_ratio": 2.0,
        "max_holding_periods": 20,
    }
    here = run_backtest(random_candles(11, 400), LiquiditySweep(SMALL), params)
    assert here.metrics["total_trades"], "the case must trade to mean anything"
    code = (
        "import json, sys\n"
        "from tests.unit.test_properties import SMALL, random_candles\n"
        "from tradepulse.quant import LiquiditySweep, run_backtest\n"
        "r = run_backtest(random_candles(11, 400), LiquiditySweep(SMALL), json.loads(sys.argv[1]))\n"
        "print(r.fingerprint)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here.fingerprint


def test_fingerprint_changes_with_the_parameters() -> None:
    candles = random_candles(5, 400)
    strategy = LiquiditySweep(SMALL)
    base = LiquiditySweepParams(10, 2, 0.0, 1.0, 3, 0.0, 1.0, 2.0, 20)
    other = LiquiditySweepParams(10, 2, 0.0, 1.0, 3, 0.0, 1.0, 2.5, 20)
    a = run_backtest(candles, strategy, base)
    b = run_backtest(candles, strategy, other)
    assert a.metrics["total_trades"]
    assert a.fingerprint != b.fingerprint


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), sets=st.lists(params_strategy, min_size=1, max_size=3))
def test_preparing_for_known_sets_changes_no_result(
    seed: int, sets: list[LiquiditySweepParams]
) -> None:
    # A batch prepares only its own lookbacks; any other is prepared when first asked for.
    strategy = LiquiditySweep(SMALL)
    candles = random_candles(seed, 400)
    full = strategy.prepare(candles)
    lean = strategy.prepare(candles, sets)
    assert sorted(lean._levels) == sorted({p.key_level_lookback for p in sets})
    other = dataclasses.replace(sets[0], key_level_lookback=sets[0].key_level_lookback + 31)
    for params in [*sets, other]:
        expected = run_backtest(candles, strategy, params, prepared=full)
        got = run_backtest(candles, strategy, params, prepared=lean)
        assert got.fingerprint == expected.fingerprint
        assert run_backtest(candles, strategy, params).fingerprint == expected.fingerprint
