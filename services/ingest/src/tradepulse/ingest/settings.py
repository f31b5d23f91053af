"""Ingest options on top of the common settings; built in main(), never at import time."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from tradepulse.common.settings import CommonSettings
from tradepulse.quant.candles import LoadLimits


class IngestSettings(CommonSettings):
    exchange_timeout_ms: int = Field(
        default=10_000, ge=100, validation_alias="INGEST_EXCHANGE_TIMEOUT_MS"
    )
    page_limit: int = Field(
        default=1000,
        ge=1,
        le=5000,
        validation_alias="INGEST_PAGE_LIMIT",
        description="candles asked for per fetch_ohlcv call",
    )
    exchange_attempts: int = Field(
        default=6,
        ge=1,
        le=20,
        validation_alias="INGEST_EXCHANGE_ATTEMPTS",
        description="tries per exchange call when it fails with a network error",
    )
    exchange_backoff_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        validation_alias="INGEST_EXCHANGE_BACKOFF_S",
        description="first retry delay; doubles per attempt, capped at 30 s",
    )
    max_candles: int = Field(
        default=2_000_000,
        ge=1,
        validation_alias="INGEST_MAX_CANDLES",
        description="largest range one exchange request may span",
    )
    default_lookback: int = Field(
        default=1000,
        ge=1,
        validation_alias="INGEST_DEFAULT_LOOKBACK",
        description="candles pulled for a new dataset when the request gives no since_ms",
    )
    redelivery_delay_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        validation_alias="INGEST_REDELIVERY_DELAY_S",
        description="delay before a failed request is delivered again; doubles per delivery",
    )
    file_root: str | None = Field(
        default=None,
        validation_alias="INGEST_FILE_ROOT",
        description=(
            "the folders imports by server path may read, separated by ':'; unset, imports by "
            "path are refused (uploads are not affected)"
        ),
    )
    max_rows: int = Field(
        default=50_000_000,
        ge=1,
        validation_alias="INGEST_MAX_ROWS",
        description="candles one file or upload may hold; past it the import is refused",
    )
    max_decompressed_bytes: int = Field(
        default=4 * 1024**3,
        ge=1,
        validation_alias="INGEST_MAX_DECOMPRESSED_BYTES",
        description=(
            "bytes a file may become once read: CSV text after gzip, or a Parquet file's "
            "decoded candle columns (48 bytes a row); past it the import is refused"
        ),
    )

    def file_roots(self) -> tuple[Path, ...]:
        return tuple(Path(part) for part in (self.file_root or "").split(os.pathsep) if part)

    def load_limits(self) -> LoadLimits:
        return LoadLimits(
            max_rows=self.max_rows, max_decompressed_bytes=self.max_decompressed_bytes
        )
