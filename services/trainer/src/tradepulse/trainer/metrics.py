"""The trainer's Prometheus metrics, on the registry the service skeleton serves (the
skeleton adds the per-endpoint bus metrics to it). Refreshed by `app.refresh_metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class TrainerMetrics:
    """`registry`: where to register; a fresh one when None (a replica in a unit test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.trials = Counter(
            "tradepulse_trials_total", "Trials evaluated", ["state"], registry=self.registry
        )
        # Every state from the start: a rate needs a 0 before the first failed trial.
        for state in ("complete", "failed"):
            self.trials.labels(state)
        self.trial_seconds = Histogram(
            "tradepulse_trial_duration_seconds",
            "Backtest time of a trial",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=self.registry,
        )
        self.trials_per_second = Gauge(
            "tradepulse_trials_per_second",
            "Trials evaluated by this replica, last 10 s",
            registry=self.registry,
        )
        self.jobs = Gauge("tradepulse_jobs", "Jobs by status", ["status"], registry=self.registry)
        self.jobs_held = Gauge(
            "tradepulse_jobs_held", "Jobs held by this replica", registry=self.registry
        )
        self.backlog = Gauge(
            "tradepulse_queue_backlog",
            "Messages waiting or in flight",
            ["queue"],
            registry=self.registry,
        )
        self.nats_connected = Gauge(
            "tradepulse_nats_connected",
            "1 while this replica's NATS connection is up (checked every 10 s)",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "tradepulse_database_up",
            "1 if this replica's last query of PostgreSQL (every 10 s) succeeded",
            registry=self.registry,
        )
        # Trials evaluated since start, for the trials-per-second gauge.
        self.trials_done = 0
