"""Spec section 6: performance metrics of an equity curve and its trades.

Sums and means run in bar (or trade) order in one compiled pass; a metric the spec calls null
is NaN inside the kernel and None outside it.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
from numba import njit

from tradepulse.quant.candles import FloatArray

METRIC_NAMES = (
    "net_profit",
    "net_profit_pct",
    "total_trades",
    "long_trades",
    "short_trades",
    "win_rate",
    "gross_win_rate",
    "gross_profit",
    "gross_loss",
    "profit_factor",
    "avg_win",
    "avg_loss",
    "expectancy",
    "largest_win",
    "largest_loss",
    "max_consecutive_losses",
    "max_drawdown_pct",
    "sharpe_ratio",
    "sortino_ratio",
    "cagr_pct",
    "calmar_ratio",
    "exposure_pct",
    "avg_holding_bars",
)
N_METRICS = len(METRIC_NAMES)
INT_METRICS = frozenset({"total_trades", "long_trades", "short_trades", "max_consecutive_losses"})
# The metrics an optimization may maximise; every other layer (contracts, API) takes them from here.
Objective = Literal["sharpe_ratio", "net_profit", "sortino_ratio", "calmar_ratio", "profit_factor"]
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)

Metrics = dict[str, float | int | None]


def periods_per_year(timeframe_seconds: int) -> float:
    """365*86400/timeframe: crypto trades all year (105120 for 5m)."""
    return 365 * 86400 / timeframe_seconds


@njit(cache=True)
def metrics_nb(
    equity: FloatArray,
    side: np.ndarray,
    entry_bar: np.ndarray,
    exit_bar: np.ndarray,
    gross: FloatArray,
    net: FloatArray,
    exposed_bars: int,
    initial_capital: float,
    ppy: float,
) -> FloatArray:
    """All metrics in METRIC_NAMES order; NaN where the spec says null."""
    out = np.zeros(N_METRICS)
    n = len(equity)
    final = equity[n - 1]
    out[0] = final - initial_capital
    out[1] = out[0] / initial_capital * 100.0

    t = len(net)
    longs = 0
    wins = 0
    losses = 0
    gross_wins = 0
    win_sum = 0.0
    loss_sum = 0.0
    net_sum = 0.0
    largest_win = 0.0
    largest_loss = 0.0
    run = 0
    max_run = 0
    hold = 0
    for i in range(t):
        if side[i] == 1:
            longs += 1
        p = net[i]
        net_sum += p
        if p > 0.0:
            wins += 1
            win_sum += p
            if p > largest_win:
                largest_win = p
            run = 0
        elif p < 0.0:
            losses += 1
            loss_sum += p
            if p < largest_loss:
                largest_loss = p
            run += 1
            if run > max_run:
                max_run = run
        else:
            run = 0
        if gross[i] > 0.0:
            gross_wins += 1
        hold += exit_bar[i] - entry_bar[i] + 1
    out[2] = t
    out[3] = longs
    out[4] = t - longs
    gross_loss = -loss_sum if losses > 0 else 0.0
    if t > 0:
        out[5] = wins / t * 100.0
        out[6] = gross_wins / t * 100.0
        out[12] = net_sum / t
        out[22] = hold / t
    out[7] = win_sum
    out[8] = gross_loss
    out[9] = win_sum / gross_loss if gross_loss != 0.0 else np.nan
    out[10] = win_sum / wins if wins > 0 else 0.0
    out[11] = loss_sum / losses if losses > 0 else 0.0
    out[13] = largest_win
    out[14] = largest_loss
    out[15] = max_run

    # One pass over the bars. Flat equity (no open trade: most bars) gives a return of exactly
    # 0 and leaves peak and drawdown unchanged, so only bars where equity moved do work.
    peak = equity[0]
    max_dd = 0.0
    ret_count = n - 1
    moved = np.empty(max(ret_count, 0))
    n_moved = 0
    total = 0.0
    # Equity that reached exactly 0 makes the next return e/0 - 1: +-inf, or NaN while it
    # stays 0. Every formula over the returns is then not finite: Sharpe and Sortino are null.
    undefined = False
    for k in range(1, n):
        e = equity[k]
        prev = equity[k - 1]
        if prev == 0.0:
            undefined = True
        elif e == prev:
            continue
        else:
            r = e / prev - 1.0
            moved[n_moved] = r
            n_moved += 1
            total += r
        if e > peak:
            peak = e
        else:
            dd = (peak - e) / peak * 100.0
            if dd > max_dd:
                max_dd = dd
    out[16] = max_dd

    if ret_count >= 1:
        mean = total / ret_count
        # Unmoved bars each add (0 - mean)^2 to the squared deviations.
        sq = (ret_count - n_moved) * (mean * mean)
        down = 0.0
        negatives = 0
        lowest = np.inf
        highest = -np.inf
        for t in range(n_moved):
            r = moved[t]
            d = r - mean
            sq += d * d
            if r < 0.0:
                down += r * r
                negatives += 1
            lowest = min(lowest, r)
            highest = max(highest, r)
        # Identical returns have a std of exactly 0; the rounded mean would leave ~1e-17.
        identical = n_moved == 0 or (n_moved == ret_count and lowest == highest)
        root_ppy = math.sqrt(ppy)
        if ret_count >= 2:
            std = math.sqrt(sq / (ret_count - 1))
            out[17] = mean / std * root_ppy if std > 0.0 and not identical else 0.0
        out[18] = mean / math.sqrt(down / ret_count) * root_ppy if negatives > 0 else np.nan
        if final > 0.0:
            cagr = ((final / initial_capital) ** (ppy / ret_count) - 1.0) * 100.0
            out[19] = cagr if math.isfinite(cagr) else np.nan
        else:
            out[19] = np.nan
    else:
        out[18] = np.nan
        out[19] = np.nan
    if undefined:
        out[17] = np.nan
        out[18] = np.nan
    out[20] = out[19] / max_dd if (not math.isnan(out[19])) and max_dd != 0.0 else np.nan
    out[21] = exposed_bars / n * 100.0
    return out


def metrics_to_dict(values: FloatArray) -> Metrics:
    result: Metrics = {}
    for name, value in zip(METRIC_NAMES, values.tolist(), strict=True):
        if name in INT_METRICS:
            result[name] = int(value)
        elif not math.isfinite(value):
            # The spec's nulls; any other non-finite figure (equity through zero) is null too.
            result[name] = None
        else:
            result[name] = value
    return result
