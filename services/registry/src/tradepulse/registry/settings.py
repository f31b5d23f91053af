"""The registry's settings: the shared ones plus the lifecycle thresholds and outbox pacing."""

from __future__ import annotations

from pydantic import Field

from tradepulse.common.settings import CommonSettings
from tradepulse.registry.lifecycle import GateThresholds, Rules


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
    # Validation spec section 5: what a walk-forward job's configuration needs to reach PAPER.
    gate_oos_min_trades: int = Field(
        default=30, ge=0, validation_alias="REGISTRY_GATE_OOS_MIN_TRADES"
    )
    gate_oos_min_sharpe: float = Field(
        default=0.0,
        allow_inf_nan=False,
        validation_alias="REGISTRY_GATE_OOS_MIN_SHARPE",
        description="the stitched out-of-sample Sharpe must be above this (strictly)",
    )
    gate_oos_min_psr: float = Field(
        default=0.95, ge=0, le=1, validation_alias="REGISTRY_GATE_OOS_MIN_PSR"
    )
    gate_min_wfe: float = Field(
        default=0.5, allow_inf_nan=False, validation_alias="REGISTRY_GATE_MIN_WFE"
    )
    gate_max_pbo: float = Field(default=0.5, ge=0, le=1, validation_alias="REGISTRY_GATE_MAX_PBO")
    gate_min_dsr: float = Field(default=0.95, ge=0, le=1, validation_alias="REGISTRY_GATE_MIN_DSR")

    @property
    def gate_thresholds(self) -> GateThresholds:
        return GateThresholds(
            oos_min_trades=self.gate_oos_min_trades,
            oos_min_sharpe=self.gate_oos_min_sharpe,
            oos_min_psr=self.gate_oos_min_psr,
            min_wfe=self.gate_min_wfe,
            max_pbo=self.gate_max_pbo,
            min_dsr=self.gate_min_dsr,
        )

    @property
    def rules(self) -> Rules:
        return Rules(min_trades_candidate=self.min_trades_candidate, gates=self.gate_thresholds)
