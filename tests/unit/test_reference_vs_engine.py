"""The engine against the slow reference on random candles and random parameters.

Candles are a mean-reverting random walk (so highs and lows revisit the same levels and
become key) with occasional long wicks on high volume (so sweeps happen) and occasional
opening gaps (so stops and targets are crossed at the open). Parameters and settings are
drawn well beyond the optimization ranges, small lookbacks included, as a single backtest
accepts them. Both implementations must give the same trades (every field), the same
equity curve, the same metrics (``None`` where ``None``) and the same ambiguous-exit count.

Skips while ``tradepulse.quant`` cannot be imported.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from tests.reference.adapters import (
    ENGINE_MISSING,
    Candleset,
    Outcome,
    RunSettings,
    run_engine,
    run_reference,
)
from tests.reference.sweep_reference import METRIC_NAMES, TRADE_FIELDS

pytest.importorskip("tradepulse.quant", reason=ENGINE_MISSING)

REL = 1e-9
# Absolute slack only for values that are exactly 0 in one and a rounding error in the
# other (a gross PnL of X - F with X == F, a mean return that cancels).
ABS = 1e-12


def make_candles(seed: int, n: int, timeframe_seconds: int) -> Candleset:
    """A valid random candle series: O, C within [L, H], all prices > 0, volume > 0.

    A log-price random walk pulled towards a slowly drifting anchor. In a ranging series
    (most of them) ordinary bars stay inside a band around the anchor and their wicks stop
    within a hair of its edges, so the edges collect touches and become key levels; spike
    bars (long wick, high volume) pierce the band and close back inside: sweeps.
    """
    rng = np.random.default_rng(seed)
    sigma = float(rng.uniform(0.002, 0.012))  # per-bar log volatility
    pull = float(rng.uniform(0.02, 0.3))  # mean reversion towards the anchor
    spike_p = float(rng.uniform(0.03, 0.15))
    gap_p = float(rng.uniform(0.0, 0.05))
    ranging = rng.random() < 0.7
    band = float(rng.uniform(1.0, 4.0)) * sigma  # half-width of the range, in log price
    hair = float(rng.uniform(0.0, 0.002))  # how far past an edge an ordinary wick may go
    anchor = math.log(float(rng.uniform(20.0, 50000.0)))
    base_volume = float(rng.uniform(1.0, 1000.0))
    rows: list[tuple[float, float, float, float, float]] = []
    prev_close = math.exp(anchor)
    for _ in range(n):
        anchor += float(rng.normal(0.0, sigma * 0.1))
        gapped = rng.random() < gap_p
        gap = rng.normal(0.0, sigma * 3) if gapped else rng.normal(0, sigma * 0.1)
        o = prev_close * math.exp(float(gap))
        x = math.log(o) + pull * (anchor - math.log(o)) + float(rng.normal(0.0, sigma))
        c = math.exp(x)
        up = abs(float(rng.normal(0.0, sigma * 0.5)))
        down = abs(float(rng.normal(0.0, sigma * 0.5)))
        volume = base_volume * math.exp(float(rng.normal(0.0, 0.3)))
        spike = rng.random() < spike_p
        if spike:  # a long wick on high volume, either way
            wick = float(rng.uniform(1.0, 5.0)) * sigma
            if rng.random() < 0.5:
                up += wick
            else:
                down += wick
            volume *= float(rng.uniform(1.5, 6.0))
        h = max(o, c) * (1 + up)
        lo = min(o, c) * (1 - down)
        if ranging and not spike and not gapped:
            ceiling = math.exp(anchor + band)
            floor = math.exp(anchor - band)
            o = min(max(o, floor), ceiling)
            c = min(max(c, floor), ceiling)
            cap = ceiling * (1 + hair * float(rng.random()))
            h = max(min(h, cap), o, c)
            base = floor * (1 - hair * float(rng.random()))
            lo = min(max(lo, base), o, c)
        rows.append((o, h, lo, c, volume))
        prev_close = c
    return Candleset.from_bars(rows, timeframe_seconds)


PARAMS = st.fixed_dictionaries(
    {
        "key_level_lookback": st.integers(1, 40),
        "min_level_touches": st.integers(1, 5),
        "pierce_depth": st.floats(0.0, 0.006, allow_subnormal=False),
        "volume_spike_threshold": st.floats(0.0, 3.0, allow_subnormal=False),
        "reversal_candles": st.integers(1, 6),
        "min_distance_from_level": st.floats(0.0, 0.004, allow_subnormal=False),
        # > 0: a zero stop distance is a reading of its own (see the reference).
        "atr_multiplier_sl": st.floats(0.05, 3.0),
        "risk_reward_ratio": st.floats(0.0, 4.0, allow_subnormal=False),
        "max_holding_periods": st.integers(1, 80),
    }
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Candleset, dict[str, float | int], RunSettings]:
    n = draw(st.integers(80, 300))
    timeframe = draw(st.sampled_from([60, 300, 900, 3600, 14400, 86400]))
    candles = make_candles(draw(st.integers(0, 2**32 - 1)), n, timeframe)
    trade_from = draw(st.one_of(st.just(0), st.integers(0, n - 1)))
    run = RunSettings(
        timeframe_seconds=timeframe,
        regime=draw(st.sampled_from(["any", "any", "any", "bull", "bear", "sideways"])),
        trade_from=trade_from,
        atr_period=draw(st.integers(1, 20)),
        volume_window=draw(st.integers(1, 25)),
        touch_tolerance=draw(
            st.integers(0, 9).flatmap(lambda i: st.just(0.0) if i == 0 else st.floats(5e-4, 0.01))
        ),
        # (k + 0.5) bars in days: floor(days*86400/tf) is k, far from a rounding edge.
        regime_lookback_days=(draw(st.integers(0, 80)) + 0.5) * timeframe / 86400,
        regime_threshold=draw(st.floats(0.0, 0.02, allow_subnormal=False)),
        initial_capital=draw(st.floats(100.0, 1e6)),
        fee_rate=draw(st.floats(0.0, 0.002, allow_subnormal=False)),
        slippage=draw(st.floats(0.0, 0.002, allow_subnormal=False)),
        risk_per_trade=draw(st.floats(0.001, 0.05)),
        max_leverage=draw(st.floats(0.5, 5.0)),
    )
    return candles, draw(PARAMS), run


def _close(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, str):
        return bool(got == want)
    if isinstance(want, int) and not isinstance(want, bool):
        return bool(got == want) and not isinstance(got, float)
    return bool(got == pytest.approx(want, rel=REL, abs=ABS))


def assert_same(engine: Outcome, reference: Outcome) -> None:
    assert len(engine.trades) == len(reference.trades), (
        f"{len(engine.trades)} engine trades vs {len(reference.trades)} reference trades:\n"
        f"engine {engine.trades}\nreference {reference.trades}"
    )
    for i, (got, want) in enumerate(zip(engine.trades, reference.trades, strict=True)):
        for name in TRADE_FIELDS:
            assert _close(got[name], want[name]), (
                f"trade {i} {name}: engine {got[name]!r}, reference {want[name]!r}\n"
                f"engine {got}\nreference {want}"
            )
    assert engine.ambiguous_exits == reference.ambiguous_exits
    assert len(engine.equity) == len(reference.equity)
    for k, (got_e, want_e) in enumerate(zip(engine.equity, reference.equity, strict=True)):
        assert _close(got_e, want_e), f"equity[{k}]: engine {got_e!r}, reference {want_e!r}"
    assert set(engine.metrics) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        got_m, want_m = engine.metrics[name], reference.metrics[name]
        assert _close(got_m, want_m), f"metric {name}: engine {got_m!r}, reference {want_m!r}"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_engine_matches_reference(
    scenario: tuple[Candleset, dict[str, float | int], RunSettings],
) -> None:
    candles, params, run = scenario
    reference = run_reference(candles, params, run)
    trades = len(reference.trades)
    event(f"reference trades: {'0' if trades == 0 else '1-2' if trades <= 2 else '3+'}")
    target(float(min(trades, 10)), label="reference trades (capped at 10)")
    assert_same(run_engine(candles, params, run), reference)
