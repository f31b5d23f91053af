"""Indicators of spec section 1 and the rolling extremes of section 3, as numba kernels.

Every array has one value per bar; NaN marks "undefined" (before the warm-up is complete).
A value at bar i uses bars 0..i only (the volume average and levels use bars before i only).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tradepulse.quant.candles import FloatArray

REGIME_UNDEFINED = -1
REGIME_SIDEWAYS = 0
REGIME_BULL = 1
REGIME_BEAR = 2
REGIME_CODES = {"sideways": REGIME_SIDEWAYS, "bull": REGIME_BULL, "bear": REGIME_BEAR}


@njit(cache=True)
def true_range_nb(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    n = len(high)
    tr = np.empty(n)
    if n == 0:
        return tr
    tr[0] = high[0] - low[0]
    for i in range(1, n):
        prev = close[i - 1]
        tr[i] = max(high[i] - low[i], abs(high[i] - prev), abs(low[i] - prev))
    return tr


@njit(cache=True)
def wilder_atr_nb(high: FloatArray, low: FloatArray, close: FloatArray, period: int) -> FloatArray:
    """ATR[n-1] = mean(TR[0..n-1]); ATR[i] = (ATR[i-1]*(n-1) + TR[i]) / n; NaN before n-1."""
    tr = true_range_nb(high, low, close)
    n = len(tr)
    atr = np.full(n, np.nan)
    if period < 1 or n < period:
        return atr
    s = 0.0
    for i in range(period):
        s += tr[i]
    atr[period - 1] = s / period
    for i in range(period, n):
        atr[i] = (atr[i - 1] * (period - 1) + tr[i]) / period
    return atr


@njit(cache=True)
def volume_average_nb(volume: FloatArray, window: int) -> FloatArray:
    """VA[i] = mean(V[i-w..i-1]), the w bars before i; NaN for i < w.

    Each window is summed afresh in bar order, so the value never depends on a running sum's
    history (a rolling sum would drift by a few ulps over 300,000 bars).
    """
    n = len(volume)
    va = np.full(n, np.nan)
    if window < 1:
        return va
    for i in range(window, n):
        s = 0.0
        for k in range(i - window, i):
            s += volume[k]
        va[i] = s / window
    return va


@njit(cache=True)
def rolling_max_before_nb(values: FloatArray, window: int) -> FloatArray:
    """out[i] = max(values[i-window..i-1]) for i >= window, NaN before (monotonic deque, O(n))."""
    n = len(values)
    out = np.full(n, np.nan)
    dq = np.empty(n, dtype=np.int64)
    head = 0
    tail = 0
    for i in range(n):
        if i >= window:
            while dq[head] < i - window:
                head += 1
            out[i] = values[dq[head]]
        while tail > head and values[dq[tail - 1]] <= values[i]:
            tail -= 1
        dq[tail] = i
        tail += 1
    return out


@njit(cache=True)
def rolling_min_before_nb(values: FloatArray, window: int) -> FloatArray:
    """out[i] = min(values[i-window..i-1]) for i >= window, NaN before."""
    n = len(values)
    out = np.full(n, np.nan)
    dq = np.empty(n, dtype=np.int64)
    head = 0
    tail = 0
    for i in range(n):
        if i >= window:
            while dq[head] < i - window:
                head += 1
            out[i] = values[dq[head]]
        while tail > head and values[dq[tail - 1]] >= values[i]:
            tail -= 1
        dq[tail] = i
        tail += 1
    return out


@njit(cache=True)
def regime_codes_nb(close: FloatArray, lookback: int, threshold: float) -> np.ndarray:
    """r[i] = C[i]/C[i-k] - 1: bull if r >= +threshold, bear if r <= -threshold, else sideways."""
    n = len(close)
    out = np.full(n, REGIME_UNDEFINED, dtype=np.int8)
    for i in range(lookback, n):
        r = close[i] / close[i - lookback] - 1.0
        if r >= threshold:
            out[i] = REGIME_BULL
        elif r <= -threshold:
            out[i] = REGIME_BEAR
        else:
            out[i] = REGIME_SIDEWAYS
    return out


def regime_lookback_bars(days: float, timeframe_seconds: int) -> int:
    """k = floor(days*86400/timeframe_seconds): 2016 bars of 5m for 7 days."""
    return math.floor(days * 86400 / timeframe_seconds)
