"""Hand-computed cases of ``shared/spec/liquidity-sweep.md``.

Each case is written once, as data: candles as (O, H, L, C, V) rows, parameter and
setting overrides, and the expected trades, ambiguous exits, equity and metrics, derived
by hand from the spec. The arithmetic is spelled out as formulas over the candle values
so a reader can check it line by line. Every case runs against the reference
(``tests/reference/sweep_reference.py``) and the engine (``tradepulse.quant``); the engine
runs skip while it cannot be imported.

The candles are built so that the rules are easy to follow:
- tiny windows (ATR period 2, volume window 2, level lookback 3, 2 touches);
- volume 10 on ordinary bars and at least twice the average (20, 30 or 100) on the bars
  meant to sweep, with a spike threshold of 2, so no other bar can be a sweep: for two bars
  after a spike the volume average is at least 15 and an ordinary bar's 10 is below 2*15;
  further on it is 10 < 2*10;
- daily bars (timeframe 86400 s), so the regime lookback k is the number of days and
  ppy = 365 * 86400 / 86400 = 365.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from tests.reference.adapters import RUNNERS, Candleset, Outcome, Runner, RunSettings
from tests.reference.sweep_reference import METRIC_NAMES

Bar = tuple[float, float, float, float, float]  # O, H, L, C, V
Metrics = dict[str, float | int | None]

REL = 1e-12
INIT = 10000.0
FEE = 0.001
SLIP = 0.0005
RISK = 0.01
LEV = 3.0
PPY = 365 * 86400 / 86400  # daily bars

BASE_PARAMS: dict[str, float | int] = {
    "key_level_lookback": 3,
    "min_level_touches": 2,
    "pierce_depth": 0.005,
    "volume_spike_threshold": 2.0,
    "reversal_candles": 1,
    "min_distance_from_level": 0.001,
    "atr_multiplier_sl": 1.0,
    "risk_reward_ratio": 2.0,
    "max_holding_periods": 10,
}
BASE_SETTINGS = RunSettings(
    timeframe_seconds=86400,
    regime="any",
    trade_from=0,
    atr_period=2,
    volume_window=2,
    touch_tolerance=0.001,
    regime_lookback_days=3.0,
    regime_threshold=0.05,
    initial_capital=INIT,
    fee_rate=FEE,
    slippage=SLIP,
    risk_per_trade=RISK,
    max_leverage=LEV,
)
INT_METRICS = frozenset({"total_trades", "long_trades", "short_trades", "max_consecutive_losses"})


@dataclass(frozen=True)
class Case:
    name: str
    bars: tuple[Bar, ...]
    trades: tuple[dict[str, Any], ...]
    params: Mapping[str, float | int] = field(default_factory=dict)  # overrides
    settings: Mapping[str, Any] = field(default_factory=dict)  # overrides of BASE_SETTINGS
    ambiguous_exits: int = 0
    equity: tuple[float, ...] | None = None  # the whole curve, when the case pins it
    metrics: Metrics = field(default_factory=dict)  # the metrics the case pins


# ------------------------------------------------------------------ section 5 arithmetic


def opened(
    side: str,
    signal_bar: int,
    p: float,
    atr: float,
    entry_open: float,
    *,
    cash: float = INIT,
    atr_mult: float = 1.0,
    rr: float = 2.0,
) -> dict[str, Any]:
    """A trade as it opens: stop, target, fill and size from the spec's formulas."""
    if side == "long":
        sl = p - atr_mult * atr
        tp = p + rr * (p - sl)
        fill = entry_open * (1 + SLIP)
    else:
        sl = p + atr_mult * atr
        tp = p - rr * (sl - p)
        fill = entry_open * (1 - SLIP)
    qty = min(cash * RISK / abs(p - sl), cash * LEV / fill)
    return {
        "side": side,
        "signal_bar": signal_bar,
        "entry_bar": signal_bar + 1,
        "signal_price": p,
        "fill_price": fill,
        "stop_loss": sl,
        "take_profit": tp,
        "qty": qty,
        "entry_fee": qty * fill * FEE,
    }


def closed(t: Mapping[str, Any], exit_bar: int, exit_price: float, reason: str) -> dict[str, Any]:
    """The trade once it exits at ``exit_price``: gross, fees and net as in section 5."""
    qty, fill = t["qty"], t["fill_price"]
    gross = qty * (exit_price - fill) if t["side"] == "long" else qty * (fill - exit_price)
    exit_fee = qty * exit_price * FEE
    out = {k: v for k, v in t.items() if k != "entry_fee"}
    out.update(
        exit_bar=exit_bar,
        exit_price=exit_price,
        exit_reason=reason,
        gross_pnl=gross,
        net_pnl=gross - t["entry_fee"] - exit_fee,
        fees=t["entry_fee"] + exit_fee,
    )
    return out


def returns_of(equity: tuple[float, ...]) -> list[float]:
    return [equity[k] / equity[k - 1] - 1 for k in range(1, len(equity))]


# ------------------------------------------------------------------ candles shared by cases

# Short prefix: resistance R[3] = max(H[0..2]) = max(101, 102, 102) = 102, touched by bars
# 1 and 2 (H >= 102*(1-0.001) = 101.898) -> key. Bar 3 sweeps it: H[3] = 103 >=
# 102*(1+0.005) = 102.51, V[3] = 30 >= 2 * VA[3] = 2 * (10+10)/2, and closes back inside
# on the same bar: C[3] = 101 <= 102*(1-0.001) = 101.898 -> short signal at bar 3.
# No long sweep at 3: S[3] = min(99, 99, 100) = 99 and L[3] = 100 > 99*(1-0.005).
SHORT_PREFIX: tuple[Bar, ...] = (
    (100, 101, 99, 100, 10),
    (100, 102, 99, 101, 10),
    (101, 102, 100, 101, 10),
    (101, 103, 100, 101, 30),
)
# Wilder ATR, n = 2: ATR[1] = mean(TR[0], TR[1]), then ATR[i] = (ATR[i-1]*1 + TR[i]) / 2.
SHORT_ATR1 = ((101 - 99) + max(102 - 99, abs(102 - 100), abs(99 - 100))) / 2
SHORT_ATR2 = (SHORT_ATR1 * 1 + max(102 - 100, abs(102 - 101), abs(100 - 101))) / 2
SHORT_ATR3 = (SHORT_ATR2 * 1 + max(103 - 100, abs(103 - 101), abs(100 - 101))) / 2  # 2.625
SHORT_P = 101.0  # C[3]

