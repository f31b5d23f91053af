"""The liquidity-sweep strategy run through vectorbt: the peer of our speed benchmark.

The issue quotes "vectorbt 14.9 ms per backtest on 155,520 bars (from_signals with a numba
signal function)". This module is that peer, written the way an ordinary vectorbt user would
write it, so that our benchmark can time both in the same process and print the ratio:

- `prepare_vbt` does the one-time work that does not depend on the parameters, as our engine
  is allowed to: Wilder ATR(14) and the mean volume of the 20 previous bars (spec section 1).
- `run_vbt` is one backtest: a single `@njit` loop (`sweep_signals_nb`) builds the entry
  signals of spec sections 3-4 (regime "any"), and `vbt.Portfolio.from_signals` simulates them
  with a numba signal function (`timed_signal_func_nb`) that feeds the entries and adds the
  time exit.

What it implements like the spec
--------------------------------
- Levels (section 3): `R[i] = max(H[i-N..i-1])`, `S[i] = min(L[i-N..i-1])` by a plain loop over
  the window (O(n*N), no rolling-window trick); touches counted with tolerance 0.001 over the
  same window (only on bars that pass the cheaper pierce and volume tests: the result is the
  same).
- Signals (section 4): pierce depth, volume spike against the mean of the 20 previous bars
  (`VA` defined and > 0), one pending setup per side replaced by a newer sweep, reversal window
  `reversal_candles` counting the sweep bar, step 1 before step 2 on a sweep bar, a signal
  clears its setup, a long and a short signal on the same bar cancel each other, a signal
  counts only when `ATR[j]` is defined and > 0, the sides never see positions.
- Execution (section 5): a signal at bar j enters at the open of bar j+1 (the signal arrays
  are shifted by one bar, `price=open`), fees 0.001 and slippage 0.0005 on every fill (vbt
  applies the fee to the slipped notional, like the spec), one position at a time (entries
  while a position is open are dropped, opposite entries do not reverse), stop loss and take
  profit as fractions `atr_multiplier_sl*ATR[j]/C[j]` and `risk_reward_ratio` times that, set
  from the signal price `P = C[j]` (`stop_entry_price="valprice"` with `val_price=-inf`, which
  vbt resolves to the previous close), so `SL = P -/+ atr_multiplier_sl*ATR[j]` and
  `TP = P +/- risk_reward_ratio*(stop distance)` exactly; a gap through a stop exits at the
  open; stop loss is checked before take profit; a trade that exits at bar k lets the entry
  from a signal at bar k fill at k+1. Size is an amount per bar,
  `qty = min(10000*0.01/stop_distance, 10000*3/F)` with `F` the slipped fill price.

Differences from the spec (a speed peer doing equivalent work, not a parity implementation)
------------------------------------------------------------------------------------------
1. Sizing uses a fixed equity of 10000 (the initial capital) instead of the cash at the
   close of bar j, so position sizes do not shrink or grow with the account. The simulation
   runs with `init_cash="auto"` (vbt's documented mode for fixed-size orders: infinite cash
   inside the simulation, the cash actually spent reported afterwards). With
   `init_cash=10000` vbt (which has no margin for longs) would clip every long to the free
   cash, and with these settings the fees exhaust the 10000 within the first quarter of the
   benchmark data, after which vbt rejects every order: a peer that stops trading. So sizes
   follow the spec formula on both sides, returns in `pf` are relative to the "auto" cash,
   and the spec's "cash > 0" entry condition is not applied; compare trades and PnL in
   currency, not percentages.
2. (Consequence of 1.) The leverage cap `10000*3/F` is applied by the size array, not by a
   cash or margin check.
3. vbt sets the stops after the entry order fills, so they are first checked on the bar after
   the entry bar; the spec already checks the entry bar's open, low and high.
4. `stop_exit_price="stopmarket"` applies the slippage to every stop exit, including the take
   profit, which the spec fills as a limit order without slippage.
5. Time exit: the spec exits at the close of bar `e + max_holding_periods - 1`; vbt fills a
   signal at the bar's open, so the peer exits at the open of bar `e + max_holding_periods`
   (the next open, normally equal to that close on 24/7 crypto data) with slippage, and a stop
   hit on that bar wins over the time exit. If that bar also carries a new entry, the entry is
   lost (vbt fills one order per bar); the spec exits and enters on consecutive bars.
6. A position still open at the last bar stays open (vbt reports it as an open trade) instead
   of an `end_of_data` exit at the last close.
7. Regime filters other than "any" are not implemented.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import vectorbt as vbt
from numba import njit
from vectorbt.portfolio.enums import SignalContext

ATR_PERIOD = 14
VOLUME_WINDOW = 20
TOUCH_TOLERANCE = 0.001
SIZING_EQUITY = 10_000.0
FEE_RATE = 0.001
SLIPPAGE = 0.0005
RISK_PER_TRADE = 0.01
MAX_LEVERAGE = 3.0


@dataclass(frozen=True, slots=True)
class VbtData:
    """Candles as float64 arrays plus the parameter-free indicators (NaN where undefined)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    atr: np.ndarray
    vol_avg: np.ndarray


