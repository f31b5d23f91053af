"""The service's own Prometheus metrics (the common skeleton adds per-endpoint ones)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram

from tradepulse.common.contracts.market import IngestRequested

SOURCES: tuple[str, ...] = get_args(IngestRequested.model_fields["source"].annotation)
OUTCOMES = ("succeeded", "failed")


@dataclass(frozen=True)
class IngestMetrics:
    requests: Counter
    rows_added: Counter
    duration: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> IngestMetrics:
        metrics = cls(
            requests=Counter(
                "tradepulse_ingest_requests",
                "Ingest requests handled, by source and outcome",
                ["source", "outcome"],
                registry=registry,
            ),
            rows_added=Counter(
                "tradepulse_ingest_rows_added",
                "Candles stored that were not stored before",
                ["source"],
                registry=registry,
            ),
            duration=Histogram(
                "tradepulse_ingest_duration_seconds",
                "Time to handle a successful ingest request, end to end",
                ["source"],
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                registry=registry,
            ),
        )
        # Every known label from the start: a rate needs a 0 before the first failed import.
        for source in SOURCES:
            metrics.rows_added.labels(source)
            metrics.duration.labels(source)
            for outcome in OUTCOMES:
                metrics.requests.labels(source, outcome)
        return metrics
