"""Block sums of a backtest (spec validation.md section 2) from its trades only, against the
plain sums over every return, and the returns themselves (LS section 6)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_properties import SMALL, params_strategy, random_candles
from tradepulse.quant import BacktestResult, LiquiditySweep, LiquiditySweepParams, run_backtest
from tradepulse.quant.backtest.kernel import T_ENTRY_BAR, T_EXIT_BAR
from tradepulse.quant.validation import block_sums, result_block_sums, result_returns

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hand_result(
    equity: list[float], trades: list[tuple[int, int]], trade_from: int
) -> BacktestResult:
    """A result with only what the block sums read: equity, entry/exit bars and open times."""
    ints = np.zeros((len(trades), 5), dtype=np.int64)
    for i, (entry, exit_) in enumerate(trades):
        ints[i, T_ENTRY_BAR] = entry
        ints[i, T_EXIT_BAR] = exit_
    n = trade_from + len(equity)
    return BacktestResult(
        trade_ints=ints,
        trade_floats=np.zeros((len(trades), 9)),
        open_time=np.arange(n, dtype=np.int64),
        first_row=0,
        equity=np.array(equity),
        metrics={},
        ambiguous_exits=0,
    )


def test_trade_bars_only_by_hand() -> None:
    # Bars 5..13 traded (trade_from 5); trades on bars 7..8 and 11..11.
    equity = [10.0, 10.0, 11.0, 12.0, 12.0, 12.0, 9.0, 9.0, 9.0]
    result = hand_result(equity, [(7, 8), (11, 11)], trade_from=5)
    r = result_returns(result)
    a, b = 11 / 10 - 1, 12 / 11 - 1
    assert r.tolist() == [0.0, a, b, 0.0, 0.0, -0.25, 0.0, 0.0]
    s1, s2 = result_block_sums(result, 2)  # T = 8: no drop, B = 4
    assert s1.tolist() == [a + b, -0.25]
    assert s2.tolist() == [a * a + b * b, 0.0625]
    s1, s2 = result_block_sums(result, 6)  # T mod 6 = 2 dropped (r1, r2), B = 1
    assert s1.tolist() == [b, 0.0, 0.0, -0.25, 0.0, 0.0]


def test_a_backtest_without_trades_has_zero_sums() -> None:
    result = hand_result([10.0] * 50, [], trade_from=3)
    s1, s2 = result_block_sums(result, 16)
    assert s1.tolist() == [0.0] * 16
    assert s2.tolist() == [0.0] * 16


def test_a_trade_inside_the_dropped_returns_counts_only_after_them() -> None:
    equity = [10.0, 11.0, 12.0, 13.0, 13.0]  # T = 4; S = 2: no drop. S = 4: B = 1.
    result = hand_result(equity, [(1, 3)], trade_from=0)
    assert np.array_equal(result_block_sums(result, 2)[0], block_sums(result_returns(result), 2)[0])
    equity = [10.0, 11.0, 12.0, 13.0, 13.0, 13.0, 13.0]  # T = 6, S = 4: r1, r2 dropped
    result = hand_result(equity, [(1, 3)], trade_from=0)
    s1, _ = result_block_sums(result, 4)
    assert s1.tolist() == [13 / 12 - 1, 0.0, 0.0, 0.0]


def test_an_equity_left_at_zero_gives_the_plain_non_finite_sums() -> None:
    # The trade leaves at bar 5 with nothing; bars 6..8 return 0/0 - 1. Block 1 holds r5..r8.
    equity = [10.0, 10.0, 10.0, 10.0, 5.0, 0.0, 0.0, 0.0, 0.0]
    result = hand_result(equity, [(4, 5)], trade_from=0)
    s1, s2 = result_block_sums(result, 2)
    assert s1[0] == -0.5
    assert s2[0] == 0.25
    assert np.isnan(s1[1])  # the trades alone would have given -1
    assert np.isnan(s2[1])


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    params=params_strategy,
    blocks=st.sampled_from([2, 4, 8, 10, 16]),
    data=st.data(),
)
def test_trades_only_sums_equal_the_plain_sums_to_the_bit(
    seed: int, params: LiquiditySweepParams, blocks: int, data: st.DataObject
) -> None:
    candles = random_candles(seed, 400)
    trade_from = data.draw(st.integers(0, 380), label="trade_from")
    result = run_backtest(candles, LiquiditySweep(SMALL), params, trade_from=trade_from)
    r = result_returns(result)
    assert len(r) == 400 - trade_from - 1
    assert np.array_equal(r, result.equity[1:] / result.equity[:-1] - 1.0)
    fast = result_block_sums(result, blocks)
    plain = block_sums(r, blocks)
    # Skipping exact zeros leaves a left-to-right sum unchanged: equal to the bit.
    assert np.array_equal(fast[0], plain[0])
    assert np.array_equal(fast[1], plain[1])
    # And equal to an independent summation to ~1e-12 of the block's scale.
    dropped, b = len(r) % blocks, len(r) // blocks
    kept = r[dropped:].reshape(blocks, b)
    scale = np.abs(kept).sum(axis=1) + 1e-300
    assert np.all(np.abs(fast[0] - kept.sum(axis=1)) <= 1e-12 * scale)
