"""What the trainer's use cases need from the outside: typed rows and two ports.

`JobStore` is implemented by `repository.TrainingRepository` (PostgreSQL); `Bus` by
`nats_bus.NatsBus`. The in-memory implementations the unit tests use (tests/unit/trainer_fakes)
pass the same contract tests as the PostgreSQL one, so a use case tested against them behaves
the same in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tradepulse.common.contracts.market import CoverageQuery, CoverageReply
from tradepulse.common.contracts.training import (
    DataWindow,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgress,
    JobStatus,
    TrainingRequested,
    TrialCompleted,
    TrialWork,
    ValidationReport,
    WalkForwardReport,
)

JobEvent = JobProgress | JobCompleted | JobFailed | JobCancelled


@dataclass(frozen=True)
class JobRow:
    """A job as stored (`n_iterations`: every trial of the job, all its optimizations).
    `holder`/`lease_until`: the replica running it and until when its
    lease holds (both None when no replica does); `data_window` is fixed at the first hold."""

    job_id: str
    request: TrainingRequested
    status: JobStatus
    progress: float
    trials_done: int
    n_iterations: int
    best_trial: int | None
    best_value: float | None
    error: str | None
    sampler: str | None
    sampler_version: str | None
    batch_size: int | None
    data_window: DataWindow | None
    holder: str | None
    lease_until: datetime | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    validation: ValidationReport | None = None
    walk_forward: WalkForwardReport | None = None
    param_importances: dict[str, float] | None = None


@dataclass(frozen=True)
class StoredTrial:
    """A trial as stored; `system_attrs` is the sampler's per-trial state, kept for resumes."""

    number: int
    params: dict[str, float | int]
    state: str
    value: float | None
    metrics: dict[str, Any]
    fingerprint: str
    duration_ms: float
    replica: str
    reason: str | None
    system_attrs: dict[str, Any]
    block_sums: list[float] | None = None


@dataclass(frozen=True)
class EvaluatedTrial:
    """What the overfitting statistics need of a trial whose Sharpe is not null (validation
    spec section 0): its annualized Sharpe and its per-block sums (s1 then s2), if it has them."""

    number: int
    sharpe_ratio: float
    block_sums: list[float] | None


@dataclass(frozen=True)
class EnsembleJob:
    """One seed's job of an ensemble, with its best trial's parameters once it has one."""

    job_id: str
    request: TrainingRequested
    status: JobStatus
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, float | int] | None


