"""Downsampling a long series for a chart without losing its peaks and troughs.

Min/max per bucket (not LTTB): LTTB picks the point of largest triangle area, which can skip a
series' deepest trough; a chart of equity is read for exactly those (the maximum drawdown), so
every bucket keeps its highest and lowest point outright.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _first_index_of(values: FloatArray, starts: IntArray, targets: FloatArray) -> IntArray:
    """Per bucket (starting at `starts`), the first index whose value equals its target."""
    bucket = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(values))))
    hits = np.flatnonzero(values == targets[bucket])
    _, first = np.unique(bucket[hits], return_index=True)
    return hits[first].astype(np.int64)


def extrema_indices(
    values: FloatArray, points: int, troughs: tuple[FloatArray, ...] = ()
) -> IntArray:
    """Indices into `values` (ascending, at most `points`) that keep its shape on a chart.

    Always the first and last index; then the series is cut into equal buckets of consecutive
    indices and each bucket keeps the index of its maximum and of its minimum (the first one on
    ties), and of the minimum of each series in `troughs` (same length as `values`, e.g. the
    drawdown, whose deepest point need not be equity's lowest point in a bucket). So the global
    maximum and minimum of `values`, and of each trough series, are always kept. A series of at
    most `points` values is returned whole. NaN values are not supported (equity has none).

    Raises ValueError for trough series of another length, or `points` below 4 plus one per
    trough series (the two ends and one bucket's extremes).
    """
    n = len(values)
    for series in troughs:
        if len(series) != n:
            raise ValueError(f"a trough series has {len(series)} values, the series {n}")
    per_bucket = 2 + len(troughs)
    if points < 2 + per_bucket:
        raise ValueError(
            f"points must be at least {2 + per_bucket} with {len(troughs)} trough series, "
            f"got {points}"
        )
    if n <= points:
        return np.arange(n, dtype=np.int64)
    buckets = (points - 2) // per_bucket
    starts = np.linspace(0, n, buckets + 1).astype(np.int64)[:-1]
    keep = [
        np.array([0, n - 1], dtype=np.int64),
        _first_index_of(values, starts, np.maximum.reduceat(values, starts)),
        _first_index_of(values, starts, np.minimum.reduceat(values, starts)),
    ]
    for series in troughs:
        keep.append(_first_index_of(series, starts, np.minimum.reduceat(series, starts)))
    return np.unique(np.concatenate(keep))


def drawdown(equity: FloatArray) -> FloatArray:
    """Fraction below the running peak at each point (0 at a new high, -0.25 at 25 % under)."""
    peak = np.maximum.accumulate(equity)
    with np.errstate(all="ignore"):
        out = np.where(peak > 0, equity / peak - 1.0, 0.0)
    return out.astype(np.float64)