# Long prefix (the mirror): S[3] = min(L[0..2]) = min(99, 98, 98) = 98, touched by bars 1
# and 2 (L <= 98*(1+0.001) = 98.098) -> key. Bar 3: L[3] = 97 <= 98*(1-0.005) = 97.51,
# V[3] = 30 >= 2*10, C[3] = 99 >= 98*(1+0.001) = 98.098 -> long signal at bar 3.
# No short sweep at 3: R[3] = max(101, 101, 100) = 101 and H[3] = 100 < 101*1.005.
LONG_PREFIX: tuple[Bar, ...] = (
    (100, 101, 99, 100, 10),
    (100, 101, 98, 99, 10),
    (99, 100, 98, 99, 10),
    (99, 100, 97, 99, 30),
)
LONG_ATR1 = ((101 - 99) + max(101 - 98, abs(101 - 100), abs(98 - 100))) / 2
LONG_ATR2 = (LONG_ATR1 * 1 + max(100 - 98, abs(100 - 99), abs(98 - 99))) / 2
LONG_ATR3 = (LONG_ATR2 * 1 + max(100 - 97, abs(100 - 99), abs(97 - 99))) / 2  # 2.625
LONG_P = 99.0  # C[3]


# ------------------------------------------------------------------ the cases

CASES: list[Case] = []


def _short_take_profit_by_low() -> Case:
    # SL = 101 + 2.625 = 103.625, TP = 101 - 2*(103.625 - 101) = 95.75; entry at O[4].
    bars = (
        *SHORT_PREFIX,
        (100.5, 101, 99, 99.5, 10),  # 4: entry; H 101 < SL, L 99 > TP
        (99.5, 100, 97, 97.5, 10),  # 5: nothing
        (97.5, 98, 95, 96, 10),  # 6: L 95 <= TP 95.75 -> take_profit at TP
        (96, 97, 95.5, 96.5, 10),  # 7: flat
    )
    t = opened("short", 3, SHORT_P, SHORT_ATR3, entry_open=100.5)
    trade = closed(t, 6, t["take_profit"], "take_profit")
    cash_in = INIT - t["entry_fee"]
    qty, fill = t["qty"], t["fill_price"]
    equity = (
        INIT,
        INIT,
        INIT,
        INIT,
        cash_in + qty * (fill - 99.5),
        cash_in + qty * (fill - 97.5),
        (cash_in + trade["gross_pnl"]) - qty * trade["exit_price"] * FEE,
        (cash_in + trade["gross_pnl"]) - qty * trade["exit_price"] * FEE,
    )
    r = returns_of(equity)
    assert min(r) >= 0  # the curve never falls: no negative return and no drawdown
    net = trade["net_pnl"]
    cagr = ((equity[-1] / INIT) ** (PPY / len(r)) - 1) * 100
    metrics: Metrics = {
        "net_profit": equity[-1] - INIT,
        "net_profit_pct": (equity[-1] - INIT) / INIT * 100,
        "total_trades": 1,
        "long_trades": 0,
        "short_trades": 1,
        "win_rate": 100.0,
        "gross_win_rate": 100.0,
        "gross_profit": net,
        "gross_loss": 0.0,
        "profit_factor": None,  # gross_loss is 0
        "avg_win": net,
        "avg_loss": 0.0,  # READING: no losers -> 0
        "expectancy": net,
        "largest_win": net,
        "largest_loss": 0.0,  # READING: no losers -> 0
        "max_consecutive_losses": 0,
        "max_drawdown_pct": 0.0,
        "sharpe_ratio": statistics.mean(r) / statistics.stdev(r) * math.sqrt(PPY),
        "sortino_ratio": None,  # no negative return
        "cagr_pct": cagr,
        "calmar_ratio": None,  # drawdown is 0
        "exposure_pct": 3 / 8 * 100,  # bars 4, 5, 6 of 8
        "avg_holding_bars": 6 - 4 + 1,
    }
    return Case(
        "short sweep and reversal, take profit by low",
        bars,
        (trade,),
        equity=equity,
        metrics=metrics,
    )


CASES.append(_short_take_profit_by_low())


def _long_take_profit_by_high() -> Case:
    # SL = 99 - 2.625 = 96.375, TP = 99 + 2*(99 - 96.375) = 104.25.
    bars = (
        *LONG_PREFIX,
        (99.5, 101, 99, 100.5, 10),  # 4: entry
        (100.5, 103, 100, 102.5, 10),  # 5: nothing
        (102.5, 104.5, 102, 104, 10),  # 6: O 102.5 < TP, H 104.5 >= TP -> exit at TP
        (104, 105, 103.5, 104.5, 10),
    )
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    trade = closed(t, 6, t["take_profit"], "take_profit")
    metrics: Metrics = {
        "win_rate": 100.0,
        "max_consecutive_losses": 0,
        "profit_factor": None,
        "exposure_pct": 3 / 8 * 100,
        "avg_holding_bars": 3,
    }
    return Case("long sweep and reversal, take profit by high", bars, (trade,), metrics=metrics)


CASES.append(_long_take_profit_by_high())


def _long_take_profit_by_open_gap() -> Case:
    bars = (
        *LONG_PREFIX,
        (99.5, 101, 99, 100.5, 10),  # 4: entry
        (105, 106, 104.5, 105.5, 10),  # 5: O 105 >= TP 104.25 -> exit at O, no slippage
        (105.5, 106, 105, 105.5, 10),
    )
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    return Case("long take profit by open gap", bars, (closed(t, 5, 105.0, "take_profit"),))


CASES.append(_long_take_profit_by_open_gap())


def _long_stop_by_open_gap() -> Case:
    bars = (
        *LONG_PREFIX,
        (99.5, 100, 98.5, 99, 10),  # 4: entry; L 98.5 > SL 96.375
        (96, 96.5, 95, 95.5, 10),  # 5: O 96 <= SL -> exit at O*(1-slippage)
        (95.5, 96, 95, 95.5, 10),
    )
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    trade = closed(t, 5, 96 * (1 - SLIP), "stop_loss")
    net = trade["net_pnl"]
    assert net < 0
    assert trade["gross_pnl"] < 0
    cash_in = INIT - t["entry_fee"]
    e4 = cash_in + t["qty"] * (99 - t["fill_price"])
    e5 = (cash_in + trade["gross_pnl"]) - t["qty"] * trade["exit_price"] * FEE
    equity = (INIT, INIT, INIT, INIT, e4, e5, e5)
    r = returns_of(equity)  # (0, 0, 0, e4/INIT - 1, e5/e4 - 1, 0): two negative of six
    mdd = (INIT - e5) / INIT * 100  # peak E[0], trough E[5]
    cagr = ((e5 / INIT) ** (PPY / 6) - 1) * 100
    metrics: Metrics = {
        "net_profit": e5 - INIT,
        "net_profit_pct": (e5 - INIT) / INIT * 100,
        "win_rate": 0.0,
        "gross_win_rate": 0.0,
        "gross_profit": 0.0,
        "gross_loss": abs(net),
        "profit_factor": 0.0 / abs(net),
        "avg_win": 0.0,  # READING: no winners -> 0
        "avg_loss": net,
        "expectancy": net,
        "largest_win": 0.0,  # READING: no winners -> 0
        "largest_loss": net,
        "max_consecutive_losses": 1,
        "max_drawdown_pct": mdd,
        "sharpe_ratio": statistics.mean(r) / statistics.stdev(r) * math.sqrt(PPY),
        "sortino_ratio": statistics.mean(r)
        / math.sqrt((r[3] ** 2 + r[4] ** 2) / 6)
        * math.sqrt(PPY),
        "cagr_pct": cagr,
        "calmar_ratio": cagr / mdd,
        "exposure_pct": 2 / 7 * 100,
        "avg_holding_bars": 2,
    }
    return Case("long stop by open gap", bars, (trade,), equity=equity, metrics=metrics)


