"""Market data: import requests, their outcome, and the coverage of stored datasets."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradepulse.common.contracts.market import DatasetCoverage, DatasetKey
from tradepulse.gateway.schemas.common import (
    Body,
    ExchangeName,
    Moment,
    Symbol,
    Timeframe,
    iso_ms,
)


class IngestBody(Body):
    """Candles from an exchange (`since`/`until` optional), or from a file the ingest service
    can read (`path`: absolute, or under its INGEST_FILE_ROOT)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "exchange": "binanceus",
                    "symbol": "BTC/USDT",
                    "timeframe": "5m",
                    "since": "2024-01-01T00:00:00Z",
                },
                {
                    "exchange": "binance",
                    "symbol": "BTC/USDT",
                    "timeframe": "5m",
                    "path": "/data/binance_BTC-USDT_5m.csv.gz",
                },
            ]
        },
    )

    exchange: ExchangeName
    symbol: Symbol
    timeframe: Timeframe
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    since: Moment | None = None
    until: Moment | None = None

    @model_validator(mode="after")
    def _range(self) -> IngestBody:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self

    @property
    def dataset(self) -> DatasetKey:
        return DatasetKey(exchange=self.exchange, symbol=self.symbol, timeframe=self.timeframe)


class GapOut(BaseModel):
    after: str
    next: str
    missing: int


class DatasetOut(BaseModel):
    exchange: str
    symbol: str
    timeframe: str
    rows: int
    first: str
    last: str
    first_ms: int
    last_ms: int
    expected_rows: int
    gaps: int
    missing_candles: int
    largest_gap: GapOut | None
    content_hash: str
    updated_at: str


def dataset_out(c: DatasetCoverage) -> DatasetOut:
    gap = c.largest_gap
    return DatasetOut(
        exchange=c.dataset.exchange,
        symbol=c.dataset.symbol,
        timeframe=c.dataset.timeframe,
        rows=c.rows,
        first=iso_ms(c.first_ms),
        last=iso_ms(c.last_ms),
        first_ms=c.first_ms,
        last_ms=c.last_ms,
        expected_rows=c.expected_rows,
        gaps=c.gaps,
        missing_candles=c.missing_candles,
        largest_gap=None
        if gap is None
        else GapOut(after=iso_ms(gap.after_time), next=iso_ms(gap.next_time), missing=gap.missing),
        content_hash=c.content_hash,
        updated_at=c.updated_at,
    )


class CoverageOut(BaseModel):
    datasets: list[DatasetOut]


class IngestOut(BaseModel):
    request_id: str
    status: Literal["pending", "succeeded", "failed"]
    exchange: str
    symbol: str
    timeframe: str
    rows_received: int | None = None
    rows_added: int | None = None
    dataset: DatasetOut | None = Field(default=None, description="the dataset after the import")
    reason: str | None = Field(default=None, description="why the import was refused")
