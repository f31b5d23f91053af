"""In-memory implementations of the trainer's ports, for unit tests.

`MemoryJobStore` passes the same contract tests as the PostgreSQL repository
(tests/unit/trainer_store_contract.py), so a use case that works on it works on PostgreSQL.
They live with the tests, not in the service: nothing in production runs them.
Leases are timed by a `Clock` the test moves, so a lease runs out without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from tradepulse.common.contracts.market import (
    CoverageQuery,
    CoverageReply,
    DatasetCoverage,
    DatasetKey,
)
from tradepulse.common.contracts.training import (
    TERMINAL_STATUSES,
    DataWindow,
    JobStatus,
    TrainingRequested,
    TrialCompleted,
    TrialSpec,
    TrialWork,
    ValidationReport,
    WalkForwardReport,
)
from tradepulse.quant import Candles
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.errors import SnapshotMissingError
from tradepulse.trainer.evaluate import DatasetCache, evaluate
from tradepulse.trainer.ports import (
    Delivery,
    EnsembleJob,
    EvaluatedTrial,
    JobEvent,
    JobRow,
    StoredTrial,
)
from tradepulse.trainer.settings import TrainerSettings
from tradepulse.trainer.trials import store_trials


class Clock:
    """Wall-clock time that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class MemoryJobStore:
    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or Clock()
        self.jobs: dict[str, JobRow] = {}
        self.trials: dict[str, dict[int, StoredTrial]] = {}
        # Every call by name, for tests that count round trips or must see one was made.
        self.calls: list[str] = []

    def _update(self, job_id: str, **changes: Any) -> None:
        self.jobs[job_id] = replace(self.jobs[job_id], **changes)

    def _live_holder(self, job: JobRow) -> str | None:
        if job.holder is None or job.lease_until is None or job.lease_until < self.clock():
            return None
        return job.holder

    async def create_job(self, request: TrainingRequested) -> JobRow:
        self.calls.append("create_job")
        if request.job_id not in self.jobs:
            self.jobs[request.job_id] = JobRow(
                job_id=request.job_id,
                request=request,
                status="queued",
                progress=0.0,
                trials_done=0,
                n_iterations=request.total_trials,
                best_trial=None,
                best_value=None,
                error=None,
                sampler=None,
                sampler_version=None,
                batch_size=None,
                data_window=None,
                holder=None,
                lease_until=None,
                cancel_requested=False,
                created_at=self.clock(),
                started_at=None,
                finished_at=None,
            )
            self.trials[request.job_id] = {}
        return self.jobs[request.job_id]

    async def get_job(self, job_id: str) -> JobRow | None:
        self.calls.append("get_job")
        return self.jobs.get(job_id)

    async def take_job(self, job_id: str, holder: str, lease_s: float) -> bool:
        self.calls.append("take_job")
        job = self.jobs.get(job_id)
        if job is None or job.status not in ("queued", "running"):
            return False
        if self._live_holder(job) not in (None, holder):
            return False
        self._update(job_id, holder=holder, lease_until=self.clock() + timedelta(seconds=lease_s))
        return True

    async def held_by_another(self, job_id: str, replica: str) -> bool:
        self.calls.append("held_by_another")
        job = self.jobs.get(job_id)
        return job is not None and self._live_holder(job) not in (None, replica)

    async def release_lease(self, job_id: str, holder: str) -> None:
        self.calls.append("release_lease")
        job = self.jobs.get(job_id)
        if job is not None and job.holder == holder:
            self._update(job_id, holder=None, lease_until=None)

    async def renew_lease(self, job_id: str, holder: str, lease_s: float) -> bool:
        self.calls.append("renew_lease")
        job = self.jobs.get(job_id)
        if job is None or job.holder != holder:
            return False
        self._update(job_id, lease_until=self.clock() + timedelta(seconds=lease_s))
        return True

    async def start_job(
        self,
        job_id: str,
        *,
        sampler: str,
        sampler_version: str,
        batch_size: int,
        window: DataWindow,
    ) -> None:
        self.calls.append("start_job")
        job = self.jobs.get(job_id)
        if job is None or job.status not in ("queued", "running"):
            return
        self._update(
            job_id,
            status="running",
            sampler=sampler,
            sampler_version=sampler_version,
            batch_size=batch_size,
            data_window=job.data_window or window,
            started_at=job.started_at or self.clock(),
        )

    async def stored_trials(self, job_id: str) -> list[StoredTrial]:
        self.calls.append("stored_trials")
        trials = self.trials.get(job_id, {})
        return [trials[k] for k in sorted(trials)]

    async def trials_in(self, job_id: str, numbers: Iterable[int]) -> dict[int, StoredTrial]:
        self.calls.append("trials_in")
        trials = self.trials.get(job_id, {})
        return {k: trials[k] for k in numbers if k in trials}

    async def insert_trials(self, trials: list[tuple[TrialCompleted, dict[str, Any]]]) -> None:
        self.calls.append("insert_trials")
        for r, attrs in trials:
            if r.job_id not in self.jobs:
                raise KeyError(f"no job {r.job_id} for trial {r.number}")  # the foreign key
            if self.jobs[r.job_id].status == "cancelled":
                continue  # as PostgreSQL: nothing is stored once the job is cancelled
            self.trials[r.job_id].setdefault(
                r.number,
                StoredTrial(
                    number=r.number,
                    params=dict(r.params),
                    state=r.state,
                    value=r.value,
                    metrics=dict(r.metrics),
                    fingerprint=r.fingerprint,
                    duration_ms=r.duration_ms,
                    replica=r.replica,
                    reason=r.reason,
                    system_attrs=dict(attrs),
                    block_sums=list(r.block_sums) if r.block_sums is not None else None,
                ),
            )

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
        self.calls.append("update_progress")
        job = self.jobs.get(job_id)
        if job is None or job.status != "running" or job.holder != holder:
            return False
        self._update(
            job_id,
            trials_done=trials_done,
            progress=progress,
            best_trial=best_trial,
            best_value=best_value,
        )
        return True

    async def finish(
        self, job_id: str, status: str, *, error: str | None = None, holder: str | None = None
    ) -> bool:
        self.calls.append("finish")
        job = self.jobs.get(job_id)
        if job is None or job.status in TERMINAL_STATUSES:
            return False
        if holder is not None and job.holder != holder:
            return False
        self._update(
            job_id,
            status=status,
            error=error,
            finished_at=self.clock(),
            progress=100.0 if status == "completed" else job.progress,
        )
        return True

    async def request_cancel(self, job_id: str) -> JobStatus | None:
        self.calls.append("request_cancel")
        job = self.jobs.get(job_id)
        if job is None:
            return None
        orphaned = job.holder is None or (
            job.lease_until is not None and job.lease_until < self.clock()
        )
        if job.status == "queued" or (job.status == "running" and orphaned):
            self._update(
                job_id, cancel_requested=True, status="cancelled", finished_at=self.clock()
            )
        else:
            self._update(job_id, cancel_requested=True)
        return self.jobs[job_id].status

    async def cancel_requested(self, job_id: str) -> bool:
        self.calls.append("cancel_requested")
        job = self.jobs.get(job_id)
        return job is not None and job.cancel_requested

    async def list_trials(
        self, job_id: str, limit: int, offset: int, numbers: range | None = None
    ) -> tuple[int, list[StoredTrial]]:
        self.calls.append("list_trials")
        trials = await self.stored_trials(job_id)
        if numbers is not None:
            trials = [t for t in trials if t.number in numbers]
        return len(trials), trials[offset : offset + limit]

    async def list_jobs(
        self, status: str | None, symbol: str | None, strategy: str | None, limit: int, offset: int
    ) -> tuple[int, list[str]]:
        self.calls.append("list_jobs")
        matching = [
            j
            for j in self.jobs.values()
            if (status is None or j.status == status)
            and (symbol is None or j.request.dataset.symbol == symbol)
            and (strategy is None or j.request.strategy == strategy)
        ]
        # Newest first, then by id: sorted by id, then (stable) by time descending.
        matching.sort(key=lambda j: j.job_id)
        matching.sort(key=lambda j: j.created_at, reverse=True)
        return len(matching), [j.job_id for j in matching[offset : offset + limit]]

    async def jobs_by_status(self) -> dict[str, int]:
        self.calls.append("jobs_by_status")
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    async def evaluated_trials(self, job_id: str) -> list[EvaluatedTrial]:
        self.calls.append("evaluated_trials")
        return [
            EvaluatedTrial(t.number, float(t.metrics["sharpe_ratio"]), t.block_sums)
            for t in await self.stored_trials(job_id)
            if t.metrics.get("sharpe_ratio") is not None
        ]

    async def store_validation(self, job_id: str, report: ValidationReport) -> None:
        self.calls.append("store_validation")
        job = self.jobs.get(job_id)
        if job is not None and job.status == "running":
            self._update(job_id, validation=report)

    async def store_walk_forward(self, job_id: str, report: WalkForwardReport) -> None:
        self.calls.append("store_walk_forward")
        job = self.jobs.get(job_id)
        if job is not None and job.status == "running":
            self._update(job_id, walk_forward=report)

    async def store_importances(self, job_id: str, importances: dict[str, float]) -> None:
        self.calls.append("store_importances")
        job = self.jobs.get(job_id)
        if job is not None and job.status == "running":
            self._update(job_id, param_importances=importances)

    async def ensemble_jobs(self, ensemble_id: str) -> list[EnsembleJob]:
        self.calls.append("ensemble_jobs")
        members = [j for j in self.jobs.values() if j.request.ensemble_id == ensemble_id]
        members.sort(key=lambda j: (j.request.seed, j.job_id))
        out = []
        for j in members:
            best = self.trials[j.job_id].get(j.best_trial) if j.best_trial is not None else None
            out.append(
                EnsembleJob(
                    job_id=j.job_id,
                    request=j.request,
                    status=j.status,
                    best_value=j.best_value,
                    best_trial=j.best_trial,
                    best_params=dict(best.params) if best else None,
                )
            )
        return out

    def expire_lease(self, job_id: str) -> None:
        """The holder's lease ran out (a second ago), as if it died."""
        self._update(job_id, lease_until=self.clock() - timedelta(seconds=1))