CASES.append(_long_stop_by_open_gap())


def _short_stop_by_open_gap() -> Case:
    bars = (
        *SHORT_PREFIX,
        (100.5, 101, 99.5, 100, 10),  # 4: entry; H 101 < SL 103.625
        (104, 104.5, 103.5, 104, 10),  # 5: O 104 >= SL -> exit at O*(1+slippage)
        (104, 104.5, 103.5, 104, 10),
    )
    t = opened("short", 3, SHORT_P, SHORT_ATR3, entry_open=100.5)
    return Case("short stop by open gap", bars, (closed(t, 5, 104 * (1 + SLIP), "stop_loss"),))


CASES.append(_short_stop_by_open_gap())


def _short_stop_by_high() -> Case:
    bars = (
        *SHORT_PREFIX,
        (100.5, 101, 99.5, 100, 10),  # 4: entry
        (100, 104, 99.5, 103, 10),  # 5: O 100 < SL, H 104 >= SL 103.625 -> SL*(1+slippage)
        (103, 103.5, 102.5, 103, 10),
    )
    t = opened("short", 3, SHORT_P, SHORT_ATR3, entry_open=100.5)
    trade = closed(t, 5, t["stop_loss"] * (1 + SLIP), "stop_loss")
    return Case("short stop by high", bars, (trade,))


CASES.append(_short_stop_by_high())


def _long_stop_and_target_in_one_bar() -> Case:
    bars = (
        *LONG_PREFIX,
        (99.5, 100, 98.5, 99, 10),  # 4: entry
        (99, 105, 96, 100, 10),  # 5: L 96 <= SL 96.375 and H 105 >= TP 104.25: stop first
        (100, 100.5, 99.5, 100, 10),
    )
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    trade = closed(t, 5, t["stop_loss"] * (1 - SLIP), "stop_loss")
    return Case("long stop and target in one bar: stop wins", bars, (trade,), ambiguous_exits=1)


CASES.append(_long_stop_and_target_in_one_bar())


def _short_stop_and_target_in_one_bar() -> Case:
    bars = (
        *SHORT_PREFIX,
        (100.5, 101, 99.5, 100, 10),  # 4: entry
        (100, 104, 95, 99, 10),  # 5: H 104 >= SL 103.625 and L 95 <= TP 95.75: stop first
        (99, 99.5, 98.5, 99, 10),
    )
    t = opened("short", 3, SHORT_P, SHORT_ATR3, entry_open=100.5)
    trade = closed(t, 5, t["stop_loss"] * (1 + SLIP), "stop_loss")
    return Case("short stop and target in one bar: stop wins", bars, (trade,), ambiguous_exits=1)


CASES.append(_short_stop_and_target_in_one_bar())


def _long_gap_through_stop_with_target_in_range() -> Case:
    bars = (
        *LONG_PREFIX,
        (99.5, 100, 98.5, 99, 10),  # 4: entry
        (96, 105, 95, 100, 10),  # 5: O 96 <= SL: gap exit; L <= SL and H >= TP: ambiguous
        (100, 100.5, 99.5, 100, 10),
    )
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    trade = closed(t, 5, 96 * (1 - SLIP), "stop_loss")
    return Case(
        "long gap through the stop with the target in range",
        bars,
        (trade,),
        ambiguous_exits=1,
    )


CASES.append(_long_gap_through_stop_with_target_in_range())

# Bars 4.. for the timeout and end-of-data cases: never near SL 96.375 or TP 104.25.
_QUIET_AFTER_LONG: tuple[Bar, ...] = (
    (99.5, 100.5, 99, 100, 10),  # 4
    (100, 101, 99.5, 100.5, 10),  # 5
    (100.5, 101.5, 100, 101, 10),  # 6
    (101, 101.5, 100.5, 101, 10),  # 7
)


def _timeout() -> Case:
    # max_holding_periods = 3, entry e = 4: timeout at k = e + 3 - 1 = 6, at C[6]*(1-slip).
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    return Case(
        "timeout",
        (*LONG_PREFIX, *_QUIET_AFTER_LONG),
        (closed(t, 6, 101 * (1 - SLIP), "timeout"),),
        params={"max_holding_periods": 3},
        metrics={"avg_holding_bars": 3, "exposure_pct": 3 / 8 * 100},
    )


CASES.append(_timeout())


def _timeout_on_last_bar() -> Case:
    # Bar 6 is both e + 3 - 1 and the last bar: rule 5 (timeout) comes before rule 6.
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    return Case(
        "timeout on the last bar is a timeout",
        (*LONG_PREFIX, *_QUIET_AFTER_LONG[:3]),
        (closed(t, 6, 101 * (1 - SLIP), "timeout"),),
        params={"max_holding_periods": 3},
    )


CASES.append(_timeout_on_last_bar())


def _end_of_data() -> Case:
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    return Case(
        "end of data",
        (*LONG_PREFIX, *_QUIET_AFTER_LONG[:2]),
        (closed(t, 5, 100.5 * (1 - SLIP), "end_of_data"),),
        metrics={"exposure_pct": 2 / 6 * 100},
    )


CASES.append(_end_of_data())


def _entry_on_last_bar() -> Case:
    # Signal at 3, entry at 4 = the last bar: the trade enters and leaves on bar 4.
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    trade = closed(t, 4, 100 * (1 - SLIP), "end_of_data")
    cash_in = INIT - t["entry_fee"]
    equity = (INIT,) * 4 + ((cash_in + trade["gross_pnl"]) - t["qty"] * 100 * (1 - SLIP) * FEE,)
    return Case(
        "entry on the last bar exits there at end of data",
        (*LONG_PREFIX, _QUIET_AFTER_LONG[0]),
        (trade,),
        equity=equity,
        metrics={"avg_holding_bars": 1, "exposure_pct": 1 / 5 * 100},
    )


CASES.append(_entry_on_last_bar())

