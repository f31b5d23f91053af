"""A deliberately slow, literal reference for the liquidity sweep backtest.

Transcribes sections 1-6 and 8 of ``shared/spec/liquidity-sweep.md`` rule by rule, in
plain Python over Python floats, so that the fast engine has something independent to be
checked against. Nothing here is shared with ``tradepulse.quant``; obviousness beats speed.

Conventions: bars are 0-based rows of the arrays given; a decision at bar ``i`` uses bars
``0..i`` only. Every indicator is a list with ``None`` where the spec says "undefined".

Where the spec leaves room for more than one reading, a comment marked ``READING:`` names
the one chosen here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

PARAM_NAMES: tuple[str, ...] = (
    "key_level_lookback",
    "min_level_touches",
    "pierce_depth",
    "volume_spike_threshold",
    "reversal_candles",
    "min_distance_from_level",
    "atr_multiplier_sl",
    "risk_reward_ratio",
    "max_holding_periods",
)
INT_PARAMS: frozenset[str] = frozenset(
    {"key_level_lookback", "min_level_touches", "reversal_candles", "max_holding_periods"}
)
REGIMES: tuple[str, ...] = ("any", "bull", "bear", "sideways")

METRIC_NAMES: tuple[str, ...] = (
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
TRADE_FIELDS: tuple[str, ...] = (
    "side",
    "signal_bar",
    "entry_bar",
    "exit_bar",
    "signal_price",
    "fill_price",
    "stop_loss",
    "take_profit",
    "qty",
    "exit_price",
    "exit_reason",
    "gross_pnl",
    "net_pnl",
    "fees",
)


def _mean(values: Sequence[float]) -> float:
    # Spec section 7 lets means be computed any way accurate to ~1e-12; fsum is the most
    # accurate plain-Python way.
    return math.fsum(values) / len(values)


# --------------------------------------------------------------------------- section 1


def true_range(h: Sequence[float], lo: Sequence[float], c: Sequence[float]) -> list[float]:
    """TR[0] = H[0]-L[0]; TR[i] = max(H[i]-L[i], |H[i]-C[i-1]|, |L[i]-C[i-1]|)."""
    tr: list[float] = []
    for i in range(len(h)):
        if i == 0:
            tr.append(h[0] - lo[0])
        else:
            tr.append(max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])))
    return tr


def wilder_atr(tr: Sequence[float], n: int) -> list[float | None]:
    """ATR[n-1] = mean(TR[0..n-1]); ATR[i] = (ATR[i-1]*(n-1) + TR[i]) / n; None before n-1."""
    atr: list[float | None] = [None] * len(tr)
    for i in range(len(tr)):
        if i < n - 1:
            continue
        if i == n - 1:
            atr[i] = _mean(tr[0:n])
        else:
            previous = atr[i - 1]
            assert previous is not None
            atr[i] = (previous * (n - 1) + tr[i]) / n
    return atr


def volume_average(v: Sequence[float], w: int) -> list[float | None]:
    """VA[i] = mean(V[i-w..i-1]) (bar i excluded); None for i < w."""
    va: list[float | None] = [None] * len(v)
    for i in range(len(v)):
        if i >= w:
            va[i] = _mean(v[i - w : i])
    return va


def regime_bars(regime_lookback_days: float, timeframe_seconds: int) -> int:
    """k = floor(days*86400/timeframe_seconds), evaluated left to right as written."""
    return math.floor(regime_lookback_days * 86400 / timeframe_seconds)


def regimes(c: Sequence[float], k: int, threshold: float) -> list[str | None]:
    """r[i] = C[i]/C[i-k] - 1 -> 'bull' / 'bear' / 'sideways'; None for i < k."""
    out: list[str | None] = [None] * len(c)
    for i in range(len(c)):
        if i < k:
            continue
        r = c[i] / c[i - k] - 1
        # READING: the rule lists bull first; with threshold 0 and r == 0 both the bull and
        # the bear tests hold, and bull wins.
        if r >= +threshold:
            out[i] = "bull"
        elif r <= -threshold:
            out[i] = "bear"
        else:
            out[i] = "sideways"
    return out


# --------------------------------------------------------------------------- section 3


def levels(
    h: Sequence[float], lo: Sequence[float], lookback: int, touch_tolerance: float
) -> tuple[list[float | None], list[int], list[float | None], list[int]]:
    """Resistance/support over bars i-N..i-1 and their touch counts (0 where undefined)."""
    n = len(h)
    resistance: list[float | None] = [None] * n
    resistance_touches = [0] * n
    support: list[float | None] = [None] * n
    support_touches = [0] * n
    for i in range(n):
        if i < lookback:
            continue
        window = range(i - lookback, i)
        r = max(h[k] for k in window)
        s = min(lo[k] for k in window)
        resistance[i] = r
        support[i] = s
        for k in window:
            if h[k] >= r * (1 - touch_tolerance):
                resistance_touches[i] += 1
            if lo[k] <= s * (1 + touch_tolerance):
                support_touches[i] += 1
    return resistance, resistance_touches, support, support_touches


# --------------------------------------------------------------------------- section 4


def fired_signals(
    h: Sequence[float],
    lo: Sequence[float],
    c: Sequence[float],
    v: Sequence[float],
    params: Mapping[str, float | int],
    *,
    touch_tolerance: float,
    volume_window: int,
) -> tuple[list[bool], list[bool]]:
    """Bars at which a long / short signal fires (before the counting rules)."""
    n = len(c)
    lookback = int(params["key_level_lookback"])
    min_touches = int(params["min_level_touches"])
    pierce = float(params["pierce_depth"])
    spike = float(params["volume_spike_threshold"])
    reversal = int(params["reversal_candles"])
    min_distance = float(params["min_distance_from_level"])

    resistance, r_touches, support, s_touches = levels(h, lo, lookback, touch_tolerance)
    va = volume_average(v, volume_window)

    long_fired = [False] * n
    short_fired = [False] * n
    # Each side keeps at most one pending setup: (level, expires) or None.
    short_setup: tuple[float, int] | None = None
    long_setup: tuple[float, int] | None = None
    for j in range(n):
        vaj = va[j]
        volume_ok = vaj is not None and vaj > 0 and v[j] >= spike * vaj

        # Short, step 1: a sweep replaces any older setup.
        r = resistance[j]
        if r is not None and r_touches[j] >= min_touches and h[j] >= r * (1 + pierce) and volume_ok:
            short_setup = (r, j + reversal - 1)
        # Short, step 2 (same bar, after step 1).
        if short_setup is not None:
            level, expires = short_setup
            if j <= expires and c[j] <= level * (1 - min_distance):
                short_fired[j] = True
                short_setup = None
            elif j >= expires:
                short_setup = None  # not triggered by `expires`: dropped

        # Long mirror.
        s = support[j]
        if (
            s is not None
            and s_touches[j] >= min_touches
            and lo[j] <= s * (1 - pierce)
            and volume_ok
        ):
            long_setup = (s, j + reversal - 1)
        if long_setup is not None:
            level, expires = long_setup
            if j <= expires and c[j] >= level * (1 + min_distance):
                long_fired[j] = True
                long_setup = None
            elif j >= expires:
                long_setup = None
    return long_fired, short_fired


def counted_signals(
    long_fired: Sequence[bool],
    short_fired: Sequence[bool],
    atr: Sequence[float | None],
    bar_regimes: Sequence[str | None],
    *,
    regime: str,
    trade_from: int,
) -> list[str | None]:
    """'long' / 'short' at bars whose signal counts, else None."""
    out: list[str | None] = [None] * len(atr)
    for j in range(len(atr)):
        if not (long_fired[j] or short_fired[j]):
            continue
        if long_fired[j] and short_fired[j]:
            continue  # both sides on one bar: neither counts
        if j < trade_from:
            continue  # section 8: only signals inside the window count
        a = atr[j]
        if a is None or not a > 0:
            continue
        if regime != "any" and bar_regimes[j] != regime:
            continue  # an undefined regime (None) never equals the one asked for
        out[j] = "long" if long_fired[j] else "short"
    return out


# --------------------------------------------------------------------------- section 5


def simulate(
    o: Sequence[float],
    h: Sequence[float],
    lo: Sequence[float],
    c: Sequence[float],
    signals: Sequence[str | None],
    atr: Sequence[float | None],
    params: Mapping[str, float | int],
    *,
    trade_from: int,
    initial_capital: float,
    fee_rate: float,
    slippage: float,
    risk_per_trade: float,
    max_leverage: float,
) -> tuple[list[dict[str, Any]], list[float], list[bool], int]:
    """Trades, equity over bars trade_from..n-1, exposure flags for those bars, ambiguous."""
    n = len(c)
    atr_mult = float(params["atr_multiplier_sl"])
    rr = float(params["risk_reward_ratio"])
    max_hold = int(params["max_holding_periods"])

    trades: list[dict[str, Any]] = []
    equity: list[float] = []
    exposed: list[bool] = []
    ambiguous = 0
    cash = float(initial_capital)
    trade: dict[str, Any] | None = None  # the open trade, with its entry fee kept aside

    for k in range(n):
        exited_here = False
        # Exit checks for a trade whose entry bar e <= k (entered at the open of e).
        if trade is not None:
            side = trade["side"]
            sl = trade["stop_loss"]
            tp = trade["take_profit"]
            e = trade["entry_bar"]
            exit_price: float | None = None
            reason = ""
            if side == "long":
                if lo[k] <= sl and h[k] >= tp:
                    ambiguous += 1
                if o[k] <= sl:
                    exit_price, reason = o[k] * (1 - slippage), "stop_loss"
                elif lo[k] <= sl:
                    exit_price, reason = sl * (1 - slippage), "stop_loss"
                elif o[k] >= tp:
                    exit_price, reason = o[k], "take_profit"
                elif h[k] >= tp:
                    exit_price, reason = tp, "take_profit"
                elif k == e + max_hold - 1:
                    exit_price, reason = c[k] * (1 - slippage), "timeout"
                elif k == n - 1:
                    exit_price, reason = c[k] * (1 - slippage), "end_of_data"
            else:
                if h[k] >= sl and lo[k] <= tp:
                    ambiguous += 1
                if o[k] >= sl:
                    exit_price, reason = o[k] * (1 + slippage), "stop_loss"
                elif h[k] >= sl:
                    exit_price, reason = sl * (1 + slippage), "stop_loss"
                elif o[k] <= tp:
                    exit_price, reason = o[k], "take_profit"
                elif lo[k] <= tp:
                    exit_price, reason = tp, "take_profit"
                elif k == e + max_hold - 1:
                    exit_price, reason = c[k] * (1 + slippage), "timeout"
                elif k == n - 1:
                    exit_price, reason = c[k] * (1 + slippage), "end_of_data"
            if exit_price is not None:
                qty = trade["qty"]
                fill = trade["fill_price"]
                entry_fee = trade.pop("_entry_fee")
                exit_fee = qty * exit_price * fee_rate
                long_side = side == "long"
                gross = qty * (exit_price - fill) if long_side else qty * (fill - exit_price)
                cash = (cash + gross) - exit_fee
                trade["exit_bar"] = k
                trade["exit_price"] = exit_price
                trade["exit_reason"] = reason
                trade["gross_pnl"] = gross
                trade["net_pnl"] = gross - entry_fee - exit_fee
                trade["fees"] = entry_fee + exit_fee
                trades.append({name: trade[name] for name in TRADE_FIELDS})
                trade = None
                exited_here = True

        # Equity at the close of bar k: cash plus the open trade's unrealized PnL.
        if k >= trade_from:
            value = cash
            if trade is not None:
                if trade["side"] == "long":
                    value = cash + trade["qty"] * (c[k] - trade["fill_price"])
                else:
                    value = cash + trade["qty"] * (trade["fill_price"] - c[k])
            equity.append(value)
            # Exposed: a trade is open at the close of k or exited during k, so a trade
            # covers its bars entry_bar..exit_bar inclusive.
            exposed.append(trade is not None or exited_here)

        # A counted signal at bar k opens a trade at the open of k+1.
        side_signal = signals[k]
        if side_signal is None or trade is not None or k + 1 >= n or not cash > 0:
            continue
        a = atr[k]
        assert a is not None
        p = c[k]
        if side_signal == "long":
            sl = p - atr_mult * a
            tp = p + rr * (p - sl)
            fill = o[k + 1] * (1 + slippage)
        else:
            sl = p + atr_mult * a
            tp = p - rr * (sl - p)
            fill = o[k + 1] * (1 - slippage)
        sizing_equity = cash  # no trade is open at the close of k, so equity == cash
        risk = abs(p - sl)
        # READING: with atr_multiplier_sl = 0 the risk distance is 0; the uncapped size is
        # then taken as +infinity, so the leverage cap decides the size, unless
        # risk_per_trade is 0 as well: risking nothing sizes 0 at any distance.
        if risk > 0:
            qty = sizing_equity * risk_per_trade / risk
        else:
            qty = math.inf if risk_per_trade > 0 else 0.0
        qty = min(qty, sizing_equity * max_leverage / fill)
        entry_fee = qty * fill * fee_rate
        cash = cash - entry_fee
        trade = {
            "side": side_signal,
            "signal_bar": k,
            "entry_bar": k + 1,
            "signal_price": p,
            "fill_price": fill,
            "stop_loss": sl,
            "take_profit": tp,
            "qty": qty,
            "_entry_fee": entry_fee,
        }
    return trades, equity, exposed, ambiguous


# --------------------------------------------------------------------------- section 6


def _ratio(a: float, b: float) -> float:
    """a / b as IEEE arithmetic has it (Python raises on b == 0): equity that reached 0
    makes the next return +inf (or -inf), and 0 / 0 makes it NaN."""
    if b != 0:
        return a / b
    return math.nan if a == 0 else math.copysign(math.inf, a) * math.copysign(1.0, b)


def compute_metrics(
    trades: Sequence[Mapping[str, Any]],
    equity: Sequence[float],
    exposed: Sequence[bool],
    *,
    initial_capital: float,
    timeframe_seconds: int,
) -> dict[str, float | int | None]:
    """Every metric of section 6 over the given (already windowed) equity curve."""
    ppy = 365 * 86400 / timeframe_seconds
    returns = [_ratio(equity[k], equity[k - 1]) - 1 for k in range(1, len(equity))]
    nets = [float(t["net_pnl"]) for t in trades]
    winners = [x for x in nets if x > 0]
    losers = [x for x in nets if x < 0]
    total = len(trades)

    m: dict[str, float | int | None] = {}
    m["net_profit"] = equity[-1] - initial_capital
    m["net_profit_pct"] = (equity[-1] - initial_capital) / initial_capital * 100
    m["total_trades"] = total
    m["long_trades"] = sum(1 for t in trades if t["side"] == "long")
    m["short_trades"] = sum(1 for t in trades if t["side"] == "short")
    # READING: a rate, average or extreme over an empty group (no trades, or no winners /
    # no losers among the trades) is 0, extending the spec's "no trades" rule.
    m["win_rate"] = len(winners) / total * 100 if total else 0.0
    m["gross_win_rate"] = (
        sum(1 for t in trades if t["gross_pnl"] > 0) / total * 100 if total else 0.0
    )
    gross_profit = math.fsum(winners)
    gross_loss = abs(math.fsum(losers))
    m["gross_profit"] = gross_profit
    m["gross_loss"] = gross_loss
    m["profit_factor"] = gross_profit / gross_loss if gross_loss != 0 else None
    m["avg_win"] = _mean(winners) if winners else 0.0
    m["avg_loss"] = _mean(losers) if losers else 0.0
    m["expectancy"] = _mean(nets) if nets else 0.0
    m["largest_win"] = max(winners) if winners else 0.0
    m["largest_loss"] = min(losers) if losers else 0.0

    longest = run = 0
    for x in nets:
        if x < 0:
            run += 1
            longest = max(longest, run)
        else:
            run = 0  # a winner or a zero trade ends a run
    m["max_consecutive_losses"] = longest

    max_dd = 0.0
    peak = equity[0]
    for value in equity:
        peak = max(peak, value)
        max_dd = max(max_dd, (peak - value) / peak * 100)
    m["max_drawdown_pct"] = max_dd

    # READING: once equity has been exactly 0, the next return is +-inf or NaN, and so is
    # every formula over the returns: Sharpe and Sortino are null (not finite).
    defined = all(math.isfinite(x) for x in returns)
    sharpe: float | None = 0.0 if defined else None
    if defined and len(returns) >= 2:
        mean_r = _mean(returns)
        std = math.sqrt(math.fsum((x - mean_r) ** 2 for x in returns) / (len(returns) - 1))
        if std != 0:
            sharpe = mean_r / std * math.sqrt(ppy)
    m["sharpe_ratio"] = sharpe

    sortino: float | None = None
    if defined and any(x < 0 for x in returns):
        downside = math.sqrt(math.fsum(min(x, 0.0) ** 2 for x in returns) / len(returns))
        sortino = _mean(returns) / downside * math.sqrt(ppy)
    m["sortino_ratio"] = sortino

    cagr: float | None = None
    if returns and equity[-1] > 0:
        try:
            value = ((equity[-1] / initial_capital) ** (ppy / len(returns)) - 1) * 100
        except OverflowError:  # Python raises where IEEE gives inf: "not finite"
            value = math.inf
        cagr = value if math.isfinite(value) else None
    m["cagr_pct"] = cagr

    m["calmar_ratio"] = cagr / max_dd if cagr is not None and max_dd != 0 else None
    m["exposure_pct"] = sum(1 for x in exposed if x) / len(exposed) * 100
    m["avg_holding_bars"] = (
        _mean([float(t["exit_bar"] - t["entry_bar"] + 1) for t in trades]) if trades else 0.0
    )
    assert tuple(m) == METRIC_NAMES
    return m


# --------------------------------------------------------------------------- entry point


def _check_params(params: Mapping[str, float | int]) -> None:
    missing = set(PARAM_NAMES) - set(params)
    extra = set(params) - set(PARAM_NAMES)
    if missing or extra:
        raise ValueError(f"parameters: missing {sorted(missing)}, unknown {sorted(extra)}")
    for name in PARAM_NAMES:
        value = params[name]
        if name in INT_PARAMS:
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        elif not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")


def reference_backtest(
    open_time: Sequence[int],
    o: Sequence[float],
    h: Sequence[float],
    l: Sequence[float],  # noqa: E741 - the public name of the low column
    c: Sequence[float],
    v: Sequence[float],
    params: Mapping[str, float | int],
    *,
    timeframe_seconds: int = 300,
    regime: str = "any",
    trade_from: int = 0,
    atr_period: int = 14,
    volume_window: int = 20,
    touch_tolerance: float = 0.001,
    regime_lookback_days: float = 7,
    regime_threshold: float = 0.05,
    initial_capital: float = 10000.0,
    fee_rate: float = 0.001,
    slippage: float = 0.0005,
    risk_per_trade: float = 0.01,
    max_leverage: float = 3.0,
) -> dict[str, Any]:
    """Run the spec's backtest literally.

    Returns ``{"trades": [dict, ...], "equity": [E[trade_from], ..., E[n-1]],
    "metrics": {name: value or None}, "ambiguous_exits": int}``. ``open_time`` is accepted
    for symmetry with the engine; no rule of the spec reads it.
    """
    n = len(c)
    if not (len(open_time) == len(o) == len(h) == len(l) == n == len(v)):
        raise ValueError("candle columns differ in length")
    if n == 0:
        raise ValueError("no candles")
    # READING: the window must hold at least one bar (0 <= trade_from <= n-1).
    if not 0 <= trade_from < n:
        raise ValueError(f"trade_from must be in 0..{n - 1}, got {trade_from}")
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    if atr_period < 1 or volume_window < 1 or timeframe_seconds <= 0:
        raise ValueError("atr_period, volume_window and timeframe_seconds must be >= 1")
    _check_params(params)

    of = [float(x) for x in o]
    hf = [float(x) for x in h]
    lf = [float(x) for x in l]
    cf = [float(x) for x in c]
    vf = [float(x) for x in v]

    atr = wilder_atr(true_range(hf, lf, cf), atr_period)
    k = regime_bars(regime_lookback_days, timeframe_seconds)
    bar_regimes = regimes(cf, k, regime_threshold)
    long_fired, short_fired = fired_signals(
        hf, lf, cf, vf, params, touch_tolerance=touch_tolerance, volume_window=volume_window
    )
    signals = counted_signals(
        long_fired, short_fired, atr, bar_regimes, regime=regime, trade_from=trade_from
    )
    trades, equity, exposed, ambiguous = simulate(
        of,
        hf,
        lf,
        cf,
        signals,
        atr,
        params,
        trade_from=trade_from,
        initial_capital=initial_capital,
        fee_rate=fee_rate,
        slippage=slippage,
        risk_per_trade=risk_per_trade,
        max_leverage=max_leverage,
    )
    metrics = compute_metrics(
        trades,
        equity,
        exposed,
        initial_capital=initial_capital,
        timeframe_seconds=timeframe_seconds,
    )
    return {"trades": trades, "equity": equity, "metrics": metrics, "ambiguous_exits": ambiguous}
