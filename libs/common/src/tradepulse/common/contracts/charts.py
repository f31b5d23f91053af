"""Messages behind the dashboard's charts: a configuration's backtest re-run, a walk-forward
job's stitched out-of-sample equity, a candle range."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tradepulse.common.contracts.base import ID_PATTERN, Contract, Message
from tradepulse.common.contracts.market import DatasetKey, GapInfo
from tradepulse.common.contracts.training import (
    BacktestSettingsModel,
    DataWindow,
    MetricValues,
    ParamValues,
)

DEFAULT_EQUITY_POINTS = 2_000
MAX_EQUITY_POINTS = 20_000
MIN_EQUITY_POINTS = 10
MAX_TRADES_PER_REPLY = 1_000
MAX_CANDLES_PER_REPLY = 5_000
MAX_GAPS_PER_REPLY = 5_000
# How the equity curve is thinned (tradepulse.quant.downsample.extrema_indices).
DOWNSAMPLING = "minmax-per-bucket"


def _ordered(start_ms: int | None, end_ms: int | None) -> None:
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ValueError("end_ms must be after start_ms")


class RunBacktest(Message):
    """Re-run a configuration (strategy, params, settings, regime) on its stored window.

    The backtest always covers the whole window, so its fingerprint is the configuration's;
    `start_ms`/`end_ms` (open times, end exclusive) only choose which trades (by entry time) and
    which part of the equity curve the reply carries. Trades are paged by `trade_offset` and
    `trade_limit`, in entry order.
    """

    strategy: str
    params: ParamValues
    window: DataWindow
    settings: BacktestSettingsModel
    regime: str
    start_ms: int | None = Field(default=None, ge=0)
    end_ms: int | None = Field(default=None, ge=0)
    points: int = Field(default=DEFAULT_EQUITY_POINTS, ge=MIN_EQUITY_POINTS, le=MAX_EQUITY_POINTS)
    trade_offset: int = Field(default=0, ge=0)
    trade_limit: int = Field(default=MAX_TRADES_PER_REPLY, ge=1, le=MAX_TRADES_PER_REPLY)

    @model_validator(mode="after")
    def _range(self) -> RunBacktest:
        _ordered(self.start_ms, self.end_ms)
        return self


class TradeView(Contract):
    """One round trip; times are open times (ms), bars row numbers of the dataset."""

    side: Literal["long", "short"]
    signal_bar: int
    entry_bar: int
    exit_bar: int
    signal_time: int
    entry_time: int
    exit_time: int
    signal_price: float
    fill_price: float
    stop_loss: float
    take_profit: float
    qty: float
    exit_price: float
    exit_reason: str
    gross_pnl: float
    net_pnl: float
    fees: float


class EquityCurve(Contract):
    """The equity after each bar (bar open time, ms) and its drawdown from the running peak
    (a fraction <= 0), thinned to at most the asked number of points by `method`; `bars` is
    how many bars the range had before thinning."""

    method: str = DOWNSAMPLING
    bars: int = Field(ge=0)
    time: list[int]
    equity: list[float]
    drawdown: list[float]


class BacktestReply(Message):
    fingerprint: str
    metrics: MetricValues
    trades_total: int = Field(ge=0, description="trades entered inside the asked range")
    trade_offset: int = Field(ge=0)
    trades: list[TradeView]
    equity: EquityCurve
    compute_ms: float = Field(ge=0, description="the backtest and the thinning, in the trainer")


class GetWalkForwardEquity(Message):
    """A completed walk-forward job's stitched out-of-sample equity (validation spec section
    3): its trainer re-runs each fold's best parameters on the fold's test span with the
    carried capital and stitches them as the job's report did, then thins the curve to at
    most `points` as RunBacktest's."""

    job_id: str = Field(pattern=ID_PATTERN)
    points: int = Field(default=DEFAULT_EQUITY_POINTS, ge=MIN_EQUITY_POINTS, le=MAX_EQUITY_POINTS)


class WalkForwardEquityReply(Message):
    """The stitched record re-run: its fingerprint and metrics, which `matches_report` says
    are the job's stored out-of-sample ones, its trade count and its thinned equity over
    the out-of-sample bars (`s + I .. n-1`)."""

    job_id: str
    fingerprint: str
    matches_report: bool
    metrics: MetricValues
    trades: int = Field(ge=0)
    equity: EquityCurve
    compute_ms: float = Field(ge=0, description="the fold tests, the stitching and the thinning")


class GetCandles(Message):
    """Candles of a dataset with start_ms <= open time < end_ms, oldest first, at most `limit`."""

    dataset: DatasetKey
    start_ms: int | None = Field(default=None, ge=0)
    end_ms: int | None = Field(default=None, ge=0)
    limit: int = Field(default=MAX_CANDLES_PER_REPLY, ge=1, le=MAX_CANDLES_PER_REPLY)

    @model_validator(mode="after")
    def _range(self) -> GetCandles:
        _ordered(self.start_ms, self.end_ms)
        return self


class CandlesReply(Message):
    """Columns of the candles found; `next_start_ms` is the open time to ask from for the
    rest of the range (None when the range ended here). `found` is False for a dataset the
    ingest service does not have."""

    dataset: DatasetKey
    found: bool
    time: list[int] = Field(default_factory=list)
    open: list[float] = Field(default_factory=list)
    high: list[float] = Field(default_factory=list)
    low: list[float] = Field(default_factory=list)
    close: list[float] = Field(default_factory=list)
    volume: list[float] = Field(default_factory=list)
    next_start_ms: int | None = None


class GetGaps(Message):
    """Every gap of a dataset as its last import found them (in time order), at most
    MAX_GAPS_PER_REPLY: the first ones."""

    dataset: DatasetKey


class GapsReply(Message):
    dataset: DatasetKey
    found: bool
    total: int = Field(default=0, ge=0)
    gaps: list[GapInfo] = Field(default_factory=list, max_length=MAX_GAPS_PER_REPLY)
