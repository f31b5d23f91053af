"""What the trainer's use cases are given: the ports, the caches and the replica's state."""

from __future__ import annotations

from dataclasses import dataclass, field

from tradepulse.trainer.cancels import CancelRegistry
from tradepulse.trainer.evaluate import DatasetCache
from tradepulse.trainer.metrics import TrainerMetrics
from tradepulse.trainer.policy import RetryPolicy
from tradepulse.trainer.ports import Bus, JobStore
from tradepulse.trainer.settings import TrainerSettings


@dataclass
class Deps:
    store: JobStore
    bus: Bus
    cache: DatasetCache
    settings: TrainerSettings
    code_version: str
    cancels: CancelRegistry = field(default_factory=CancelRegistry)
    metrics: TrainerMetrics = field(default_factory=TrainerMetrics)

    @property
    def replica(self) -> str:
        return self.settings.replica

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            lease_seconds=self.settings.lease_seconds,
            trial_max_deliver=self.settings.trial_max_deliver,
        )