CASES.append(
    Case(
        "signal on the last bar opens nothing",
        LONG_PREFIX,
        (),
        equity=(INIT,) * 4,
        metrics={"total_trades": 0, "exposure_pct": 0.0, "net_profit": 0.0},
    )
)


def _signal_while_open() -> Case:
    # Trade 1: long signal 3, entry 4, SL 96.375, TP 104.25.
    # A second long sweep at bar 6: S[6] = min(L[3..5]) = min(97, 99, 97.05) = 97, touched by
    # bars 3 and 5 (L <= 97*1.001 = 97.097); L[6] = 96.4 <= 97*(1-0.005) = 96.515 (and above
    # the open trade's SL 96.375); V[6] = 100 >= 2*(10+10)/2; C[6] = 98 >= 97.097: the long
    # signal fires at 6 while the trade is open -> dropped, and its setup is cleared.
    # reversal_candles = 3 keeps that setup alive until bar 8, so were it not cleared, C[7]
    # = 104.5 >= 97.097 on the exit bar 7 would fire again and open a trade at bar 8.
    # Bars 7-9 are no sweeps: VA[7] = VA[8] = (10+100)/2 = 55, VA[9] = 10, V = 10.
    bars = (
        *LONG_PREFIX,
        (99.5, 100.5, 99, 100, 10),  # 4: entry
        (100, 100.5, 97.05, 98, 10),  # 5
        (98, 98.5, 96.4, 98, 100),  # 6: long signal, dropped (no short sweep: H 98.5 < R)
        (98, 105, 97.8, 104.5, 10),  # 7: H 105 >= TP 104.25 -> exit at TP
        (104.5, 105, 104, 104.5, 10),  # 8
        (104.5, 105, 104, 104.5, 10),  # 9
    )
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    return Case(
        "signal while a trade is open is dropped and clears its setup",
        bars,
        (closed(t, 7, t["take_profit"], "take_profit"),),
        params={"reversal_candles": 3},
    )


CASES.append(_signal_while_open())

CASES.append(
    Case(
        # atr_period 5: ATR is first defined at bar 4. The long signal fires at bar 3 (see
        # LONG_PREFIX) but does not count (ATR[3] undefined) and still clears its setup, so
        # C[4] = 100 >= 98.098, inside the setup's life (reversal_candles 2: expires 4) and
        # with ATR[4] defined, fires nothing.
        "a signal that does not count still clears its setup",
        (*LONG_PREFIX, *_QUIET_AFTER_LONG[:3]),
        (),
        params={"reversal_candles": 2},
        settings={"atr_period": 5},
    )
)

CASES.append(
    Case(
        # Bar 3 sweeps both levels: R[3] = 101 (3 touches), H[3] = 102 >= 101*1.005 =
        # 101.505; S[3] = 99 (3 touches), L[3] = 98 <= 99*0.995 = 98.505; V 30 >= 2*10.
        # C[3] = 100 <= 101*0.999 = 100.899 (short) and >= 99*1.001 = 99.099 (long).
        "long and short on one bar: neither counts",
        (
            (100, 101, 99, 100, 10),
            (100, 101, 99, 100, 10),
            (100, 101, 99, 100, 10),
            (100, 102, 98, 100, 30),
            (100, 100.5, 99.5, 100, 10),
            (100, 100.5, 99.5, 100, 10),
        ),
        (),
        metrics={"total_trades": 0, "exposure_pct": 0.0},
    )
)


def _leverage_cap() -> Case:
    # atr_multiplier_sl 0.1: SL = 99 - 0.1*2.625 = 98.7375, TP = 99 + 2*0.2625 = 99.525.
    # Risk sizing wants 10000*0.01/0.2625 = 380.95; the cap is 10000*3/F = 301.36.
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5, atr_mult=0.1)
    assert INIT * RISK / abs(LONG_P - t["stop_loss"]) > INIT * LEV / t["fill_price"]
    assert t["qty"] == INIT * LEV / t["fill_price"]
    bars = (
        *LONG_PREFIX,
        (99.5, 99.6, 99.2, 99.4, 10),  # 4: entry; O 99.5 < TP, H 99.6 >= TP -> exit at TP
        (99.4, 99.5, 99.3, 99.4, 10),
    )
    # The target is below the fill: a take profit that loses.
    trade = closed(t, 4, t["take_profit"], "take_profit")
    assert trade["gross_pnl"] < 0
    return Case(
        "leverage cap binds",
        bars,
        (trade,),
        params={"atr_multiplier_sl": 0.1},
        metrics={"gross_win_rate": 0.0, "win_rate": 0.0},
    )


CASES.append(_leverage_cap())


def _sweep_replaces_setup() -> Case:
    # touch_tolerance 0.01, reversal_candles 2.
    # Bar 3: R[3] = 102, touches H >= 102*0.99 = 100.98: bars 0, 1, 2 -> key; H[3] = 102.6
    #   >= 102*1.005 = 102.51, V 30 >= 2*10 -> setup (102, expires 4); C[3] = 102 >
    #   102*0.999 = 101.898: no signal.
    # Bar 4: R[4] = max(102, 102, 102.6) = 102.6, touches H >= 102.6*0.99 = 101.574: bars
    #   1, 2, 3 -> key; H[4] = 103.5 >= 102.6*1.005 = 103.113; V 100 >= 2*(10+30)/2 ->
    #   setup replaced by (102.6, expires 5); C[4] = 102.5 > 102.6*0.999 = 102.4974.
    # Bar 5: C[5] = 102.3 <= 102.4974 -> short signal. The old setup would not have fired:
    #   it expired at 4 and 102.3 > 101.898 anyway. No sweep at 5: VA = (30+100)/2 = 65.
    # Long side: S[3] = 99 (bars 0, 1 within 99.99) but L[3] = 101.5; S[4], S[5] are far
    # below L[4], L[5].
    bars = (
        (100, 101, 99, 100, 10),
        (100, 102, 99, 101, 10),
        (101, 102, 100, 101, 10),
        (101.5, 102.6, 101.5, 102, 30),  # 3: first sweep
        (102, 103.5, 102, 102.5, 100),  # 4: second sweep replaces the setup
        (102.5, 103, 102, 102.3, 10),  # 5: short signal against the new level
        (102, 102.5, 101, 101.5, 10),  # 6: entry
        (101.5, 102, 101, 101.5, 10),  # 7: end of data
    )
    atr3 = (SHORT_ATR2 * 1 + max(102.6 - 101.5, abs(102.6 - 101), abs(101.5 - 101))) / 2
    atr4 = (atr3 * 1 + max(103.5 - 102, abs(103.5 - 102), abs(102 - 102))) / 2
    atr5 = (atr4 * 1 + max(103 - 102, abs(103 - 102.5), abs(102 - 102.5))) / 2
    t = opened("short", 5, 102.3, atr5, entry_open=102)
    # SL ~ 103.66 and TP ~ 99.59 stay outside bars 6 and 7.
    return Case(
        "a sweep replaces the pending setup",
        bars,
        (closed(t, 7, 101.5 * (1 + SLIP), "end_of_data"),),
        params={"reversal_candles": 2},
        settings={"touch_tolerance": 0.01},
    )


