"""Configurations as users see them: parameters, metrics, lineage and status history."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints

from tradepulse.common.contracts.registry import (
    REASON_MAX_CHARS,
    REASON_MIN_CHARS,
    REGISTRY_ACTOR,
    ConfigStatus,
    ConfigView,
    GateView,
    StatusRefusal,
)
from tradepulse.common.contracts.training import WalkForwardReport
from tradepulse.gateway.schemas.common import Body, iso_ms
from tradepulse.gateway.schemas.validation import ValidationOut, validation_out


class StatusChangeOut(BaseModel):
    from_status: ConfigStatus | None
    to_status: ConfigStatus
    reason: str
    at: str
    actor: str = Field(
        description=f"who asked: `{REGISTRY_ACTOR}` for automatic changes, else the name of "
        "the API key (a key configured without a name: the first 8 hex digits of its sha256)"
    )


def _status_name(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


class StatusBody(Body):
    """An operator's status change; the registry's transition table decides."""

    status: Annotated[ConfigStatus, BeforeValidator(_status_name)] = Field(
        description="the status to take (any case)", examples=["LIVE"]
    )
    reason: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=REASON_MIN_CHARS, max_length=REASON_MAX_CHARS
        ),
    ] = Field(
        description=f"why, kept in the history ({REASON_MIN_CHARS}..{REASON_MAX_CHARS} "
        "characters once surrounding whitespace is dropped)",
        examples=["three months of paper trading within the backtest's drawdown"],
    )


class StatusChangedOut(BaseModel):
    config_id: str
    status: ConfigStatus = Field(description="the configuration's status now")
    changed: bool = Field(
        description="false when it already had this status: a repeated request changes nothing"
    )
    detail: str
    allowed: list[ConfigStatus] = Field(description="the statuses it may go to from here")
    actor: str = Field(description="the name of the caller's key, the actor of the change")


class StatusRefusedOut(BaseModel):
    """The 409 of a status change: the table forbids it, or another change committed first."""

    detail: str
    request_id: str
    refused: StatusRefusal
    status: ConfigStatus = Field(description="the configuration's status now")
    allowed: list[ConfigStatus] = Field(description="the statuses it may go to from `status`")


class Lineage(BaseModel):
    """Where a configuration comes from: enough to train it again and check the result."""

    job_id: str
    seed: int
    optimizer: str
    objective: str
    regime: str
    sampler: str
    sampler_version: str
    code_version: str
    exchange: str
    symbol: str
    timeframe: str
    content_hash: str = Field(description="the candles' content hash")
    first: str = Field(description="open time of the first traded candle")
    last: str
    settings: dict[str, float]


class ConfigOut(BaseModel):
    config_id: str
    job_id: str
    status: ConfigStatus
    strategy: str
    exchange: str
    symbol: str
    timeframe: str
    params: dict[str, float | int]
    metrics: dict[str, float | int | None]
    fingerprint: str
    created_at: str
    lineage: Lineage
    history: list[StatusChangeOut]
    validation: ValidationOut | None = Field(
        default=None, description="the overfitting statistics of the job that made it"
    )
    walk_forward: WalkForwardReport | None = Field(
        default=None, description="the walk-forward report of the job that made it"
    )
    gates: list[GateView] | None = Field(
        default=None,
        description="the lifecycle gates (value, threshold, verdict); null for a plain job",
    )


def config_out(view: ConfigView) -> ConfigOut:
    dataset = view.dataset
    return ConfigOut(
        config_id=view.config_id,
        job_id=view.job_id,
        status=view.status,
        strategy=view.strategy,
        exchange=dataset.exchange,
        symbol=dataset.symbol,
        timeframe=dataset.timeframe,
        params=view.params,
        metrics=view.metrics,
        fingerprint=view.fingerprint,
        created_at=view.created_at,
        lineage=Lineage(
            job_id=view.job_id,
            seed=view.seed,
            optimizer=view.optimizer,
            objective=view.objective,
            regime=view.regime,
            sampler=view.sampler,
            sampler_version=view.sampler_version,
            code_version=view.code_version,
            exchange=dataset.exchange,
            symbol=dataset.symbol,
            timeframe=dataset.timeframe,
            content_hash=view.window.content_hash,
            first=iso_ms(view.window.first_ms),
            last=iso_ms(view.window.last_ms),
            settings=view.settings.model_dump(),
        ),
        history=[StatusChangeOut(**h.model_dump()) for h in view.history],
        validation=validation_out(view.validation),
        walk_forward=view.walk_forward,
        gates=view.gates,
    )


class ConfigsPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[ConfigOut]
