"""Registry messages: configuration lifecycle events and queries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tradepulse.common.contracts.base import Contract, Message
from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.contracts.training import (
    BacktestSettingsModel,
    DataWindow,
    MetricValues,
    ParamValues,
    ValidationReport,
)

ConfigStatus = Literal["DISCOVERY", "CANDIDATE", "PAPER", "LIVE", "RETIRED"]
# What a list of configurations can be ordered by: two metrics, the trade count, the age, and
# the two overfitting figures of the job's validation report (deflated Sharpe, PBO).
ConfigSort = Literal["sharpe_ratio", "net_profit", "total_trades", "created_at", "dsr", "pbo"]


class ConfigPromoted(Message):
    """A configuration's status changed (its creation included, from None)."""

    config_id: str
    job_id: str
    from_status: ConfigStatus | None
    to_status: ConfigStatus
    reason: str
    at: str


class StatusChange(Contract):
    from_status: ConfigStatus | None
    to_status: ConfigStatus
    reason: str
    at: str


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