class JobStore(Protocol):
    """Jobs and trials. Every write is idempotent: a job is inserted once, a trial once per
    (job, number), and a terminal status is never overwritten. Leases are timed by the
    store's clock, so replicas need not agree on theirs."""

    async def create_job(self, request: TrainingRequested) -> JobRow:
        """Insert the job as queued unless it exists; the stored row either way."""

    async def get_job(self, job_id: str) -> JobRow | None: ...

    async def take_job(self, job_id: str, holder: str, lease_s: float) -> bool:
        """Lease a queued or running job to `holder`; False while another live replica
        holds it (or the job is over)."""

    async def held_by_another(self, job_id: str, replica: str) -> bool:
        """Whether a replica other than `replica` holds the job under a lease still running."""

    async def release_lease(self, job_id: str, holder: str) -> None:
        """Give the lease up (shutting down); nothing if `holder` does not hold it."""

    async def renew_lease(self, job_id: str, holder: str, lease_s: float) -> bool:
        """Extend `holder`'s lease; False once another replica has taken the job over (or
        it is gone): the holder has lost it."""

    async def start_job(
        self,
        job_id: str,
        *,
        sampler: str,
        sampler_version: str,
        batch_size: int,
        window: DataWindow,
    ) -> None:
        """Mark a queued or running job running; the first window and start time stay."""

    async def stored_trials(self, job_id: str) -> list[StoredTrial]:
        """Every stored trial of the job, by number."""

    async def trials_in(self, job_id: str, numbers: Iterable[int]) -> dict[int, StoredTrial]: ...

    async def insert_trials(self, trials: list[tuple[TrialCompleted, dict[str, Any]]]) -> None:
        """Store (result, sampler state) pairs; a trial already stored is left as it is."""

    async def update_progress(
        self,
        job_id: str,
        *,
        holder: str,
        trials_done: int,
        progress: float,
        best_trial: int | None,
        best_value: float | None,
    ) -> bool:
        """Record progress of a job running under `holder`; False (nothing written) if it is
        not running or another replica holds it: a holder that was cut off and came back
        after a takeover must not write its older count over the new holder's."""

    async def finish(
        self, job_id: str, status: str, *, error: str | None = None, holder: str | None = None
    ) -> bool:
        """Move a job to a terminal status (progress 100 if completed); False if it already
        had one, or if `holder` is given and another replica holds the job."""

    async def request_cancel(self, job_id: str) -> JobStatus | None:
        """Flag a job for cancellation; its status afterwards, None if there is no such job.
        A job no live replica holds (queued, or its holder's lease ran out) is cancelled at
        once; a held one stays running until its holder stops it."""

    async def cancel_requested(self, job_id: str) -> bool: ...

    async def list_trials(
        self, job_id: str, limit: int, offset: int, numbers: range | None = None
    ) -> tuple[int, list[StoredTrial]]:
        """A page of the job's trials by number (only those in `numbers`, a step-1 range,
        when given), with the total of those."""

    async def list_jobs(
        self, status: str | None, symbol: str | None, strategy: str | None, limit: int, offset: int
    ) -> tuple[int, list[str]]:
        """Job ids, newest first (then by id), with the total matching the filters."""

    async def jobs_by_status(self) -> dict[str, int]: ...

    async def evaluated_trials(self, job_id: str) -> list[EvaluatedTrial]:
        """The job's trials whose Sharpe is not null, in trial order."""
        ...

    async def store_validation(self, job_id: str, report: ValidationReport) -> None:
        """Record a running job's report (a job in any other status is left as it is)."""
        ...

    async def store_walk_forward(self, job_id: str, report: WalkForwardReport) -> None:
        """Record a running job's walk-forward report (any other status: left as it is)."""
        ...

    async def store_importances(self, job_id: str, importances: dict[str, float]) -> None:
        """Record a running job's parameter importances (any other status: left as it is)."""
        ...

    async def ensemble_jobs(self, ensemble_id: str) -> list[EnsembleJob]:
        """The ensemble's recorded jobs in seed order."""
        ...


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    """The trainer's side of the bus. Every publish carries the message's id, so a repeat
    (a resumed job, a redelivered item) is dropped as a duplicate by the stream."""

    async def publish_event(self, event: JobEvent) -> None:
        """Publish a job's event durably (returns once the stream stored it)."""

    async def publish_work(self, work: TrialWork) -> None:
        """Queue a trial work item for any replica (returns once the stream stored it)."""

    async def announce_trials(self, results: list[TrialCompleted]) -> None:
        """Tell the job's holder these trials (of one job) are stored; not waited for (the
        holder also reads the store)."""

    async def subscribe_trials(
        self, job_id: str, on_result: Callable[[TrialCompleted], None]
    ) -> Subscription:
        """Call `on_result` with every trial result announced for the job from now on."""

    async def broadcast_cancel(self, job_id: str) -> None:
        """Tell every replica (and so the job's holder) that the job was cancelled."""

    async def coverage(self, query: CoverageQuery) -> CoverageReply:
        """Ask ingest which snapshots it has; ConnectionError if it does not answer in time."""


class Delivery(Protocol):
    """A message pulled from a work queue, with the ways to settle it."""

    @property
    def data(self) -> bytes: ...

    @property
    def attempt(self) -> int:
        """How many times the message was delivered, this time included (1 the first time)."""

    async def ack(self) -> None:
        """Done; the server is not asked to confirm."""

    async def ack_sync(self) -> None:
        """Done, confirmed by the server."""

    async def nak(self, delay: float | None = None) -> None:
        """Deliver again, after `delay` seconds (at once if None)."""

    async def term(self) -> None:
        """Never deliver again."""

    async def in_progress(self) -> None:
        """Still working: restart the ack wait."""
