"""Spec section 8: cut a trading window out of a longer history, with warm-up bars before it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradepulse.quant.candles import Candles
from tradepulse.quant.errors import WindowError


@dataclass(frozen=True)
class Window:
    """`candles` holds the warm-up bars then the traded bars; trading starts at `trade_from`."""

    candles: Candles
    trade_from: int

    @property
    def traded_bars(self) -> int:
        return len(self.candles) - self.trade_from


def last_window(history: Candles, last: int, warmup: int) -> Window:
    """The last `last` candles, preceded by up to `warmup` bars (fewer where history starts)."""
    if last < 1:
        raise WindowError(f"the window needs at least 1 candle, got {last}")
    if warmup < 0:
        raise WindowError(f"warm-up must be >= 0 bars, got {warmup}")
    n = len(history)
    if last > n:
        raise WindowError(f"asked for the last {last} candles but the history has only {n}")
    return _cut(history, n - last, n, warmup)


def range_window(history: Candles, start_ms: int, end_ms: int | None, warmup: int) -> Window:
    """Candles whose open time is in [start_ms, end_ms), preceded by up to `warmup` bars."""
    lo = int(np.searchsorted(history.open_time, start_ms, side="left"))
    hi = (
        len(history)
        if end_ms is None
        else int(np.searchsorted(history.open_time, end_ms, side="left"))
    )
    if hi <= lo:
        raise WindowError("no candles in the requested time range")
    return _cut(history, lo, hi, warmup)


def _cut(history: Candles, start: int, stop: int, warmup: int) -> Window:
    begin = max(0, start - warmup)
    return Window(history.slice(begin, stop), start - begin)
