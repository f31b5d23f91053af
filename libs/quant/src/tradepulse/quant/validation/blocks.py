"""Spec validation.md section 2's per-block sums, the few floats a trial carries for PBO.

A trial's T returns lose their first `T mod S`; the rest are cut, in order, into S blocks of
`B = T div S`. Block b's sums are `s1[b] = sum(r)` and `s2[b] = sum(r^2)` over its returns.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from tradepulse.quant.backtest.kernel import T_ENTRY_BAR, T_EXIT_BAR
from tradepulse.quant.backtest.types import BacktestResult
from tradepulse.quant.candles import FloatArray, IntArray
from tradepulse.quant.errors import ParameterError
from tradepulse.quant.validation.sharpe import as_returns

MIN_BLOCKS = 2
MAX_BLOCKS = 16


def check_blocks(blocks: int) -> int:
    """S must be an even integer in 2..16 (spec section 2)."""
    if (
        isinstance(blocks, bool)
        or not isinstance(blocks, int | np.integer)
        or not MIN_BLOCKS <= blocks <= MAX_BLOCKS
        or blocks % 2
    ):
        raise ParameterError("blocks", f"must be an even integer in 2..16, got {blocks!r}")
    return int(blocks)


def block_layout(t: int, blocks: int) -> tuple[int, int]:
    """(dropped, B) for T returns in S blocks: the first `T mod S` go, blocks hold `T div S`."""
    blocks = check_blocks(blocks)
    return t % blocks, t // blocks


def block_sums(returns: npt.ArrayLike, blocks: int = 16) -> tuple[FloatArray, FloatArray]:
    """(s1, s2), each of length S, for one trial's returns (the plain, reference version)."""
    return _plain_block_sums(as_returns(returns), blocks)


def _plain_block_sums(r: FloatArray, blocks: int) -> tuple[FloatArray, FloatArray]:
    dropped, b = block_layout(len(r), blocks)
    s1, s2 = matrix_block_sums_nb(r.reshape(-1, 1), dropped, b, blocks)
    return s1[:, 0], s2[:, 0]


@njit(cache=True)
def matrix_block_sums_nb(
    m: FloatArray, dropped: int, block_len: int, blocks: int
) -> tuple[FloatArray, FloatArray]:
    """S x N block sums of a T x N matrix, each a plain left-to-right sum in time order.

    One summation order for every path (a column alone, a matrix, the trades-only kernel,
    which skips exact zeros that would not change these sums), so they agree to the bit.
    """
    n = m.shape[1]
    s1 = np.zeros((blocks, n))
    s2 = np.zeros((blocks, n))
    for blk in range(blocks):
        start = dropped + blk * block_len
        for k in range(start, start + block_len):
            for j in range(n):
                r = m[k, j]
                s1[blk, j] += r
                s2[blk, j] += r * r
    return s1, s2


def result_returns(result: BacktestResult) -> FloatArray:
    """LS section 6's returns `E[k]/E[k-1] - 1` over bars trade_from+1..n-1 of a backtest.

    An equity that reached exactly 0 gives non-finite returns, as LS section 6 says.
    """
    e = result.equity
    with np.errstate(divide="ignore", invalid="ignore"):
        return e[1:] / e[:-1] - 1.0


def result_block_sums(result: BacktestResult, blocks: int = 16) -> tuple[FloatArray, FloatArray]:
    """`block_sums(result_returns(result), blocks)` in time proportional to the bars in trades.

    The equity only moves on bars where a trade is open or exits (LS sections 5 and 6), so
    every other return is exactly 0 and adds nothing: the kernel visits bars `entry..exit` of
    each trade. The one exception is an equity left at exactly 0 after the last exit, whose
    flat bars return 0/0 - 1 (NaN); that backtest takes the plain path. A backtest whose
    equity went through 0 (its `sharpe_ratio` is null: not an evaluated trial, spec section 0)
    gets non-finite sums, as its returns are. Sums run in bar order, as in `block_sums`, and
    skip only exact zeros, so the two agree to the bit.
    """
    e = result.equity
    trade_from = len(result.open_time) - len(e)
    dropped, b = block_layout(len(e) - 1, blocks)
    if len(e) and e[-1] == 0.0:
        return _plain_block_sums(result_returns(result), blocks)
    return _trade_block_sums_nb(e, result.trade_ints, trade_from, dropped, b, blocks)


# error_model="numpy": no zero-division checks in the per-bar loop (block_len > 0 there; an
# equity of 0 divides as LS section 6 says, to inf or NaN).
@njit(cache=True, error_model="numpy")
def _trade_block_sums_nb(
    equity: FloatArray,
    trade_ints: IntArray,
    trade_from: int,
    dropped: int,
    block_len: int,
    blocks: int,
) -> tuple[FloatArray, FloatArray]:
    s1 = np.zeros(blocks)
    s2 = np.zeros(blocks)
    if block_len == 0:
        return s1, s2
    # Return position p (0-based over T) is equity index p + 1; block b holds equity
    # indices first + b*B .. first + (b+1)*B - 1.
    first = dropped + 1
    for t in range(trade_ints.shape[0]):
        k = max(trade_ints[t, T_ENTRY_BAR] - trade_from, first)
        hi = trade_ints[t, T_EXIT_BAR] - trade_from
        while k <= hi:
            blk = (k - first) // block_len
            end = min(hi, first + (blk + 1) * block_len - 1)
            a1 = s1[blk]
            a2 = s2[blk]
            prev = equity[k - 1]
            while k <= end:
                e = equity[k]
                r = e / prev - 1.0
                a1 += r
                a2 += r * r
                prev = e
                k += 1
            s1[blk] = a1
            s2[blk] = a2
    return s1, s2
