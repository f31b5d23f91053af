"""The registry's Prometheus instruments (the common skeleton adds per-endpoint ones)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from tradepulse.registry.lifecycle import TRANSITIONS


class RegistryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.configs_created = Counter(
            "tp_registry_configs_created",
            "configurations created from finished jobs, by initial status",
            ["status"],
            registry=registry,
        )
        # The statuses a configuration is born with, at 0 before the first one.
        for status in sorted(TRANSITIONS[None]):
            self.configs_created.labels(status)
        self.duplicate_jobs = Counter(
            "tp_registry_duplicate_jobs",
            "JobCompleted events for a job that already has a configuration",
            registry=registry,
        )
        self.events_published = Counter(
            "tp_registry_events_published",
            "ConfigPromoted events published from the outbox",
            registry=registry,
        )
