"""Spec validation.md section 2: the probability of backtest overfitting by combinatorially
symmetric cross-validation (Bailey, Borwein, López de Prado & Zhu, "The Probability of
Backtest Overfitting", 2017).

Orientation as in the paper and pypbo: a returns matrix is T x N, rows are bars, columns
trials; trial n is column n (its "trial number" for ties). Each set J of S/2 blocks and its
complement J' hold `c = B S/2` returns; a trial's performance there is the pooled Sharpe
`mu / sqrt(var)` from the sums (`var = (s2 - c mu^2) / (c - 1)`, 0 when `var <= 0`). pypbo
ranks with `scipy.stats.rankdata` (average ranks) and picks the IS winner by `argmax` of
the IS ranks, which is the spec's rule (ties to the lowest trial, average OOS rank); its
metric is a Sharpe of the concatenated returns, NaN rather than 0 at zero variance.

The OOS rank of the IS winner is in [1, N], so `w` is in [1/(N+1), N/(N+1)]: every logit is
finite, at most ln(N) in size (beyond the histogram's [-6, 6] from N = 404 on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from tradepulse.quant.candles import FloatArray
from tradepulse.quant.errors import ParameterError
from tradepulse.quant.validation.blocks import block_layout, check_blocks, matrix_block_sums_nb

QUANTILES = (5, 25, 50, 75, 95)
HISTOGRAM_BINS = 24  # [-6 + 0.5j, -5.5 + 0.5j), j = 0..23
# The degradation's points a report keeps for a scatter: every set up to S = 10 (252 sets),
# a sample of the 924..12,870 sets beyond, so a stored report stays about 11 KB of JSON.
MAX_DEGRADATION_POINTS = 256


@dataclass(frozen=True)
class Degradation:
    """Least squares `P'_n* = intercept + slope * P_n*` over the sets, with its r2, and the
    points `(P_n*, P'_n*)` of the sets `sample_sets(sets)` in that order (`is_performance`,
    `oos_performance`), for a scatter.

    The line's three figures are None when every IS performance is equal; r2 is None when
    every OOS one is. The line is fitted over every set, not only the sampled ones.
    """

    slope: float | None
    intercept: float | None
    r2: float | None
    is_performance: tuple[float, ...] = ()
    oos_performance: tuple[float, ...] = ()


def sample_sets(sets: int, limit: int = MAX_DEGRADATION_POINTS) -> npt.NDArray[np.int64]:
    """Which of `sets` sets (lexicographic order, 0-based) a report's degradation points are:
    all of them when there are at most `limit`, else `floor(j * sets / limit)` for
    j = 0..limit-1, evenly spaced from the first set on (deterministic, so the same trials
    always give the same points)."""
    if sets <= limit:
        return np.arange(sets, dtype=np.int64)
    return (np.arange(limit, dtype=np.int64) * sets) // limit


@dataclass(frozen=True)
class PboReport:
    """Section 2's report. `logit_histogram[j]` counts logits in `[-6 + j/2, -5.5 + j/2)`,
    the last bin closed, values outside [-6, 6] in the end bins."""

    blocks: int
    sets: int
    pbo: float
    prob_oos_loss: float
    degradation: Degradation
    logit_quantiles: dict[str, float]
    logit_histogram: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats and ints, None for the spec's nulls."""
        d = self.degradation
        return {
            "blocks": self.blocks,
            "sets": self.sets,
            "pbo": self.pbo,
            "prob_oos_loss": self.prob_oos_loss,
            "degradation": {
                "slope": d.slope,
                "intercept": d.intercept,
                "r2": d.r2,
                "points": {
                    "is_performance": list(d.is_performance),
                    "oos_performance": list(d.oos_performance),
                },
            },
            "logit_quantiles": dict(self.logit_quantiles),
            "logit_histogram": list(self.logit_histogram),
        }