@dataclass
class _Subscription:
    bus: MemoryBus
    job_id: str
    on_result: Callable[[TrialCompleted], None]

    async def unsubscribe(self) -> None:
        self.bus.subscriptions.remove(self)


@dataclass
class MemoryBus:
    """Records what the trainer publishes; `work` is the trial work queue, in order.

    `coverage_reply` answers coverage queries (None: ingest does not answer). Like JetStream,
    a durable publish with a message id already seen is dropped.
    """

    coverage_reply: CoverageReply | None = None
    events: list[JobEvent] = field(default_factory=list)
    work: asyncio.Queue[TrialWork] = field(default_factory=asyncio.Queue)
    published_work: list[TrialWork] = field(default_factory=list)
    announced: list[TrialCompleted] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    subscriptions: list[_Subscription] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    # Ids of publishes dropped as duplicates, in order.
    dropped: list[str] = field(default_factory=list)

    def _first_time(self, message_id: str) -> bool:
        if message_id in self.seen_ids:
            self.dropped.append(message_id)
            return False
        self.seen_ids.add(message_id)
        return True

    async def publish_event(self, event: JobEvent) -> None:
        if self._first_time(event.message_id):
            self.events.append(event)

    async def publish_work(self, work: TrialWork) -> None:
        if self._first_time(work.message_id):
            self.published_work.append(work)
            self.work.put_nowait(work)

    async def announce_trials(self, results: list[TrialCompleted]) -> None:
        self.announced.extend(results)
        for sub in list(self.subscriptions):
            for result in results:
                if sub.job_id == result.job_id:
                    sub.on_result(result)

    async def subscribe_trials(
        self, job_id: str, on_result: Callable[[TrialCompleted], None]
    ) -> _Subscription:
        sub = _Subscription(self, job_id, on_result)
        self.subscriptions.append(sub)
        return sub

    async def broadcast_cancel(self, job_id: str) -> None:
        self.cancels.append(job_id)

    async def coverage(self, query: CoverageQuery) -> CoverageReply:
        if self.coverage_reply is None:
            raise ConnectionError("the ingest service does not answer coverage queries")
        return self.coverage_reply

    def events_of(self, kind: type[JobEvent]) -> list[JobEvent]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class FakeDelivery:
    """A pulled message; `settled` lists what was done with it, e.g. ["nak 15"]."""

    data: bytes
    attempt: int = 1
    settled: list[str] = field(default_factory=list)
    in_progress_calls: int = 0

    async def ack(self) -> None:
        self.settled.append("ack")

    async def ack_sync(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append("nak" if delay is None else f"nak {delay:g}")

    async def term(self) -> None:
        self.settled.append("term")

    async def in_progress(self) -> None:
        self.in_progress_calls += 1


# A replica in a test ---------------------------------------------------------------------

REPLICA = "trainer-1"
SNAPSHOT = "binance_BTC-USDT_5m.snap-1"
BTC = DatasetKey(exchange="binance", symbol="BTC/USDT", timeframe="5m")


def unit_settings(**fields: Any) -> TrainerSettings:
    """Trainer settings from defaults and `fields` (by environment name), never the
    environment: small batches, a quick store poll, short give-up counts."""
    values: dict[str, Any] = {
        "TP_REPLICA": REPLICA,
        "TRAINER_BATCH_SIZE": 4,
        "TRAINER_MODEL_BATCH_SIZE": 4,
        "TRAINER_TRIALS_PER_ITEM": 2,
        "TRAINER_POLL_INTERVAL": 0.05,
        "TRAINER_JOB_MAX_DELIVER": 3,
        "TRAINER_TRIAL_MAX_DELIVER": 2,
        **fields,
    }
    return TrainerSettings.model_validate(values)


def synthetic_candles(n: int = 600) -> Candles:
    close = np.maximum(100 + np.cumsum(np.random.default_rng(7).normal(0, 1, n)), 10.0)
    return Candles.from_arrays(
        np.arange(n, dtype=np.int64) * 300_000,
        close,
        close + 1,
        close - 1,
        close,
        np.full(n, 10.0),
        timeframe_seconds=300,
    )


def coverage_of(candles: Candles) -> CoverageReply:
    return CoverageReply(
        datasets=[
            DatasetCoverage(
                dataset=BTC,
                rows=len(candles),
                first_ms=int(candles.open_time[0]),
                last_ms=int(candles.open_time[-1]),
                expected_rows=len(candles),
                gaps=0,
                missing_candles=0,
                largest_gap=None,
                content_hash=candles.content_hash(),
                snapshot=SNAPSHOT,
                updated_at="2026-01-01T00:00:00+00:00",
            )
        ]
    )


def job_request(**fields: Any) -> TrainingRequested:
    defaults: dict[str, Any] = {
        "job_id": f"job-{uuid.uuid4().hex[:12]}",
        "dataset": BTC,
        "lookback_candles": 200,
        "optimizer": "random",
        "n_iterations": 10,
        "seed": 12345,
    }
    return TrainingRequested.model_validate({**defaults, **fields})


def make_deps(
    store: MemoryJobStore | None = None,
    bus: MemoryBus | None = None,
    candles: Candles | None = None,
    **settings: Any,
) -> Deps:
    """A replica on in-memory ports, its snapshot `candles` (default a small synthetic
    history)."""
    candles = candles if candles is not None else synthetic_candles()
    snapshots = {SNAPSHOT: candles.to_bytes()}

    async def load(name: str) -> bytes:
        if name not in snapshots:
            raise SnapshotMissingError(f"dataset snapshot {name} is no longer in the object store")
        return snapshots[name]

    return Deps(
        store=store or MemoryJobStore(),
        bus=bus or MemoryBus(coverage_reply=coverage_of(candles)),
        cache=DatasetCache(load),
        settings=unit_settings(**settings),
        code_version="tradepulse-quant test",
    )


def made_up_result(work: TrialWork, trial: TrialSpec, replica: str) -> TrialCompleted:
    """A result that depends only on the parameters (as a backtest's does); every fifth trial
    fails, as one with too few trades would."""
    value = round(sum(float(v) for v in trial.params.values()) % 7.0, 9)
    failed = trial.number % 5 == 3
    return TrialCompleted(
        message_id=f"{work.job_id}.trial.{trial.number}.done",
        job_id=work.job_id,
        number=trial.number,
        params=trial.params,
        state="failed" if failed else "complete",
        value=None if failed else value,
        metrics={"sharpe_ratio": None if failed else value, "total_trades": 0 if failed else 5},
        fingerprint=f"fp-{value}",
        duration_ms=1.0,
        replica=replica,
        reason="0 trades, fewer than min_trades 1" if failed else None,
    )


class Worker:
    """Trial replicas: evaluates the work items the bus queued, with `made_up_result`.

    Only trials numbered below `limit` are evaluated (None: all); raise it with `allow`.
    `repeat` delivers every item that many times (a redelivered or duplicated item);
    `result` replaces `made_up_result`; `real` evaluates with the trainer's own backtest
    (evaluate.evaluate on the replica's dataset cache)."""

    def __init__(
        self,
        deps: Deps,
        *,
        limit: int | None = None,
        repeat: int = 1,
        result: Callable[[TrialWork, TrialSpec, str], TrialCompleted] | None = None,
        real: bool = False,
    ) -> None:
        assert isinstance(deps.bus, MemoryBus)
        self.deps = deps
        self.result = result or made_up_result
        self.bus = deps.bus
        self.limit = limit
        self.repeat = repeat
        self.real = real
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def allow(self, limit: int | None) -> None:
        self.limit = limit
        self._changed.set()

    async def _run(self) -> None:
        while True:
            work = await self.bus.work.get()
            while self.limit is not None and work.trials[-1].number >= self.limit:
                self._changed.clear()
                await self._changed.wait()
            for _ in range(self.repeat):
                if self.real:
                    results = [
                        await evaluate(work, t, self.deps.cache, "trainer-w") for t in work.trials
                    ]
                else:
                    results = [self.result(work, t, "trainer-w") for t in work.trials]
                await store_trials(work, results, self.deps)

    async def __aenter__(self) -> Worker:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def eventually(check: Callable[[], bool], within: float = 30.0) -> None:
    """Wait until `check()` holds, polling; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


async def no_heartbeat(delivery: Delivery, job_id: str) -> None:
    """The heartbeat of a test replica: leases are moved by the test's clock instead."""
