"""The backtest engine: a strategy's signals through execution and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradepulse.quant.backtest.kernel import (
    T_ENTRY_BAR,
    T_EXIT_BAR,
    T_GROSS,
    T_NET,
    T_SIDE,
    simulate_nb,
)
from tradepulse.quant.backtest.types import BacktestResult, BacktestSettings
from tradepulse.quant.candles import Candles
from tradepulse.quant.errors import ParameterError, WindowError
from tradepulse.quant.metrics import metrics_nb, metrics_to_dict, periods_per_year
from tradepulse.quant.strategies.base import REGIMES, Regime, Strategy


def run_backtest(
    candles: Candles,
    strategy: Strategy[Any, Any],
    params: Any,
    settings: BacktestSettings | None = None,
    *,
    regime: Regime = "any",
    trade_from: int = 0,
    prepared: Any = None,
) -> BacktestResult:
    """Backtest `params` over `candles`, trading bars trade_from..n-1 (spec section 8).

    `params` is the strategy's parameter object or a mapping of names to values. Pass
    `prepared` (from `strategy.prepare(candles)`) to reuse the per-dataset work across trials.
    """
    settings = settings or BacktestSettings()
    if regime not in REGIMES:
        raise ParameterError("regime", f"must be one of {', '.join(REGIMES)}, got {regime!r}")
    n = len(candles)
    if not 0 <= trade_from < n:
        raise WindowError(f"trade_from {trade_from} is outside the {n} candles given")
    if isinstance(params, Mapping):
        params = strategy.parse_params(params)
    if prepared is None:
        prepared = strategy.prepare(candles, [params])
    signals = strategy.signals(prepared, params, regime=regime, trade_from=trade_from)
    equity, ints, floats, _, ambiguous, exposed = simulate_nb(
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        signals.bar,
        signals.direction,
        signals.stop_loss,
        signals.take_profit,
        signals.max_holding_bars,
        settings.initial_capital,
        settings.fee_rate,
        settings.slippage,
        settings.risk_per_trade,
        settings.max_leverage,
        trade_from,
    )
    values = metrics_nb(
        equity,
        ints[:, T_SIDE],
        ints[:, T_ENTRY_BAR],
        ints[:, T_EXIT_BAR],
        floats[:, T_GROSS],
        floats[:, T_NET],
        exposed,
        settings.initial_capital,
        periods_per_year(candles.timeframe_seconds),
    )
    return BacktestResult(
        trade_ints=ints,
        trade_floats=floats,
        open_time=candles.open_time,
        first_row=candles.first_row,
        equity=equity,
        metrics=metrics_to_dict(values),
        ambiguous_exits=ambiguous,
    )