def pbo(returns: npt.ArrayLike, blocks: int = 16) -> PboReport | None:
    """PBO of a T x N returns matrix (rows bars, columns trials); None when N < 2 or B < 2."""
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2:
        raise ParameterError("returns", f"must be a T x N matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ParameterError("returns", "must be finite")
    t, n = m.shape
    dropped, b = block_layout(t, blocks)
    if n < 2 or b < 2:
        return None
    s1, s2 = matrix_block_sums_nb(np.ascontiguousarray(m), dropped, b, blocks)
    return pbo_from_block_sums(s1.T, s2.T, b)


def pbo_from_block_sums(s1: npt.ArrayLike, s2: npt.ArrayLike, block_len: int) -> PboReport | None:
    """PBO from per-block sums: `s1[n, b]`, `s2[n, b]` of trial n (row) in block b (column).

    `block_len` is B, the returns in each block. None when N < 2 or B < 2.
    """
    a1 = np.asarray(s1, dtype=np.float64)
    a2 = np.asarray(s2, dtype=np.float64)
    if a1.ndim != 2 or a1.shape != a2.shape:
        raise ParameterError(
            "block_sums", f"s1 and s2 must be N x S alike, got {a1.shape} and {a2.shape}"
        )
    if not (np.isfinite(a1).all() and np.isfinite(a2).all()):
        raise ParameterError("block_sums", "must be finite")
    n, blocks = a1.shape
    check_blocks(blocks)
    if n < 2 or block_len < 2:
        return None
    is_perf, oos_perf, logits = _cscv_nb(
        np.ascontiguousarray(a1.T),
        np.ascontiguousarray(a2.T),
        blocks // 2,
        float(block_len * (blocks // 2)),
    )
    sets = len(logits)
    q = np.quantile(logits, [p / 100 for p in QUANTILES])
    return PboReport(
        blocks=blocks,
        sets=sets,
        pbo=int(np.count_nonzero(logits <= 0.0)) / sets,
        prob_oos_loss=int(np.count_nonzero(oos_perf < 0.0)) / sets,
        degradation=_degradation(is_perf, oos_perf),
        logit_quantiles={str(p): float(v) for p, v in zip(QUANTILES, q, strict=True)},
        logit_histogram=logit_histogram(logits),
    )


def logit_histogram(logits: FloatArray) -> tuple[int, ...]:
    """Counts in the 24 half-unit bins of [-6, 6]; doubling a float is exact, so an edge
    value always lands in the bin it opens."""
    j = np.clip(np.floor(2.0 * logits) + 12, 0, HISTOGRAM_BINS - 1).astype(np.int64)
    return tuple(int(c) for c in np.bincount(j, minlength=HISTOGRAM_BINS))


def _degradation(x: FloatArray, y: FloatArray) -> Degradation:
    keep = sample_sets(len(x))
    points = {
        "is_performance": tuple(float(v) for v in x[keep]),
        "oos_performance": tuple(float(v) for v in y[keep]),
    }
    if x.min() == x.max():
        return Degradation(slope=None, intercept=None, r2=None, **points)
    dx = x - x.mean()
    dy = y - y.mean()
    sxx = float(dx @ dx)
    sxy = float(dx @ dy)
    syy = float(dy @ dy)
    slope = sxy / sxx
    intercept = float(y.mean()) - slope * float(x.mean())
    r2 = None if y.min() == y.max() else sxy * sxy / (sxx * syy)
    return Degradation(slope=slope, intercept=intercept, r2=r2, **points)


# error_model="numpy": no division-by-zero checks (none can occur: c >= 4), which lets LLVM
# vectorise the loops over trials.
@njit(cache=True, error_model="numpy")
def _performance_nb(s1: float, s2: float, c: float) -> float:
    mu = s1 / c
    var = (s2 - c * mu * mu) / (c - 1.0)
    return mu / math.sqrt(var) if var > 0.0 else 0.0


@njit(cache=True, error_model="numpy")
def _cscv_nb(
    s1: FloatArray,
    s2: FloatArray,
    half: int,
    c: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per set: the IS winner's IS and OOS performance and its logit. `s1`, `s2` are S x N.

    Sets run in lexicographic order of their blocks. Row d of `prefix1`/`prefix2` holds the
    sums over the set's first d + 1 blocks, so the next set only redoes the rows after the
    block that changed (about two of the S/2 rows per set). Memory stays O(S N) whatever the
    number of sets; the OOS sums are the totals minus the IS ones.
    """
    blocks, n = s1.shape
    n_sets = 1
    for i in range(half):
        n_sets = n_sets * (blocks - i) // (i + 1)
    is_best = np.empty(n_sets)
    oos_best = np.empty(n_sets)
    logits = np.empty(n_sets)
    prefix1 = np.empty((half, n))
    prefix2 = np.empty((half, n))
    p_is = np.empty(n)
    p_oos = np.empty(n)
    # Totals in block order, whatever layout the caller's array had.
    total1 = np.zeros(n)
    total2 = np.zeros(n)
    for blk in range(blocks):
        for m in range(n):
            total1[m] += s1[blk, m]
            total2[m] += s2[blk, m]
    idx = np.arange(half)
    changed = 0  # the first position of idx whose prefix rows are stale
    for j in range(n_sets):
        for d in range(changed, half):
            blk = idx[d]
            if d == 0:
                prefix1[0, :] = s1[blk, :]
                prefix2[0, :] = s2[blk, :]
            else:
                for m in range(n):
                    prefix1[d, m] = prefix1[d - 1, m] + s1[blk, m]
                    prefix2[d, m] = prefix2[d - 1, m] + s2[blk, m]
        a1 = prefix1[half - 1]
        a2 = prefix2[half - 1]
        for m in range(n):
            p_is[m] = _performance_nb(a1[m], a2[m], c)
            p_oos[m] = _performance_nb(total1[m] - a1[m], total2[m] - a2[m], c)
        best = 0
        for m in range(1, n):
            if p_is[m] > p_is[best]:
                best = m
        x = p_oos[best]
        below = 0
        equal = 0
        for m in range(n):
            below += p_oos[m] < x
            equal += p_oos[m] == x
        # `equal` counts n* itself; ties share the average of their ranks.
        w = (1.0 + below + 0.5 * (equal - 1)) / (n + 1.0)
        is_best[j] = p_is[best]
        oos_best[j] = x
        logits[j] = math.log(w / (1.0 - w))
        # The next combination in lexicographic order.
        i = half - 1
        while i >= 0 and idx[i] == blocks - half + i:
            i -= 1
        if i < 0:
            break
        idx[i] += 1
        for d in range(i + 1, half):
            idx[d] = idx[d - 1] + 1
        changed = i
    return is_best, oos_best, logits
