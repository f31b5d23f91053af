"""The registry's settings: the shared ones plus the lifecycle thresholds and outbox pacing."""

from __future__ import annotations

from pydantic import Field

from tradepulse.common.settings import CommonSettings
from tradepulse.registry.lifecycle import Rules


class RegistrySettings(CommonSettings):
    min_trades_candidate: int = Field(
        default=30, ge=0, validation_alias="REGISTRY_MIN_TRADES_CANDIDATE"
    )
    outbox_interval_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias="REGISTRY_OUTBOX_INTERVAL_S",
        description="how often unsent ConfigPromoted events are published again",
    )

    @property
    def rules(self) -> Rules:
        return Rules(min_trades_candidate=self.min_trades_candidate)
