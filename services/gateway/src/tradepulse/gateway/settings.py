"""The gateway's settings: the shared ones plus HTTP, API keys, body limits and waits."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from tradepulse.common.contracts.registry import REGISTRY_ACTOR
from tradepulse.common.settings import CommonSettings
from tradepulse.gateway.auth import NamedKey, key_hash, unnamed

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


# Keys printed in this repository (docker-compose's development key, the example secret):
# anyone can read them, so production refuses them.
PUBLISHED_KEYS = {key_hash(k): k for k in ("tradepulse-dev-key", "change-me")}


def parse_keys(value: str) -> tuple[NamedKey, ...]:
    """TRADEPULSE_API_KEYS: comma-separated entries, each `key` or `name=key`.

    An entry holding `=` is always `name=key` (split at the first `=`), so a key that contains
    `=` must be given a name (`abc==` is refused, not read as the key `=` named `abc`). Names
    are letters, digits and `._@-` (at most 64, not starting with a sign) and unique, unnamed
    keys included; `registry` is the registry's own name for its automatic changes and may not
    be taken. The messages never repeat a key.
    """
    keys: list[NamedKey] = []
    for position, entry in enumerate((e.strip() for e in value.split(",")), start=1):
        if not entry:
            continue
        name, equals, key = (part.strip() for part in entry.partition("="))
        if not equals:
            key = entry
            name = unnamed(key_hash(key))
        elif not KEY_NAME.match(name) or not key or key.startswith("="):
            raise ValueError(
                f"TRADEPULSE_API_KEYS entry {position} is not `name=key`: a name is letters, "
                "digits and ._@- (up to 64), a key follows the first '='; a key containing "
                "'=' must be given a name"
            )
        elif name == REGISTRY_ACTOR:
            raise ValueError(
                f"TRADEPULSE_API_KEYS entry {position}: {REGISTRY_ACTOR!r} names the "
                "registry's own status changes; give the key another name"
            )
        digest = key_hash(key)
        if any(k.digest == digest for k in keys):
            raise ValueError(f"TRADEPULSE_API_KEYS entry {position} repeats an earlier key")
        if any(k.name == name for k in keys):
            raise ValueError(
                f"TRADEPULSE_API_KEYS entry {position}: the name {name!r} is taken by an "
                "earlier key; every key needs its own name"
            )
        keys.append(NamedKey(name, digest))
    return tuple(keys)


class GatewaySettings(CommonSettings):
    # A refused TRADEPULSE_API_KEYS must not be echoed into the error, the log or a terminal.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    host: str = Field(default="127.0.0.1", validation_alias="GATEWAY_HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="GATEWAY_PORT")
    # Only the names and sha256 digests of TRADEPULSE_API_KEYS are kept: the keys themselves
    # are hashed while the settings are parsed and never stored.
    api_keys: Annotated[tuple[NamedKey, ...], NoDecode] = Field(
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
    max_header_bytes: int = Field(
        default=16_384,
        ge=1024,
        validation_alias="GATEWAY_MAX_HEADER_BYTES",
        description="a request line and headers larger than this are refused (400)",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        validation_alias="GATEWAY_HEADER_TIMEOUT_S",
        description="a connection whose request headers take longer than this is closed",
    )
    max_connections: int = Field(
        default=2000,
        ge=1,
        validation_alias="GATEWAY_MAX_CONNECTIONS",
        description="past this many connections, the oldest still sending headers is closed",
    )
    keep_alive_s: int = Field(
        default=5,
        ge=1,
        validation_alias="GATEWAY_KEEP_ALIVE_S",
        description="an idle keep-alive connection is closed after this many seconds",
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

    @field_validator("api_keys", mode="before")
    @classmethod
    def _hash_keys(cls, value: object) -> tuple[NamedKey, ...]:
        if isinstance(value, str):
            return parse_keys(value)
        if isinstance(value, list | tuple) and not value:
            return ()
        raise ValueError("TRADEPULSE_API_KEYS must be comma-separated keys or name=key pairs")

    @property
    def api_key_hashes(self) -> tuple[str, ...]:
        return tuple(k.digest for k in self.api_keys)

    @property
    def production(self) -> bool:
        return self.environment.lower() in ("production", "prod")


class ConfigurationError(Exception):
    """Settings the gateway refuses to start with; the message says what to set."""


def check_startable(settings: GatewaySettings) -> None:
    if settings.production and not settings.api_key_hashes:
        raise ConfigurationError(
            "TP_ENV=production and TRADEPULSE_API_KEYS is empty: the gateway has no default key; "
            "set TRADEPULSE_API_KEYS to one or more comma-separated keys (or name=key pairs)"
        )
    published = [PUBLISHED_KEYS[h] for h in settings.api_key_hashes if h in PUBLISHED_KEYS]
    if settings.production and published:
        raise ConfigurationError(
            f"TP_ENV=production and TRADEPULSE_API_KEYS holds {', '.join(map(repr, published))},"
            " a key published in the TradePulse repository; generate your own, e.g. with"
            " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