CASES.append(_sweep_replaces_setup())

# Bar 3 sweeps R = 102 (as in SHORT_PREFIX) but closes at 102 > 101.898; bar 4 closes at 102
# too; bar 5 closes at 100 <= 101.898.
_LATE_REVERSAL: tuple[Bar, ...] = (
    *SHORT_PREFIX[:3],
    (101.5, 103, 101.5, 102, 30),  # 3: sweep, no close back inside
    (102, 102.5, 101.5, 102, 10),  # 4
    (102, 102, 99.5, 100, 10),  # 5: closes back inside
    (100, 100.5, 99.5, 100, 10),  # 6
)

CASES.append(
    Case(
        # reversal_candles 2: the setup expires at 3 + 2 - 1 = 4, before the close at 5.
        "a setup expires",
        _LATE_REVERSAL,
        (),
        params={"reversal_candles": 2},
        metrics={"total_trades": 0},
    )
)


def _setup_fires_on_its_last_bar() -> Case:
    # reversal_candles 3: expires = 3 + 3 - 1 = 5, so the close at 5 fires (j <= expires).
    atr3 = (SHORT_ATR2 * 1 + max(103 - 101.5, abs(103 - 101), abs(101.5 - 101))) / 2
    atr4 = (atr3 * 1 + max(102.5 - 101.5, abs(102.5 - 102), abs(101.5 - 102))) / 2
    atr5 = (atr4 * 1 + max(102 - 99.5, abs(102 - 102), abs(99.5 - 102))) / 2
    t = opened("short", 5, 100.0, atr5, entry_open=100)
    # Entry at 6, the last bar: SL ~ 102.03 > H 100.5 and TP ~ 95.94 < L 99.5.
    return Case(
        "a setup fires on its last bar",
        _LATE_REVERSAL,
        (closed(t, 6, 100 * (1 + SLIP), "end_of_data"),),
        params={"reversal_candles": 3},
    )


CASES.append(_setup_fires_on_its_last_bar())


def _long_setup_expires() -> Case:
    # Long mirror of "a setup expires": bar 3 sweeps S = 98 (L 97 <= 97.51, V 30) but
    # closes at 98 < 98.098; bar 4 closes at 98 too; bar 5 closes at 99.5 >= 98.098, after
    # the setup expired at 3 + 2 - 1 = 4.
    bars = (
        *LONG_PREFIX[:3],
        (99, 100, 97, 98, 30),  # 3: sweep, no close back inside
        (98, 98.5, 97.5, 98, 10),  # 4
        (98, 100, 98, 99.5, 10),  # 5: closes back inside, too late
        (99.5, 100, 99, 99.5, 10),
    )
    return Case("a long setup expires", bars, (), params={"reversal_candles": 2})


CASES.append(_long_setup_expires())


def _inclusive_boundaries() -> Case:
    # Every threshold of sections 3-4 met with equality, so each ">=" / "<=" matters:
    # touch_tolerance 0: bars 1 and 2 touch R = 102 exactly (H >= 102*(1-0));
    # H[3] = 102*(1+0.005) exactly; V[3] = 20 = 2 * VA[3] = 2 * (10+10)/2;
    # C[3] = 102*(1-0.001) exactly.
    h3 = 102 * (1 + 0.005)
    c3 = 102 * (1 - 0.001)
    bars = (
        *SHORT_PREFIX[:3],
        (101, h3, 100, c3, 20),  # 3: sweep and short signal
        (100.5, 101, 99, 99.5, 10),  # 4: entry
        (99.5, 100, 99, 99.5, 10),  # 5: end of data
    )
    atr3 = (SHORT_ATR2 * 1 + max(h3 - 100, abs(h3 - 101), abs(100 - 101))) / 2
    t = opened("short", 3, c3, atr3, entry_open=100.5)
    # SL ~ 104.3 above every high, TP ~ 97.1 below every low.
    return Case(
        "inclusive boundaries: touch, pierce, volume and reversal at equality",
        bars,
        (closed(t, 5, 99.5 * (1 + SLIP), "end_of_data"),),
        settings={"touch_tolerance": 0.0},
    )


CASES.append(_inclusive_boundaries())


def _long_opens_above_target_low_reaches_stop() -> Case:
    bars = (
        *LONG_PREFIX,
        (99.5, 100, 98.5, 99, 10),  # 4: entry
        # 5: O 105 > SL, so rule 1 fails; rule 2 (L 96 <= SL 96.375) comes before rule 3
        # (O 105 >= TP 104.25): stop at SL*(1-slippage). Both in range: ambiguous.
        (105, 105.5, 96, 100, 10),
        (100, 100.5, 99.5, 100, 10),
    )
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    trade = closed(t, 5, t["stop_loss"] * (1 - SLIP), "stop_loss")
    return Case(
        "long opens above the target, low reaches the stop: stop wins",
        bars,
        (trade,),
        ambiguous_exits=1,
    )


CASES.append(_long_opens_above_target_low_reaches_stop())


def _exit_bar_signal_opens_next() -> Case:
    # Trade 1: long signal 3, entry 4, SL 96.375. Bar 6 both stops it out (O 98 > SL,
    # L 96.3 <= SL) and is a long sweep: S[6] = min(L[3..5]) = 97, touched by bars 3 and 5
    # (L <= 97.097), L[6] = 96.3 <= 97*0.995 = 96.515, V 100 >= 2*10, C[6] = 98 >= 97.097.
    # No trade is open at the close of bar 6, so the signal opens trade 2 at bar 7, sized
    # from the cash after trade 1. Bars 7, 8: VA = 55, no sweep.
    bars = (
        *LONG_PREFIX,
        (99.5, 100.5, 99, 100, 10),  # 4: entry of trade 1
        (100, 100.5, 97.05, 98, 10),  # 5
        (98, 98.5, 96.3, 98, 100),  # 6: trade 1 stopped; long signal
        (98.2, 99, 97.5, 98.5, 10),  # 7: entry of trade 2
        (98.5, 99, 97.9, 98, 10),  # 8: end of data, below the fill: a second loser
    )
    t1 = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5)
    trade1 = closed(t1, 6, t1["stop_loss"] * (1 - SLIP), "stop_loss")
    cash = (INIT - t1["entry_fee"] + trade1["gross_pnl"]) - t1["qty"] * trade1["exit_price"] * FEE
    atr4 = (LONG_ATR3 * 1 + max(100.5 - 99, abs(100.5 - 99), abs(99 - 99))) / 2
    atr5 = (atr4 * 1 + max(100.5 - 97.05, abs(100.5 - 100), abs(97.05 - 100))) / 2
    atr6 = (atr5 * 1 + max(98.5 - 96.3, abs(98.5 - 98), abs(96.3 - 98))) / 2
    t2 = opened("long", 6, 98.0, atr6, entry_open=98.2, cash=cash)
    # SL2 ~ 95.6 and TP2 ~ 102.8 stay outside bars 7 and 8.
    trade2 = closed(t2, 8, 98 * (1 - SLIP), "end_of_data")
    assert trade1["net_pnl"] < 0
    assert trade2["net_pnl"] < 0
    return Case(
        "a signal on an exit bar opens the next trade",
        bars,
        (trade1, trade2),
        metrics={"max_consecutive_losses": 2, "avg_holding_bars": (3 + 2) / 2},
    )


