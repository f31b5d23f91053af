"""Ingest options on top of the common settings; built in main(), never at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tradepulse.common.settings import CommonSettings


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
    file_root: Path | None = Field(
        default=None,
        validation_alias="INGEST_FILE_ROOT",
        description="when set, files are read only from inside this directory",
    )
