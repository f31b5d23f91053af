"""What the trainer's use cases are given: the ports, the caches and the replica's state."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from tradepulse.trainer.cancels import CancelRegistry
from tradepulse.trainer.evaluate import DatasetCache
from tradepulse.trainer.metrics import TrainerMetrics
from tradepulse.trainer.policy import RetryPolicy
from tradepulse.trainer.ports import Bus, JobStore
from tradepulse.trainer.settings import TrainerSettings


def code_version() -> str:
    """The quant core's version plus a hash of its sources: any change to the rules shows."""
    digest = hashlib.sha256()
    root = resources.files("tradepulse.quant")

    def walk(node: Any, prefix: str) -> None:
        for entry in sorted(node.iterdir(), key=lambda e: e.name):
            if entry.is_dir() and entry.name != "__pycache__":
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".py"):
                digest.update(f"{prefix}{entry.name}".encode())
                digest.update(entry.read_bytes())

    walk(root, "")
    return f"tradepulse-quant {importlib.metadata.version('tradepulse-quant')}+{digest.hexdigest()[:12]}"


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