CASES.append(_exit_bar_signal_opens_next())


# ---- regimes. SHORT_CASE candles: signal at 3 with r[3] = C[3]/C[0] - 1 = 101/100 - 1 =
# +0.01 for k = 3; LONG_CASE candles: r[3] = 99/100 - 1 = -0.01. At the entry bar 4 the
# regime differs (short: C[4]/C[1] - 1 = 99.5/101 - 1 < -0.005: bear), which checks that
# the filter reads the signal bar.
_SHORT_CASE = CASES[0]
_LONG_CASE = CASES[1]


def _regime_case(name: str, base: Case, settings: Mapping[str, Any], trades: bool) -> Case:
    return Case(name, base.bars, base.trades if trades else (), settings=settings)


CASES.extend(
    [
        _regime_case(
            "regime bull counts on a bull bar",
            _SHORT_CASE,
            {"regime": "bull", "regime_threshold": 0.005},
            trades=True,
        ),
        _regime_case(
            "regime bear blocks a bull bar",
            _SHORT_CASE,
            {"regime": "bear", "regime_threshold": 0.005},
            trades=False,
        ),
        _regime_case(
            "regime sideways blocks a bull bar",
            _SHORT_CASE,
            {"regime": "sideways", "regime_threshold": 0.005},
            trades=False,
        ),
        _regime_case(
            "regime bear counts on a bear bar",
            _LONG_CASE,
            {"regime": "bear", "regime_threshold": 0.005},
            trades=True,
        ),
        _regime_case(
            "regime bull blocks a bear bar",
            _LONG_CASE,
            {"regime": "bull", "regime_threshold": 0.005},
            trades=False,
        ),
        # The thresholds are inclusive: r[3] equals the threshold bit for bit.
        _regime_case(
            "regime bull at exactly the threshold",
            _SHORT_CASE,
            {"regime": "bull", "regime_threshold": 101 / 100 - 1},
            trades=True,
        ),
        _regime_case(
            "regime bear at exactly minus the threshold",
            _LONG_CASE,
            {"regime": "bear", "regime_threshold": -(99 / 100 - 1)},
            trades=True,
        ),
        # Hourly bars, 0.125 days: k = floor(0.125*86400/3600) = 3; |r| = 0.01 < 0.05.
        _regime_case(
            "regime sideways counts on a sideways bar (k from hours)",
            _SHORT_CASE,
            {
                "regime": "sideways",
                "timeframe_seconds": 3600,
                "regime_lookback_days": 0.125,
                "regime_threshold": 0.05,
            },
            trades=True,
        ),
        _regime_case(
            "regime bull blocks a sideways bar",
            _SHORT_CASE,
            {"regime": "bull", "regime_threshold": 0.05},
            trades=False,
        ),
        # k = 4 > 3: the regime of bar 3 is undefined.
        _regime_case(
            "undefined regime blocks sideways",
            _SHORT_CASE,
            {"regime": "sideways", "regime_lookback_days": 4.0},
            trades=False,
        ),
        _regime_case(
            "undefined regime blocks bull",
            _SHORT_CASE,
            {"regime": "bull", "regime_lookback_days": 4.0, "regime_threshold": 0.005},
            trades=False,
        ),
        _regime_case(
            "regime any ignores an undefined regime",
            _SHORT_CASE,
            {"regime": "any", "regime_lookback_days": 4.0},
            trades=True,
        ),
    ]
)

CASES.append(
    Case(
        # No bar reaches the level lookback (n = 3 = N): no level, no trade. Returns 0, 0.
        "zero trades: metrics",
        ((100, 101, 99, 100, 10), (100, 101, 99, 100.5, 10), (100.5, 101, 99.5, 100, 10)),
        (),
        equity=(INIT, INIT, INIT),
        metrics={
            "net_profit": 0.0,
            "net_profit_pct": 0.0,
            "total_trades": 0,
            "long_trades": 0,
            "short_trades": 0,
            "win_rate": 0.0,
            "gross_win_rate": 0.0,
            "gross_profit": 0.0,
            "gross_loss": 0.0,
            "profit_factor": None,
            "avg_win": 0.0,
            "avg_loss": 0.0,
            "expectancy": 0.0,
            "largest_win": 0.0,
            "largest_loss": 0.0,
            "max_consecutive_losses": 0,
            "max_drawdown_pct": 0.0,
            "sharpe_ratio": 0.0,  # std of (0, 0) is 0
            "sortino_ratio": None,  # no negative return
            "cagr_pct": ((INIT / INIT) ** (PPY / 2) - 1) * 100,  # = 0
            "calmar_ratio": None,  # drawdown 0
            "exposure_pct": 0.0,
            "avg_holding_bars": 0.0,
        },
    )
)

CASES.append(
    Case(
        # trade_from = n-1: one bar in the window, no returns. The signal at 3 is outside.
        "no returns: sharpe 0, sortino, cagr and calmar null",
        _SHORT_CASE.bars,
        (),
        settings={"trade_from": 7},
        equity=(INIT,),
        metrics={
            "net_profit": 0.0,
            "total_trades": 0,
            "max_drawdown_pct": 0.0,
            "sharpe_ratio": 0.0,
            "sortino_ratio": None,
            "cagr_pct": None,
            "calmar_ratio": None,
            "exposure_pct": 0.0,
            "profit_factor": None,
        },
    )
)


