"""One calling convention for the reference and the engine, so each test case is written once.

A runner takes a :class:`Candleset`, the nine strategy parameters by name and a
:class:`RunSettings`, and returns an :class:`Outcome` of plain Python values. The engine
runner skips (``pytest.importorskip``) while ``tradepulse.quant`` cannot be imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pytest

from tests.reference.sweep_reference import (
    INT_PARAMS,
    PARAM_NAMES,
    TRADE_FIELDS,
    reference_backtest,
)

ENGINE_MISSING = "the engine (tradepulse.quant) is not importable yet"


@dataclass(frozen=True)
class Candleset:
    """Candle columns; ``open_time`` in epoch milliseconds."""

    open_time: Sequence[int]
    open: Sequence[float]
    high: Sequence[float]
    low: Sequence[float]
    close: Sequence[float]
    volume: Sequence[float]

    def __len__(self) -> int:
        return len(self.close)

    @classmethod
    def from_bars(
        cls, bars: Sequence[tuple[float, float, float, float, float]], timeframe_seconds: int
    ) -> Candleset:
        """Bars as (O, H, L, C, V) rows, opening every ``timeframe_seconds`` from epoch 0."""
        return cls(
            open_time=[i * timeframe_seconds * 1000 for i in range(len(bars))],
            open=[float(b[0]) for b in bars],
            high=[float(b[1]) for b in bars],
            low=[float(b[2]) for b in bars],
            close=[float(b[3]) for b in bars],
            volume=[float(b[4]) for b in bars],
        )


@dataclass(frozen=True)
class RunSettings:
    """Everything besides candles and parameters; the defaults are the spec's."""

    timeframe_seconds: int = 300
    regime: str = "any"
    trade_from: int = 0
    atr_period: int = 14
    volume_window: int = 20
    touch_tolerance: float = 0.001
    regime_lookback_days: float = 7.0
    regime_threshold: float = 0.05
    initial_capital: float = 10000.0
    fee_rate: float = 0.001
    slippage: float = 0.0005
    risk_per_trade: float = 0.01
    max_leverage: float = 3.0


@dataclass(frozen=True)
class Outcome:
    trades: list[dict[str, Any]]
    equity: list[float]
    metrics: dict[str, float | int | None]
    ambiguous_exits: int


Runner = Callable[[Candleset, Mapping[str, float | int], RunSettings], Outcome]


def typed_params(params: Mapping[str, float | int]) -> dict[str, float | int]:
    """The nine parameters with ints as int and the rest as float."""
    return {
        name: int(params[name]) if name in INT_PARAMS else float(params[name])
        for name in PARAM_NAMES
    }


def run_reference(
    candles: Candleset, params: Mapping[str, float | int], settings: RunSettings
) -> Outcome:
    result = reference_backtest(
        candles.open_time,
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        candles.volume,
        typed_params(params),
        **asdict(settings),
    )
    return Outcome(
        trades=result["trades"],
        equity=result["equity"],
        metrics=result["metrics"],
        ambiguous_exits=result["ambiguous_exits"],
    )


def run_engine(
    candles: Candleset, params: Mapping[str, float | int], settings: RunSettings
) -> Outcome:
    quant = pytest.importorskip("tradepulse.quant", reason=ENGINE_MISSING)
    engine_candles = quant.Candles.from_arrays(
        open_time=np.asarray(candles.open_time, dtype=np.int64),
        open=np.asarray(candles.open, dtype=np.float64),
        high=np.asarray(candles.high, dtype=np.float64),
        low=np.asarray(candles.low, dtype=np.float64),
        close=np.asarray(candles.close, dtype=np.float64),
        volume=np.asarray(candles.volume, dtype=np.float64),
        timeframe_seconds=settings.timeframe_seconds,
    )
    strategy = quant.LiquiditySweep(
        quant.IndicatorSettings(
            atr_period=settings.atr_period,
            volume_window=settings.volume_window,
            touch_tolerance=settings.touch_tolerance,
            regime_lookback_days=float(settings.regime_lookback_days),
            regime_threshold=settings.regime_threshold,
        )
    )
    result = quant.run_backtest(
        engine_candles,
        strategy,
        quant.LiquiditySweepParams(**typed_params(params)),
        quant.BacktestSettings(
            initial_capital=settings.initial_capital,
            fee_rate=settings.fee_rate,
            slippage=settings.slippage,
            risk_per_trade=settings.risk_per_trade,
            max_leverage=settings.max_leverage,
        ),
        regime=settings.regime,
        trade_from=settings.trade_from,
    )
    # The parts of the result's contract that the comparisons below would not notice.
    assert isinstance(result.trades, tuple), type(result.trades)
    assert isinstance(result.equity, np.ndarray), type(result.equity)
    assert result.equity.dtype == np.float64, result.equity.dtype
    assert isinstance(result.fingerprint, str)
    assert re.fullmatch(r"[0-9a-f]{64}", result.fingerprint), result.fingerprint
    return Outcome(
        trades=[{name: getattr(t, name) for name in TRADE_FIELDS} for t in result.trades],
        equity=[float(x) for x in result.equity],
        metrics=dict(result.metrics),
        ambiguous_exits=result.ambiguous_exits,
    )


RUNNERS: dict[str, Runner] = {"reference": run_reference, "engine": run_engine}
