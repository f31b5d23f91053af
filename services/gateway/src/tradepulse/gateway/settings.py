"""The gateway's settings: the shared ones plus HTTP, API keys, body limits and waits."""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from tradepulse.common.settings import CommonSettings


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# Keys printed in this repository (docker-compose's development key, the example secret):
# anyone can read them, so production refuses them.
PUBLISHED_KEYS = {key_hash(k): k for k in ("tradepulse-dev-key", "change-me")}


class GatewaySettings(CommonSettings):
    host: str = Field(default="127.0.0.1", validation_alias="GATEWAY_HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="GATEWAY_PORT")
    # Only the sha256 digests of TRADEPULSE_API_KEYS are kept: the keys themselves are hashed
    # while the settings are parsed and never stored.
    api_key_hashes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="TRADEPULSE_API_KEYS", repr=False
    )
    open_reads: bool = Field(
        default=False,
        validation_alias="GATEWAY_OPEN_READS",
        description="true: GET endpoints answer without an API key",
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1, validation_alias="GATEWAY_MAX_BODY_BYTES")
    max_upload_bytes: int = Field(
        default=200_000_000, ge=1, validation_alias="GATEWAY_MAX_UPLOAD_BYTES"
    )
    request_timeout_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias="GATEWAY_REQUEST_TIMEOUT_S",
        description="how long a read waits for the service that answers it",
    )
    publish_timeout_s: float = Field(
        default=2.0,
        gt=0,
        validation_alias="GATEWAY_PUBLISH_TIMEOUT_S",
        description="how long one JetStream publish waits for its ack (3 attempts)",
    )
    ingest_wait_s: float = Field(
        default=10.0,
        ge=0,
        validation_alias="GATEWAY_INGEST_WAIT_S",
        description="how long POST /data/ingest and /data/upload wait for the outcome before 202",
    )
    cancel_wait_s: float = Field(
        default=2.0,
        ge=0,
        validation_alias="GATEWAY_CANCEL_WAIT_S",
        description="how long POST .../cancel waits for a running job to stop before 202",
    )
    recent_job_ttl_s: float = Field(
        default=60.0,
        gt=0,
        validation_alias="GATEWAY_RECENT_JOB_TTL_S",
        description="a job accepted this recently is shown as queued before a trainer records it",
    )
    sse_poll_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias="GATEWAY_SSE_POLL_S",
        description="a live stream with no event for this long sends a keep-alive and re-reads the job",
    )

    @field_validator("api_key_hashes", mode="before")
    @classmethod
    def _hash_keys(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            keys = [k.strip() for k in value.split(",") if k.strip()]
            return tuple(key_hash(k) for k in keys)
        if isinstance(value, list | tuple) and not value:
            return ()
        raise ValueError("TRADEPULSE_API_KEYS must be comma-separated keys")

    @property
    def production(self) -> bool:
        return self.environment.lower() in ("production", "prod")


class ConfigurationError(Exception):
    """Settings the gateway refuses to start with; the message says what to set."""


def check_startable(settings: GatewaySettings) -> None:
    if settings.production and not settings.api_key_hashes:
        raise ConfigurationError(
            "TP_ENV=production and TRADEPULSE_API_KEYS is empty: the gateway has no default key; "
            "set TRADEPULSE_API_KEYS to one or more comma-separated keys"
        )
    published = [PUBLISHED_KEYS[h] for h in settings.api_key_hashes if h in PUBLISHED_KEYS]
    if settings.production and published:
        raise ConfigurationError(
            f"TP_ENV=production and TRADEPULSE_API_KEYS holds {', '.join(map(repr, published))},"
            " a key published in the TradePulse repository; generate your own, e.g. with"
            " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