@njit(cache=False)
def wilder_atr_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """Wilder ATR: the mean of the first n true ranges, then the recursive average."""
    size = high.shape[0]
    atr = np.full(size, np.nan)
    if size < n:
        return atr
    tr = np.empty(size)
    tr[0] = high[0] - low[0]
    for i in range(1, size):
        tr[i] = max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
    total = 0.0
    for i in range(n):
        total += tr[i]
    atr[n - 1] = total / n
    for i in range(n, size):
        atr[i] = (atr[i - 1] * (n - 1) + tr[i]) / n
    return atr


def prepare_vbt(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> VbtData:
    """One-time indicator preparation (independent of the strategy parameters)."""
    o, h, lo, c, v = (
        np.ascontiguousarray(a, dtype=np.float64) for a in (open_, high, low, close, volume)
    )
    atr = wilder_atr_nb(h, lo, c, ATR_PERIOD)
    vol_avg = np.full(v.shape[0], np.nan)
    if v.shape[0] > VOLUME_WINDOW:
        csum = np.concatenate(([0.0], np.cumsum(v)))
        # VA[i] = mean(V[i-w..i-1]) for i >= w
        vol_avg[VOLUME_WINDOW:] = (
            csum[VOLUME_WINDOW:-1] - csum[: -VOLUME_WINDOW - 1]
        ) / VOLUME_WINDOW
    return VbtData(open=o, high=h, low=lo, close=c, volume=v, atr=atr, vol_avg=vol_avg)


@njit(cache=False)
def sweep_signals_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    atr: np.ndarray,
    vol_avg: np.ndarray,
    lookback: int,
    min_touches: int,
    pierce_depth: float,
    volume_spike: float,
    reversal_candles: int,
    min_distance: float,
    atr_mult_sl: float,
    risk_reward: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Liquidity-sweep signals (spec sections 3-4), already shifted to the fill bar j+1.

    Returns long entries, short entries, sl_stop and tp_stop fractions and the order amount,
    each indexed by the bar whose open fills the entry.
    """
    n = close.shape[0]
    long_entries = np.zeros(n, dtype=np.bool_)
    short_entries = np.zeros(n, dtype=np.bool_)
    sl_stop = np.full(n, np.nan)
    tp_stop = np.full(n, np.nan)
    size = np.full(n, np.nan)

    short_pending = False
    short_level = 0.0
    short_expires = -1
    long_pending = False
    long_level = 0.0
    long_expires = -1

    for i in range(n):
        # Step 1: sweeps (need a full window of N previous bars and a volume spike)
        if i >= lookback:
            va = vol_avg[i]
            if not np.isnan(va) and va > 0.0 and volume[i] >= volume_spike * va:
                res = high[i - lookback]
                sup = low[i - lookback]
                for k in range(i - lookback + 1, i):
                    if high[k] > res:
                        res = high[k]
                    if low[k] < sup:
                        sup = low[k]
                if high[i] >= res * (1.0 + pierce_depth):
                    touch_line = res * (1.0 - TOUCH_TOLERANCE)
                    touches = 0
                    for k in range(i - lookback, i):
                        if high[k] >= touch_line:
                            touches += 1
                    if touches >= min_touches:
                        short_pending = True
                        short_level = res
                        short_expires = i + reversal_candles - 1
                if low[i] <= sup * (1.0 - pierce_depth):
                    touch_line = sup * (1.0 + TOUCH_TOLERANCE)
                    touches = 0
                    for k in range(i - lookback, i):
                        if low[k] <= touch_line:
                            touches += 1
                    if touches >= min_touches:
                        long_pending = True
                        long_level = sup
                        long_expires = i + reversal_candles - 1

        # Step 2: the close back inside the level within the reversal window
        short_signal = False
        if short_pending:
            if i <= short_expires:
                if close[i] <= short_level * (1.0 - min_distance):
                    short_signal = True
                    short_pending = False
                elif i == short_expires:
                    short_pending = False
            else:
                short_pending = False
        long_signal = False
        if long_pending:
            if i <= long_expires:
                if close[i] >= long_level * (1.0 + min_distance):
                    long_signal = True
                    long_pending = False
                elif i == long_expires:
                    long_pending = False
            else:
                long_pending = False

        # A signal counts when it is alone on its bar, ATR is defined and a next bar exists
        if long_signal == short_signal or i + 1 >= n:
            continue
        a = atr[i]
        if np.isnan(a) or a <= 0.0:
            continue
        stop_distance = atr_mult_sl * a
        sl_frac = stop_distance / close[i]
        if long_signal:
            long_entries[i + 1] = True
            fill = open_[i + 1] * (1.0 + SLIPPAGE)
        else:
            short_entries[i + 1] = True
            fill = open_[i + 1] * (1.0 - SLIPPAGE)
        qty = SIZING_EQUITY * MAX_LEVERAGE / fill
        if stop_distance > 0.0:
            qty = min(SIZING_EQUITY * RISK_PER_TRADE / stop_distance, qty)
        sl_stop[i + 1] = sl_frac
        tp_stop[i + 1] = risk_reward * sl_frac
        size[i + 1] = qty

    return long_entries, short_entries, sl_stop, tp_stop, size


@njit(cache=False)
def timed_signal_func_nb(
    c: SignalContext,
    long_entries: np.ndarray,
    short_entries: np.ndarray,
    max_holding: int,
    entry_bar: np.ndarray,
) -> tuple[bool, bool, bool, bool]:
    """from_signals signal function: entries when flat, a time exit after max_holding bars.

    Not called on bars where a stop exits (vbt gives stops priority).
    """
    i = c.i
    if c.position_now == 0:
        if long_entries[i] or short_entries[i]:
            entry_bar[0] = i  # the order fills at this bar's open
        return long_entries[i], False, short_entries[i], False
    if i - entry_bar[0] >= max_holding:
        if c.position_now > 0:
            return False, True, False, False
        return False, False, False, True
    return False, False, False, False


def run_vbt(data: VbtData, params: Mapping[str, float | int]) -> vbt.Portfolio:
    """One backtest: numba signals + vbt.Portfolio.from_signals with a numba signal function."""
    long_entries, short_entries, sl_stop, tp_stop, size = sweep_signals_nb(
        data.open,
        data.high,
        data.low,
        data.close,
        data.volume,
        data.atr,
        data.vol_avg,
        int(params["key_level_lookback"]),
        int(params["min_level_touches"]),
        float(params["pierce_depth"]),
        float(params["volume_spike_threshold"]),
        int(params["reversal_candles"]),
        float(params["min_distance_from_level"]),
        float(params["atr_multiplier_sl"]),
        float(params["risk_reward_ratio"]),
    )
    entry_bar = np.full(1, -1, dtype=np.int64)
    return vbt.Portfolio.from_signals(
        data.close,
        signal_func_nb=timed_signal_func_nb,
        signal_args=(long_entries, short_entries, int(params["max_holding_periods"]), entry_bar),
        size=size,
        size_type="amount",
        price=data.open,
        open=data.open,
        high=data.high,
        low=data.low,
        fees=FEE_RATE,
        slippage=SLIPPAGE,
        init_cash="auto",
        sl_stop=sl_stop,
        tp_stop=tp_stop,
        stop_entry_price="valprice",
        val_price=-np.inf,
        stop_exit_price="stopmarket",
        upon_opposite_entry="ignore",
    )


BENCH_PARAMS: dict[str, float | int] = {
    "key_level_lookback": 100,
    "min_level_touches": 2,
    "pierce_depth": 0.001,
    "volume_spike_threshold": 1.5,
    "reversal_candles": 3,
    "min_distance_from_level": 0.0005,
    "atr_multiplier_sl": 2.0,
    "risk_reward_ratio": 2.0,
    "max_holding_periods": 100,
}


def _main() -> None:
    import pandas as pd

    bars = 155_520
    runs = 20
    df = pd.read_csv("/work/shared/data/binance_BTC-USDT_5m.csv.gz").tail(bars)
    data = prepare_vbt(
        df["open"].to_numpy(),
        df["high"].to_numpy(),
        df["low"].to_numpy(),
        df["close"].to_numpy(),
        df["volume"].to_numpy(),
    )
    t0 = time.perf_counter()
    pf = run_vbt(data, BENCH_PARAMS)  # warm-up: numba compilation
    print(f"warm-up (compile + first run): {time.perf_counter() - t0:.1f} s")

    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pf = run_vbt(data, BENCH_PARAMS)
        times.append(time.perf_counter() - t0)
    trades = pf.trades.records_readable
    n_trades = len(trades)
    n_long = int((trades["Direction"] == "Long").sum())
    n_open = int((trades["Status"] == "Open").sum())
    median_ms = float(np.median(times)) * 1000.0
    print(f"bars: {len(df)}, runs: {runs}")
    print(f"vectorbt {vbt.__version__}: {median_ms:.2f} ms per backtest (median)")
    print(f"trades: {n_trades} (long {n_long}, short {n_trades - n_long}, open {n_open})")
    pnl = float(trades["PnL"].sum())
    print(f"net PnL of the trades (fixed 10000-equity sizing): {pnl:.2f}")
    if n_trades == 0 or not math.isfinite(median_ms):
        raise SystemExit("bad peer: no trades")


if __name__ == "__main__":
    _main()
