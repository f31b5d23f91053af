"""What the dashboard's charts read: a configuration's backtest, a walk-forward job's stitched
out-of-sample equity, a range of candles."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tradepulse.common.contracts.charts import EquityCurve, TradeView
from tradepulse.common.contracts.training import MetricValues


class BacktestOut(BaseModel):
    config_id: str
    fingerprint: str = Field(description="of the re-run over the configuration's whole window")
    matches_config: bool = Field(description="the fingerprint is the configuration's")
    metrics: MetricValues
    trades_total: int = Field(description="trades entered in [start, end)")
    offset: int
    limit: int
    trades: list[TradeView]
    equity: EquityCurve
    compute_ms: float = Field(description="the trainer's time: backtest and downsampling")


class WalkForwardEquityOut(BaseModel):
    job_id: str
    fingerprint: str = Field(description="of the stitched out-of-sample record re-run")
    matches_report: bool = Field(
        description="the fingerprint is the one in the job's walk-forward report (`oos`)"
    )
    metrics: MetricValues = Field(description="the stitched record's, from the initial capital")
    trades: int = Field(description="the folds' test trades")
    equity: EquityCurve
    compute_ms: float = Field(description="the trainer's time: fold tests, stitching, thinning")


class CandlesOut(BaseModel):
    exchange: str
    symbol: str
    timeframe: str
    count: int
    time: list[int] = Field(description="open times, ms since the epoch")
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]
    next_start: str | None = Field(
        description="ISO 8601 open time to ask from for the rest of the range; null at its end"
    )


class GapSpanOut(BaseModel):
    after: str = Field(description="open time of the candle before the gap")
    next: str = Field(description="open time of the candle after it")
    after_ms: int
    next_ms: int
    missing: int


class GapsOut(BaseModel):
    exchange: str
    symbol: str
    timeframe: str
    total: int = Field(description="every gap of the dataset; `gaps` lists the first 5,000")
    gaps: list[GapSpanOut]
