"""Execution (spec section 5) as one numba pass: fills, exits, cash and the equity curve."""

from __future__ import annotations

import numpy as np
from numba import njit

from tradepulse.quant.candles import FloatArray

EXIT_STOP_LOSS = 0
EXIT_TAKE_PROFIT = 1
EXIT_TIMEOUT = 2
EXIT_END_OF_DATA = 3
EXIT_REASONS = ("stop_loss", "take_profit", "timeout", "end_of_data")

# Columns of the float trade records returned by `simulate_nb`.
T_SIGNAL_PRICE, T_FILL, T_SL, T_TP, T_QTY, T_EXIT_PRICE, T_GROSS, T_NET, T_FEES = range(9)
# Columns of the int trade records.
T_SIDE, T_SIGNAL_BAR, T_ENTRY_BAR, T_EXIT_BAR, T_REASON = range(5)


@njit(cache=True)
def simulate_nb(
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    sig_bar: np.ndarray,
    sig_dir: np.ndarray,
    sig_sl: FloatArray,
    sig_tp: FloatArray,
    max_holding: int,
    initial_capital: float,
    fee_rate: float,
    slippage: float,
    risk_per_trade: float,
    max_leverage: float,
    trade_from: int,
) -> tuple[FloatArray, np.ndarray, FloatArray, int, int, int]:
    """Run one position at a time over bars trade_from..n-1.

    Returns (equity over trade_from..n-1, int trade records, float trade records, trade count,
    ambiguous exit bars, exposed bars). A bar is "ambiguous" when an open trade's stop and
    target were both inside its range, so the stop-first rule decided the exit.
    """
    n = len(close)
    equity = np.empty(n - trade_from)
    n_sig = len(sig_bar)
    ints = np.empty((n_sig, 5), dtype=np.int64)
    floats = np.empty((n_sig, 9))
    n_trades = 0
    ambiguous = 0
    exposed = 0
    cash = initial_capital
    filled = trade_from  # the next bar whose equity is still to be written
    search_from = trade_from  # the first bar at whose close a new trade may be signalled
    ptr = 0
    while True:
        while ptr < n_sig and sig_bar[ptr] < search_from:
            ptr += 1
        if ptr >= n_sig or sig_bar[ptr] + 1 >= n or not cash > 0.0:
            equity[filled - trade_from :] = cash
            break
        j = sig_bar[ptr]
        side = sig_dir[ptr]
        sl = sig_sl[ptr]
        tp = sig_tp[ptr]
        sig_price = close[j]
        # Flat from the last written bar through the signal bar: equity is the cash.
        equity[filled - trade_from : j + 1 - trade_from] = cash
        e = j + 1
        fill = open_[e] * (1.0 + slippage) if side == 1 else open_[e] * (1.0 - slippage)
        # Sized from the signal price, never the fill; the leverage cap uses the fill.
        cap = cash * max_leverage / fill
        distance = abs(sig_price - sl)
        if distance > 0.0:
            qty = cash * risk_per_trade / distance
        else:
            # 0/0 when nothing is risked on a stop at the price: risking nothing sizes 0, as
            # at any other distance; any risk on a zero distance wants an unbounded size.
            qty = cap if risk_per_trade > 0.0 else 0.0
        if qty > cap:
            qty = cap
        entry_fee = qty * fill * fee_rate
        cash = cash - entry_fee
        k = e
        reason = -1
        x = 0.0
        while True:
            o = open_[k]
            if side == 1:
                if low[k] <= sl and high[k] >= tp:
                    ambiguous += 1
                if o <= sl:
                    x = o * (1.0 - slippage)
                    reason = EXIT_STOP_LOSS
                elif low[k] <= sl:
                    x = sl * (1.0 - slippage)
                    reason = EXIT_STOP_LOSS
                elif o >= tp:
                    x = o
                    reason = EXIT_TAKE_PROFIT
                elif high[k] >= tp:
                    x = tp
                    reason = EXIT_TAKE_PROFIT
                elif k == e + max_holding - 1:
                    x = close[k] * (1.0 - slippage)
                    reason = EXIT_TIMEOUT
                elif k == n - 1:
                    x = close[k] * (1.0 - slippage)
                    reason = EXIT_END_OF_DATA
            else:
                if high[k] >= sl and low[k] <= tp:
                    ambiguous += 1
                if o >= sl:
                    x = o * (1.0 + slippage)
                    reason = EXIT_STOP_LOSS
                elif high[k] >= sl:
                    x = sl * (1.0 + slippage)
                    reason = EXIT_STOP_LOSS
                elif o <= tp:
                    x = o
                    reason = EXIT_TAKE_PROFIT
                elif low[k] <= tp:
                    x = tp
                    reason = EXIT_TAKE_PROFIT
                elif k == e + max_holding - 1:
                    x = close[k] * (1.0 + slippage)
                    reason = EXIT_TIMEOUT
                elif k == n - 1:
                    x = close[k] * (1.0 + slippage)
                    reason = EXIT_END_OF_DATA
            if reason >= 0:
                break
            if side == 1:
                equity[k - trade_from] = cash + qty * (close[k] - fill)
            else:
                equity[k - trade_from] = cash + qty * (fill - close[k])
            k += 1
        gross = qty * (x - fill) if side == 1 else qty * (fill - x)
        exit_fee = qty * x * fee_rate
        cash = (cash + gross) - exit_fee
        equity[k - trade_from] = cash
        exposed += k - e + 1
        t = n_trades
        ints[t, T_SIDE] = side
        ints[t, T_SIGNAL_BAR] = j
        ints[t, T_ENTRY_BAR] = e
        ints[t, T_EXIT_BAR] = k
        ints[t, T_REASON] = reason
        floats[t, T_SIGNAL_PRICE] = sig_price
        floats[t, T_FILL] = fill
        floats[t, T_SL] = sl
        floats[t, T_TP] = tp
        floats[t, T_QTY] = qty
        floats[t, T_EXIT_PRICE] = x
        floats[t, T_GROSS] = gross
        floats[t, T_NET] = gross - entry_fee - exit_fee
        floats[t, T_FEES] = entry_fee + exit_fee
        n_trades += 1
        filled = k + 1
        # A trade that exits at bar k lets a signal at bar k open the next one.
        search_from = k
    return equity, ints[:n_trades].copy(), floats[:n_trades].copy(), n_trades, ambiguous, exposed
