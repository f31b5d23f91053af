"""Every subject, stream, durable consumer and bucket name of the system, in one place.

All names hang off a prefix (`TP_NAMESPACE`, default `tp`) so that several systems, or test
runs, share one NATS server without seeing each other's messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# A namespace (`TP_NAMESPACE`): a lower-case word, safe in subjects and stream names.
NAMESPACE_PATTERN: Final = r"^[a-z][a-z0-9_]*$"


@dataclass(frozen=True)
class Names:
    prefix: str = "tp"

    # Streams ------------------------------------------------------------------------------
    @property
    def jobs_stream(self) -> str:
        """TrainingRequested: recorded by the trainers' intake, held by one trainer replica."""
        return f"{self._upper}_JOBS"

    @property
    def trials_stream(self) -> str:
        """Work queue of trial work items, pulled by every trainer replica."""
        return f"{self._upper}_TRIALS"

    @property
    def ingest_stream(self) -> str:
        """Work queue of ingest requests."""
        return f"{self._upper}_INGEST"

    @property
    def events_stream(self) -> str:
        """Durable record of every event (limits retention), for consumers that must not miss one."""
        return f"{self._upper}_EVENTS"

    @property
    def uploads_bucket(self) -> str:
        """Object store of files uploaded through the gateway, read by ingest."""
        return f"{self._upper}_UPLOADS"

    @property
    def candles_bucket(self) -> str:
        """Object store of dataset snapshots written by ingest, read by trainers."""
        return f"{self._upper}_CANDLES"

    # Commands (JetStream work queues) ---------------------------------------------------
    @property
    def training_requested(self) -> str:
        return f"{self.prefix}.cmd.training.requested"

    @property
    def trial_work(self) -> str:
        return f"{self.prefix}.cmd.training.trial"

    @property
    def ingest_requested(self) -> str:
        return f"{self.prefix}.cmd.ingest.requested"

    # Events (JetStream, stream `events_stream`) -----------------------------------------
    @property
    def events_all(self) -> str:
        return f"{self.prefix}.evt.>"

    @property
    def candles_ingested(self) -> str:
        return f"{self.prefix}.evt.market.candles_ingested"

    @property
    def ingest_failed(self) -> str:
        return f"{self.prefix}.evt.market.ingest_failed"

    def trial_completed(self, job_id: str) -> str:
        return f"{self.prefix}.evt.training.trial_completed.{job_id}"

    def job_progress(self, job_id: str) -> str:
        return f"{self.prefix}.evt.training.progress.{job_id}"

    @property
    def job_completed(self) -> str:
        return f"{self.prefix}.evt.training.job_completed"

    @property
    def job_failed(self) -> str:
        return f"{self.prefix}.evt.training.job_failed"

    @property
    def job_cancelled(self) -> str:
        return f"{self.prefix}.evt.training.job_cancelled"

    @property
    def config_promoted(self) -> str:
        return f"{self.prefix}.evt.registry.config_promoted"

    # Request/reply (core NATS, queue groups) -----------------------------------------------
    @property
    def cancel_job(self) -> str:
        return f"{self.prefix}.rpc.training.cancel"

    def cancel_broadcast(self, job_id: str) -> str:
        """Core (not stored) notice to the replica holding a job that it was cancelled."""
        return f"{self.prefix}.sig.training.cancel.{job_id}"

    @property
    def get_job(self) -> str:
        return f"{self.prefix}.rpc.training.job"

    @property
    def list_jobs(self) -> str:
        return f"{self.prefix}.rpc.training.jobs"

    @property
    def get_ensemble(self) -> str:
        return f"{self.prefix}.rpc.training.ensemble"

    @property
    def list_trials(self) -> str:
        return f"{self.prefix}.rpc.training.trials"

    @property
    def run_backtest(self) -> str:
        return f"{self.prefix}.rpc.training.backtest"

    @property
    def walk_forward_equity(self) -> str:
        return f"{self.prefix}.rpc.training.walk_forward_equity"

    @property
    def get_candles(self) -> str:
        return f"{self.prefix}.rpc.market.candles"

    @property
    def get_gaps(self) -> str:
        return f"{self.prefix}.rpc.market.gaps"

    @property
    def list_configs(self) -> str:
        return f"{self.prefix}.rpc.registry.configs"

    @property
    def get_config(self) -> str:
        return f"{self.prefix}.rpc.registry.config"

    @property
    def change_status(self) -> str:
        return f"{self.prefix}.rpc.registry.change_status"

    @property
    def coverage(self) -> str:
        return f"{self.prefix}.rpc.market.coverage"

    @property
    def get_ingest(self) -> str:
        return f"{self.prefix}.rpc.market.ingest"

    def ping(self, service: str) -> str:
        return f"{self.prefix}.rpc.{service}.ping"

    # Durable consumers (a service's queue group is its ServiceSpec name) ---------------------
    trainer_jobs_durable = "trainer-jobs"
    trainer_intake_durable = "trainer-intake"
    trainer_trials_durable = "trainer-trials"
    ingest_durable = "ingest"
    registry_jobs_durable = "registry-job-completed"

    @property
    def _upper(self) -> str:
        return self.prefix.upper().replace(".", "_").replace("-", "_")
