"""Market data messages: ingest requests, the CandlesIngested event, coverage queries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tradepulse.common.contracts.base import Contract, Message

# The names of a dataset as stored (exchange in lower case, symbol in upper case); the HTTP
# API normalises what users write to these before checking them.
EXCHANGE_PATTERN = r"^[a-z0-9_.-]{1,64}$"
SYMBOL_PATTERN = r"^[A-Z0-9._-]+/[A-Z0-9._-]+(:[A-Z0-9._-]+)?$"
SYMBOL_MAX_LENGTH = 64
TIMEFRAME_PATTERN = r"^[1-9][0-9]{0,5}[mhdw]$"


class DatasetKey(Contract):
    exchange: str = Field(pattern=EXCHANGE_PATTERN)
    symbol: str = Field(max_length=SYMBOL_MAX_LENGTH, pattern=SYMBOL_PATTERN)
    timeframe: str = Field(pattern=TIMEFRAME_PATTERN)


class IngestRequested(Message):
    """Import candles from a file the ingest service can read, from an uploaded file (an
    object in the uploads bucket, named by `path`), or pull them from an exchange."""

    request_id: str = Field(min_length=1, max_length=100)
    dataset: DatasetKey
    source: Literal["file", "upload", "exchange"]
    path: str | None = None
    since_ms: int | None = Field(default=None, ge=0)
    until_ms: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _source_fields(self) -> IngestRequested:
        if self.source in ("file", "upload") and not self.path:
            raise ValueError(f"path is required when source is {self.source!r}")
        if self.source == "exchange" and self.path:
            raise ValueError("path is only for sources 'file' and 'upload'")
        if (
            self.since_ms is not None
            and self.until_ms is not None
            and self.until_ms <= self.since_ms
        ):
            raise ValueError("until_ms must be after since_ms")
        return self


class GapInfo(Contract):
    after_time: int
    next_time: int
    missing: int


class DatasetCoverage(Contract):
    dataset: DatasetKey
    rows: int
    first_ms: int
    last_ms: int
    expected_rows: int
    gaps: int
    missing_candles: int
    largest_gap: GapInfo | None
    content_hash: str
    snapshot: str = Field(description="object name of the dataset snapshot in the candles bucket")
    updated_at: str


class CandlesIngested(Message):
    request_id: str
    coverage: DatasetCoverage
    rows_received: int
    rows_added: int


class IngestFailed(Message):
    request_id: str
    dataset: DatasetKey
    reason: str


class GetIngest(Message):
    """Ask ingest for the recorded outcome of an import request."""

    request_id: str = Field(min_length=1, max_length=100)


class IngestReply(Message):
    """An import's outcome as ingest recorded it; neither field while it has no record (not
    carried out yet, or never received)."""

    request_id: str
    succeeded: CandlesIngested | None = None
    failed: IngestFailed | None = None


class CoverageQuery(Message):
    exchange: str | None = None
    symbol: str | None = None
    timeframe: str | None = None


class CoverageReply(Message):
    datasets: list[DatasetCoverage]