def _equity_below_zero() -> Case:
    # The leverage-capped long of "leverage cap binds" (qty = 3*10000/F) gaps down to 50 on
    # bar 5: gross = qty*(50*(1-slip) - F) ~ -15000, so E[5] < 0 -> cagr and calmar null.
    # A second long sweep at bar 8 (S[8] = 49 touched by bars 5-7; L[8] = 48.5 <= 49*0.995 =
    # 48.755; V 30 >= 2*10; C[8] = 50 >= 49*1.001) fires with cash <= 0: no trade.
    t = opened("long", 3, LONG_P, LONG_ATR3, entry_open=99.5, atr_mult=0.1)
    bars = (
        *LONG_PREFIX,
        (99.5, 99.51, 99.0, 99.1, 10),  # 4: entry; H < TP 99.525, L > SL 98.7375
        (50, 51, 49, 50, 10),  # 5: O 50 <= SL -> exit at 50*(1-slip)
        (50, 51, 49, 50, 10),
        (50, 51, 49, 50, 10),
        (50, 51, 48.5, 50, 30),  # 8: long signal with cash < 0
        (50, 51, 49, 50, 10),
    )
    trade = closed(t, 5, 50 * (1 - SLIP), "stop_loss")
    cash_in = INIT - t["entry_fee"]
    e4 = cash_in + t["qty"] * (99.1 - t["fill_price"])
    e5 = (cash_in + trade["gross_pnl"]) - t["qty"] * 50 * (1 - SLIP) * FEE
    assert e5 < 0
    equity = (INIT, INIT, INIT, INIT, e4, e5, e5, e5, e5, e5)
    return Case(
        "equity below zero: cagr and calmar null, no trade without cash",
        bars,
        (trade,),
        params={"atr_multiplier_sl": 0.1},
        equity=equity,
        metrics={
            "max_drawdown_pct": (INIT - e5) / INIT * 100,  # the peak is E[0]
            "cagr_pct": None,
            "calmar_ratio": None,
            "net_profit_pct": (e5 - INIT) / INIT * 100,
        },
    )


CASES.append(_equity_below_zero())


def _trade_from_window() -> Case:
    # trade_from = 4. The short signal at 3 (SHORT_PREFIX) is before the window: ignored,
    # although it would have opened at 4. Bars 4-6 rebuild R = 102 (3 touches) and bar 7
    # sweeps it: H 103 >= 102.51, V 30 >= 2*(10+10)/2 (VA[4] = VA[5] = 20 keep bars 4, 5
    # quiet), C 101 <= 101.898 -> short signal at 7, inside the window.
    bars = (
        *SHORT_PREFIX,
        (101, 102, 100, 101, 10),  # 4
        (101, 102, 100, 101, 10),  # 5
        (101, 102, 100, 101, 10),  # 6
        (101, 103, 100, 101, 30),  # 7: short signal
        (100.5, 101, 99.5, 100, 10),  # 8: entry
        (100, 100.5, 99, 99.5, 10),  # 9: end of data
    )
    tr_quiet = max(102 - 100, abs(102 - 101), abs(100 - 101))  # TR[4] = TR[5] = TR[6] = 2
    atr4 = (SHORT_ATR3 * 1 + tr_quiet) / 2
    atr5 = (atr4 * 1 + tr_quiet) / 2
    atr6 = (atr5 * 1 + tr_quiet) / 2
    atr7 = (atr6 * 1 + max(103 - 100, abs(103 - 101), abs(100 - 101))) / 2
    t = opened("short", 7, 101.0, atr7, entry_open=100.5)
    trade = closed(t, 9, 99.5 * (1 + SLIP), "end_of_data")
    cash_in = INIT - t["entry_fee"]
    equity = (
        INIT,  # E[4] = initial capital
        INIT,
        INIT,
        INIT,
        cash_in + t["qty"] * (t["fill_price"] - 100),
        (cash_in + trade["gross_pnl"]) - t["qty"] * 99.5 * (1 + SLIP) * FEE,
    )
    return Case(
        "trade_from window: earlier signals ignored, equity starts at initial capital",
        bars,
        (trade,),
        settings={"trade_from": 4},
        equity=equity,
        metrics={"exposure_pct": 2 / 6 * 100, "total_trades": 1},
    )


CASES.append(_trade_from_window())


def _warmup_sweep() -> Case:
    # READING: sections 1-4 run over all bars, only the signal bar must be >= trade_from, so
    # a sweep in the warm-up (bar 3) whose reversal close comes inside the window (bar 4)
    # counts. reversal_candles 2: expires 4; C[4] = 101 <= 101.898.
    bars = (
        *SHORT_PREFIX[:3],
        (101.5, 103, 101.5, 102, 30),  # 3: sweep, C 102 > 101.898
        (102, 102.5, 100.5, 101, 10),  # 4: short signal (first bar of the window)
        (101, 101.5, 100, 100.5, 10),  # 5: entry
        (100.5, 101, 100, 100.5, 10),  # 6: end of data
    )
    atr3 = (SHORT_ATR2 * 1 + max(103 - 101.5, abs(103 - 101), abs(101.5 - 101))) / 2
    atr4 = (atr3 * 1 + max(102.5 - 100.5, abs(102.5 - 102), abs(100.5 - 102))) / 2
    t = opened("short", 4, 101.0, atr4, entry_open=101)
    return Case(
        "a warm-up sweep can signal inside the window",
        bars,
        (closed(t, 6, 100.5 * (1 + SLIP), "end_of_data"),),
        params={"reversal_candles": 2},
        settings={"trade_from": 4},
    )


CASES.append(_warmup_sweep())


def _equity_reaches_zero() -> Case:
    # No fees or slippage, leverage 2, risk 100%: qty = min(10000*1/2.625, 10000*2/100) = 200
    # at a fill of O[4] = 100. Bar 5 gaps to 50 <= SL 96.375: exit at 50, gross
    # 200*(50-100) = -10000, so cash and equity are exactly 0, and no trade can open again.
    # Returns: 0, 0, 0, 0, 0/10000 - 1 = -1, then 0/0 - 1 = NaN: Sharpe and Sortino are not
    # finite (null); CAGR is null as the final equity is 0.
    bars = (
        *LONG_PREFIX,
        (100, 100.5, 99.5, 100, 10),  # 4: entry at 100; equity 10000 + 200*(100-100)
        (50, 51, 49, 50, 10),  # 5: O 50 <= SL -> stop at the open
        (50, 51, 49, 50, 10),  # 6: equity 0
    )
    sl = LONG_P - LONG_ATR3
    trade = {
        "side": "long",
        "signal_bar": 3,
        "entry_bar": 4,
        "signal_price": LONG_P,
        "fill_price": 100.0,
        "stop_loss": sl,
        "take_profit": LONG_P + 2 * (LONG_P - sl),
        "qty": 200.0,
        "exit_bar": 5,
        "exit_price": 50.0,
        "exit_reason": "stop_loss",
        "gross_pnl": -10000.0,
        "net_pnl": -10000.0,
        "fees": 0.0,
    }
    return Case(
        "equity reaches exactly 0: the next return is 0/0",
        bars,
        (trade,),
        settings={"fee_rate": 0.0, "slippage": 0.0, "max_leverage": 2.0, "risk_per_trade": 1.0},
        equity=(INIT, INIT, INIT, INIT, INIT, 0.0, 0.0),
        metrics={
            "net_profit": -10000.0,
            "max_drawdown_pct": 100.0,
            "profit_factor": 0.0,
            "sharpe_ratio": None,
            "sortino_ratio": None,
            "cagr_pct": None,
            "calmar_ratio": None,
        },
    )


