"""Settings from the environment. Built in each service's main(), never at import time."""

from __future__ import annotations

import os
import socket

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradepulse.common.contracts.subjects import NAMESPACE_PATTERN, Names


def default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class CommonSettings(BaseSettings):
    """What every service reads: where NATS and PostgreSQL are, names, logging, metrics."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres", validation_alias="DATABASE_URL"
    )
    namespace: str = Field(default="tp", validation_alias="TP_NAMESPACE", pattern=NAMESPACE_PATTERN)
    environment: str = Field(default="development", validation_alias="TP_ENV")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_json: bool | None = Field(default=None, validation_alias="LOG_JSON")
    metrics_port: int = Field(default=0, ge=0, le=65535, validation_alias="METRICS_PORT")
    replica: str = Field(default_factory=default_replica, validation_alias="TP_REPLICA")
    stream_replicas: int = Field(default=1, ge=1, le=5, validation_alias="TP_STREAM_REPLICAS")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        return level

    @property
    def names(self) -> Names:
        return Names(self.namespace)
