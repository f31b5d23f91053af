"""Registry messages: configuration lifecycle events and queries."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from tradepulse.common.contracts.base import Contract, Message
from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.contracts.training import (
    BacktestSettingsModel,
    DataWindow,
    MetricValues,
    ParamValues,
    ValidationReport,
    WalkForwardReport,
)

ConfigStatus = Literal["DISCOVERY", "CANDIDATE", "PAPER", "LIVE", "RETIRED"]
# What a list of configurations can be ordered by: two metrics, the trade count, the age, and
# the two overfitting figures of the job's validation report (deflated Sharpe, PBO).
ConfigSort = Literal["sharpe_ratio", "net_profit", "total_trades", "created_at", "dsr", "pbo"]

# Who made an automatic change (a configuration's birth, a rule of the lifecycle).
REGISTRY_ACTOR = "registry"
REASON_MIN_CHARS = 3
REASON_MAX_CHARS = 500


class ConfigPromoted(Message):
    """A configuration's status changed (its creation included, from None).

    `actor` is who asked: `registry` for automatic changes, else the operator's name as the
    gateway knows it. Events written before it existed were all automatic, hence the default.
    """

    config_id: str
    job_id: str
    from_status: ConfigStatus | None
    to_status: ConfigStatus
    reason: str
    at: str
    actor: str = REGISTRY_ACTOR


class StatusChange(Contract):
    from_status: ConfigStatus | None
    to_status: ConfigStatus
    reason: str
    at: str
    actor: str = REGISTRY_ACTOR


class ChangeStatus(Message):
    """An operator asks for a configuration to take `status` (validation spec section 5).

    The lifecycle's transition table decides; asking for the status it already has changes
    nothing and succeeds (a retried request is harmless). `reason` is kept in the history
    without its surrounding whitespace.
    """

    config_id: str = Field(min_length=1, max_length=200)
    status: ConfigStatus
    reason: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=REASON_MIN_CHARS, max_length=REASON_MAX_CHARS
        ),
    ]
    actor: str = Field(min_length=1, max_length=200)


# Why a ChangeStatus was refused: no such configuration; the table forbids the change from
# the current status; or another change of the same configuration committed first.
StatusRefusal = Literal["not_found", "forbidden", "conflict"]


class ChangeStatusReply(Message):
    """The outcome of a ChangeStatus.

    `status` is the configuration's status once the request was handled (None when unknown);
    `changed` is True only when this request changed it. A refused request has `refused`, a
    `detail` for people and, unless not_found, the statuses `allowed` from `status`.
    """

    config_id: str
    status: ConfigStatus | None
    changed: bool
    refused: StatusRefusal | None = None
    detail: str = ""
    allowed: list[ConfigStatus] = Field(default_factory=list)


class GateView(Contract):
    """One lifecycle gate (validation spec section 5): `value <comparison> threshold`; a null
    value fails."""

    name: str
    value: float | None
    comparison: Literal[">=", ">", "<="]
    threshold: float
    passed: bool


class ConfigView(Contract):
    config_id: str
    job_id: str
    status: ConfigStatus
    strategy: str
    dataset: DatasetKey
    regime: str
    optimizer: str
    seed: int
    objective: str
    params: ParamValues
    metrics: MetricValues
    fingerprint: str
    window: DataWindow
    settings: BacktestSettingsModel
    sampler: str
    sampler_version: str
    code_version: str
    created_at: str
    history: list[StatusChange] = Field(default_factory=list)
    validation: ValidationReport | None = None
    walk_forward: WalkForwardReport | None = None
    gates: list[GateView] | None = Field(
        default=None, description="a walk-forward job's lifecycle gates; null for a plain job"
    )

    def listed(self) -> ConfigView:
        """The view as a list of configurations carries it: reports without their
        degradation points, so that a page of 200 stays under NATS's 1 MB message limit."""
        return self.model_copy(
            update={
                "validation": None if self.validation is None else self.validation.without_points(),
                "walk_forward": None
                if self.walk_forward is None
                else self.walk_forward.without_points(),
            }
        )


class ListConfigs(Message):
    status: ConfigStatus | None = None
    min_sharpe: float | None = None
    min_trades: int | None = None
    min_dsr: float | None = Field(default=None, allow_inf_nan=False)
    max_pbo: float | None = Field(default=None, allow_inf_nan=False)
    symbol: str | None = None
    strategy: str | None = None
    sort: ConfigSort = "created_at"
    descending: bool = True
    limit: int = Field(default=50, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class ConfigsReply(Message):
    total: int
    items: list[ConfigView]


class GetConfig(Message):
    config_id: str | None = None
    job_id: str | None = None


class ConfigReply(Message):
    config: ConfigView | None