CASES.append(_equity_reaches_zero())


def _equity_crosses_zero() -> Case:
    # atr_multiplier_sl 30: SL = 99 - 30*2.625 = 20.25, TP = 99 + 2*78.75 = 256.5, neither
    # reached. Risk 200%, leverage 2: qty = min(10000*2/78.75, 10000*2/100) = 200.
    # Equity at the closes of 4, 5, 6: 10000 + 200*(50-100) = 0, 10000 + 200*(60-100) = 2000,
    # and 2000 after the end-of-data exit at C[6] = 60. The return of bar 5 is 2000/0 - 1 =
    # +inf: Sharpe and Sortino are null; CAGR and Calmar only need the final equity.
    bars = (
        *LONG_PREFIX,
        (100, 101, 49, 50, 10),  # 4: entry at 100, close 50
        (50, 61, 49, 60, 10),  # 5
        (60, 61, 59, 60, 10),  # 6: end of data
    )
    sl = LONG_P - 30 * LONG_ATR3
    trade = {
        "side": "long",
        "signal_bar": 3,
        "entry_bar": 4,
        "signal_price": LONG_P,
        "fill_price": 100.0,
        "stop_loss": sl,
        "take_profit": LONG_P + 2 * (LONG_P - sl),
        "qty": 200.0,
        "exit_bar": 6,
        "exit_price": 60.0,
        "exit_reason": "end_of_data",
        "gross_pnl": -8000.0,
        "net_pnl": -8000.0,
        "fees": 0.0,
    }
    cagr = ((2000.0 / INIT) ** (PPY / 6) - 1) * 100
    return Case(
        "equity crosses exactly 0 at a close: the next return is x/0",
        bars,
        (trade,),
        params={"atr_multiplier_sl": 30.0},
        settings={"fee_rate": 0.0, "slippage": 0.0, "max_leverage": 2.0, "risk_per_trade": 2.0},
        equity=(INIT, INIT, INIT, INIT, 0.0, 2000.0, 2000.0),
        metrics={
            "max_drawdown_pct": 100.0,
            "sharpe_ratio": None,
            "sortino_ratio": None,
            "cagr_pct": cagr,
            "calmar_ratio": cagr / 100.0,
        },
    )


CASES.append(_equity_crosses_zero())


def _no_risk_on_a_zero_stop_distance() -> Case:
    # atr_multiplier_sl 0 and risk_per_trade 0: qty = 10000*0/|99 - 99| = 0/0. READING:
    # risking nothing sizes 0, as at any other distance. SL = TP = 99; bar 4 opens at
    # 99.5 >= TP: a take profit at the open, with nothing gained or paid.
    bars = (
        *LONG_PREFIX,
        (99.5, 101, 99.2, 100.5, 10),  # 4: entry and exit at the open; L 99.2 > SL
        (100.5, 101, 100, 100.5, 10),
    )
    trade = {
        "side": "long",
        "signal_bar": 3,
        "entry_bar": 4,
        "signal_price": LONG_P,
        "fill_price": 99.5 * (1 + SLIP),
        "stop_loss": LONG_P,
        "take_profit": LONG_P,
        "qty": 0.0,
        "exit_bar": 4,
        "exit_price": 99.5,
        "exit_reason": "take_profit",
        "gross_pnl": 0.0,
        "net_pnl": 0.0,
        "fees": 0.0,
    }
    return Case(
        "risk_per_trade 0 on a zero stop distance sizes 0",
        bars,
        (trade,),
        params={"atr_multiplier_sl": 0.0},
        settings={"risk_per_trade": 0.0},
        equity=(INIT,) * 6,
        metrics={"net_profit": 0.0, "win_rate": 0.0, "sharpe_ratio": 0.0},
    )


CASES.append(_no_risk_on_a_zero_stop_distance())


# ------------------------------------------------------------------ the runner


def _run(runner: Runner, case: Case) -> tuple[Outcome, RunSettings]:
    settings = replace(BASE_SETTINGS, **case.settings)
    params = {**BASE_PARAMS, **case.params}
    candles = Candleset.from_bars(case.bars, settings.timeframe_seconds)
    return runner(candles, params, settings), settings


def _same(got: Any, want: Any, where: str) -> None:
    if want is None or isinstance(want, (str, bool)):
        assert got == want, where
    elif isinstance(want, int):
        assert got == want, f"{where}: got {got!r}, want {want!r}"
    else:
        assert got is not None, f"{where}: got None, want {want!r}"
        assert got == pytest.approx(want, rel=REL), where


@pytest.mark.parametrize("runner_name", list(RUNNERS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_spec_case(case: Case, runner_name: str) -> None:
    outcome, settings = _run(RUNNERS[runner_name], case)

    assert len(outcome.trades) == len(case.trades), outcome.trades
    for i, (got, want) in enumerate(zip(outcome.trades, case.trades, strict=True)):
        assert set(got) == set(want), f"trade {i} fields"
        for name, value in want.items():
            _same(got[name], value, f"trade {i} {name}")

    assert outcome.ambiguous_exits == case.ambiguous_exits

    n = len(case.bars)
    assert len(outcome.equity) == n - settings.trade_from
    assert outcome.equity[0] == settings.initial_capital
    final = settings.initial_capital + math.fsum(t["net_pnl"] for t in case.trades)
    assert outcome.equity[-1] == pytest.approx(final, rel=REL)
    if case.equity is not None:
        assert len(outcome.equity) == len(case.equity)
        for k, (got_e, want_e) in enumerate(zip(outcome.equity, case.equity, strict=True)):
            _same(got_e, want_e, f"equity[{k}]")

    assert set(outcome.metrics) == set(METRIC_NAMES)
    want_metrics: Metrics = {
        "total_trades": len(case.trades),
        "long_trades": sum(1 for t in case.trades if t["side"] == "long"),
        "short_trades": sum(1 for t in case.trades if t["side"] == "short"),
        **case.metrics,
    }
    for name, value in want_metrics.items():
        got_m = outcome.metrics[name]
        if name in INT_METRICS:
            assert got_m == value, f"{name}: {got_m!r}"
            assert not isinstance(got_m, float), f"{name} is a float: {got_m!r}"
        else:
            _same(got_m, value, f"metric {name}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_candles_are_valid(case: Case) -> None:
    for i, (o, h, lo, c, v) in enumerate(case.bars):
        assert min(o, h, lo, c) > 0, i
        assert v >= 0, i
        assert lo <= min(o, c), i
        assert h >= max(o, c), i


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
