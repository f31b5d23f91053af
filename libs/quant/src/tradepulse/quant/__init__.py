"""TradePulse quant core: candles in, trades and metrics out, exactly as the spec says.

Pure code: depends on numpy, pandas, numba and pyarrow only (no bus, database, web,
optimizer or exchange), so the trainer, the CLI and the tests all run the same backtest.
"""

from tradepulse.quant.backtest.engine import run_backtest
from tradepulse.quant.backtest.types import (
    SETTING_BOUNDS,
    BacktestResult,
    BacktestSettings,
    Bound,
    Trade,
)
from tradepulse.quant.candles import Candles, GapReport, load_candles, parse_timeframe
from tradepulse.quant.errors import CandleDataError, ParameterError, QuantError, WindowError
from tradepulse.quant.metrics import METRIC_NAMES, OBJECTIVES, Objective
from tradepulse.quant.strategies import STRATEGIES, get_strategy
from tradepulse.quant.strategies.base import REGIMES, Regime, Signals, Strategy
from tradepulse.quant.strategies.liquidity_sweep import (
    IndicatorSettings,
    LiquiditySweep,
    LiquiditySweepParams,
)
from tradepulse.quant.strategies.space import ParamSpec, SearchSpace
from tradepulse.quant.validation import (
    DeflatedSharpe,
    EvaluatedTrial,
    PboReport,
    deflated_sharpe,
    pbo,
    pbo_from_block_sums,
    probabilistic_sharpe,
    result_block_sums,
    seed_convergence,
    validation_report,
)
from tradepulse.quant.version import code_version
from tradepulse.quant.windows import Window, last_window, range_window

__all__ = [
    "METRIC_NAMES",
    "OBJECTIVES",
    "REGIMES",
    "SETTING_BOUNDS",
    "STRATEGIES",
    "BacktestResult",
    "BacktestSettings",
    "Bound",
    "CandleDataError",
    "Candles",
    "DeflatedSharpe",
    "EvaluatedTrial",
    "GapReport",
    "IndicatorSettings",
    "LiquiditySweep",
    "LiquiditySweepParams",
    "Objective",
    "ParamSpec",
    "ParameterError",
    "PboReport",
    "QuantError",
    "Regime",
    "SearchSpace",
    "Signals",
    "Strategy",
    "Trade",
    "Window",
    "WindowError",
    "code_version",
    "deflated_sharpe",
    "get_strategy",
    "last_window",
    "load_candles",
    "parse_timeframe",
    "pbo",
    "pbo_from_block_sums",
    "probabilistic_sharpe",
    "range_window",
    "result_block_sums",
    "run_backtest",
    "seed_convergence",
    "validation_report",
]
