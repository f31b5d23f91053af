"""The trainer process: two JetStream pull loops (jobs, trials) and request/reply handlers.

The trainer uses nats-py directly rather than FastStream: holding a job for minutes needs its
own heartbeat (in-progress acks), a nak on shutdown so another replica takes the job at once,
and confirmed acks. Both loops share one event loop; a trial is a few milliseconds of CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import nats.errors
import numpy as np
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import ObjectNotFoundError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from tradepulse.common.bus import connect, ensure_streams, get_object
from tradepulse.common.contracts.base import ErrorReply, Message
from tradepulse.common.contracts.training import (
    CancelJob,
    CancelReply,
    EnsembleReply,
    GetEnsemble,
    GetJob,
    JobReply,
    JobsReply,
    ListJobs,
    ListTrials,
    TrainingRequested,
    TrialsReply,
    TrialWork,
)
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.common.db.pool import TRANSIENT as DATABASE_TRANSIENT
from tradepulse.common.logging import get_logger
from tradepulse.common.metrics import new_registry, serve_metrics
from tradepulse.quant import Candles, LiquiditySweep, last_window, run_backtest
from tradepulse.trainer.errors import JobHeldElsewhereError, SnapshotMissingError
from tradepulse.trainer.evaluate import DatasetCache
from tradepulse.trainer.handlers import (
    Deps,
    code_version,
    finish_failed,
    get_ensemble,
    give_up_trials,
    hold_job,
    job_view,
    publish_terminal,
    run_trials,
    trial_view,
)
from tradepulse.trainer.repository import TrainingRepository, init_connection
from tradepulse.trainer.settings import TrainerSettings

log = get_logger("trainer")

TRANSIENT = (ConnectionError, nats.errors.Error, *DATABASE_TRANSIENT)


class TrainerMetrics:
    def __init__(self) -> None:
        self.registry = new_registry()
        self.trials = Counter(
            "tradepulse_trials_total", "Trials evaluated", ["state"], registry=self.registry
        )
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


class Trainer:
    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.names = settings.names
        self.metrics = TrainerMetrics()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._job_cancels: dict[str, asyncio.Event] = {}
        self._trials_done = 0

    async def start(self) -> None:
        s = self.settings
        self.pool = await create_pool(s.database_url, init=init_connection, max_size=4)
        await apply_migrations(self.pool, "training")
        self.nc = await connect(s.nats_url, f"trainer-{s.replica}")
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, self.names, s.stream_replicas)

        async def load_snapshot(name: str) -> bytes:
            try:
                return await get_object(self.js, self.names.candles_bucket, name)
            except ObjectNotFoundError as exc:
                # Not a passing fault like the other NATS errors: retrying cannot bring it back.
                raise SnapshotMissingError(
                    f"dataset snapshot {name} is no longer in the object store"
                ) from exc

        self.deps = Deps(
            repo=TrainingRepository(self.pool),
            nc=self.nc,
            js=self.js,
            names=self.names,
            cache=DatasetCache(load_snapshot),
            settings=s,
            replica=s.replica,
            code_version=code_version(),
        )
        _warm_up_compiled_code()
        serve_metrics(self.metrics.registry, s.metrics_port)
        n = self.names
        await self._reply(n.cancel_job, CancelJob, self._on_cancel)
        await self._reply(n.get_job, GetJob, self._on_get_job)
        await self._reply(n.list_trials, ListTrials, self._on_list_trials)
        await self._reply(n.list_jobs, ListJobs, self._on_list_jobs)
        await self._reply(n.get_ensemble, GetEnsemble, self._on_get_ensemble)
        await self.nc.subscribe(n.cancel_broadcast("*"), cb=self._on_cancel_broadcast)
        self.jobs_sub = await self._pull(
            n.training_requested, n.trainer_jobs_durable, n.jobs_stream, s.job_ack_wait
        )
        self.intake_sub = await self._pull(
            n.training_requested, n.trainer_intake_durable, n.jobs_stream, s.job_ack_wait
        )
        self.trials_sub = await self._pull(
            n.trial_work, n.trainer_trials_durable, n.trials_stream, s.trial_ack_wait
        )
        self._tasks = [
            asyncio.create_task(self._intake_loop(), name="intake"),
            asyncio.create_task(self._job_loop(), name="jobs"),
            asyncio.create_task(self._trial_loop(), name="trials"),
            asyncio.create_task(self._metrics_loop(), name="metrics"),
        ]
        # Readiness: every replica answers (no queue group), so a supervisor can count them.
        await self.nc.subscribe(n.ping("trainer"), cb=self._on_ping)
        log.info("trainer ready", replica=s.replica, code_version=self.deps.code_version)

    async def stop(self, grace: float = 5.0) -> None:
        """Hand held jobs back (nak), close connections; every step bounded by `grace`, so a
        lost database or NATS cannot keep the process from exiting."""
        self._stopping.set()
        running = {*self._job_tasks, *self._tasks}
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=grace)
        # Every message handled has been acked or nak'ed by now; draining would only wait for
        # the pull subscriptions' open fetches to time out.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), grace)
        try:
            await asyncio.wait_for(self.pool.close(), grace)
        except (TimeoutError, OSError, asyncpg.exceptions.PostgresError):
            self.pool.terminate()

    async def _pull(self, subject: str, durable: str, stream: str, ack_wait: float) -> Any:
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,
            max_ack_pending=10_000,
        )
        for attempt in range(20):
            try:
                return await self.js.pull_subscribe(
                    subject, durable=durable, stream=stream, config=config
                )
            except nats.js.errors.BadRequestError:
                # Another replica created the same durable consumer at the same moment.
                await asyncio.sleep(0.1 * (attempt + 1))
        return await self.js.pull_subscribe(subject, durable=durable, stream=stream, config=config)

    async def _reply(
        self,
        subject: str,
        model: type[Message],
        handler: Callable[[Any], Awaitable[Message]],
    ) -> None:
        async def callback(msg: Msg) -> None:
            try:
                request = model.from_bytes(msg.data)
            except ValidationError as exc:
                await msg.respond(ErrorReply(error=f"invalid request: {exc}").to_bytes())
                return
            try:
                reply = await handler(request)
            except TRANSIENT as exc:
                reply = ErrorReply(error=f"trainer unavailable: {exc}")
            await msg.respond(reply.to_bytes())

        await self.nc.subscribe(subject, queue=self.names.trainer_queue, cb=callback)

    async def _on_ping(self, msg: Msg) -> None:
        await msg.respond(self.settings.replica.encode())

    async def _on_cancel(self, request: CancelJob) -> CancelReply:
        row = await self.deps.repo.request_cancel(request.job_id)
        if row is None:
            return CancelReply(job_id=request.job_id, status=None, found=False)
        await self.nc.publish(self.names.cancel_broadcast(request.job_id), b"")
        if row["status"] == "cancelled":
            await publish_terminal(request.job_id, self.deps)
        return CancelReply(job_id=request.job_id, status=row["status"], found=True)

    async def _on_cancel_broadcast(self, msg: Msg) -> None:
        job_id = msg.subject.rsplit(".", 1)[-1]
        self.deps.cancelled_jobs.add(job_id)
        event = self._job_cancels.get(job_id)
        if event is not None:
            event.set()

    async def _on_get_job(self, request: GetJob) -> JobReply:
        return JobReply(job=await job_view(request.job_id, self.deps))

    async def _on_list_jobs(self, request: ListJobs) -> JobsReply:
        total, ids = await self.deps.repo.list_jobs(
            request.status, request.symbol, request.strategy, request.limit, request.offset
        )
        views = [await job_view(job_id, self.deps) for job_id in ids]
        return JobsReply(total=total, jobs=[v for v in views if v is not None])

    async def _on_get_ensemble(self, request: GetEnsemble) -> EnsembleReply:
        return EnsembleReply(ensemble=await get_ensemble(request.ensemble_id, self.deps))

    async def _on_list_trials(self, request: ListTrials) -> TrialsReply:
        total, trials = await self.deps.repo.list_trials(
            request.job_id, request.limit, request.offset
        )
        return TrialsReply(
            job_id=request.job_id, total=total, trials=[trial_view(t) for t in trials]
        )

    async def _intake_loop(self) -> None:
        """Record every submitted job as queued at once, before any replica has a free slot."""
        while not self._stopping.is_set():
            try:
                msgs = await self.intake_sub.fetch(16, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("fetching submitted jobs failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    await self.deps.repo.create_job(TrainingRequested.from_bytes(msg.data))
                except ValidationError:
                    await msg.term()  # the holder loop logs and refuses it too
                    continue
                except TRANSIENT as exc:
                    log.warning("recording a submitted job failed; retrying", error=str(exc))
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=1)
                    continue
                with contextlib.suppress(Exception):
                    await msg.ack()

    async def _job_loop(self) -> None:
        slots = asyncio.Semaphore(self.settings.max_jobs)
        while not self._stopping.is_set():
            await slots.acquire()
            try:
                msgs = await self.jobs_sub.fetch(1, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                slots.release()
                continue
            except nats.errors.Error as exc:
                slots.release()
                log.warning("fetching jobs failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            task = asyncio.create_task(self._handle_job(msgs[0]))
            self._job_tasks.add(task)
            task.add_done_callback(self._job_tasks.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _handle_job(self, msg: Msg) -> None:
        try:
            request = TrainingRequested.from_bytes(msg.data)
        except ValidationError as exc:
            log.error("refusing a malformed TrainingRequested", error=str(exc))
            await msg.term()
            return
        job_id = request.job_id
        if job_id in self._job_cancels:
            # Delivered again while this replica still runs it (its heartbeat was late):
            # running it twice here would only do the work twice.
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.settings.lease_seconds)
            return
        structlog.contextvars.bind_contextvars(job_id=job_id)
        cancel = asyncio.Event()
        if job_id in self.deps.cancelled_jobs:
            cancel.set()
        self._job_cancels[job_id] = cancel
        heartbeat = asyncio.create_task(self._heartbeat(msg, job_id))
        self.metrics.jobs_held.inc()
        try:
            if msg.metadata.num_delivered > self.settings.job_max_deliver:
                await self.deps.repo.create_job(request)
                if await self.deps.repo.held_by_another(job_id, self.settings.replica):
                    # Deliveries also count the naks of duplicates and shutdowns: a job with
                    # a live holder is running, not failing.
                    raise JobHeldElsewhereError(job_id)
                await finish_failed(
                    job_id,
                    f"gave up after {self.settings.job_max_deliver} attempts; see the trainer logs",
                    self.deps,
                )
            else:
                status = await hold_job(request, self.deps, cancel)
                log.info("job finished", status=status)
            await msg.ack_sync()
        except asyncio.CancelledError:
            # Shutting down: hand the job to another replica now rather than after ack_wait,
            # and give up the lease so that it need not wait for the lease to run out either.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.deps.repo.release_lease(job_id, self.settings.replica), 2
                )
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except JobHeldElsewhereError:
            # A duplicate of a job another replica runs: come back once its lease could
            # have run out, in case that replica dies (then this message resumes the job).
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.settings.lease_seconds)
        except TRANSIENT as exc:
            log.warning("job interrupted; it will be retried", error=str(exc))
            with contextlib.suppress(Exception):
                await msg.nak(delay=2)
        except Exception as exc:
            log.exception("job crashed")
            with contextlib.suppress(Exception):
                await finish_failed(
                    job_id, f"internal error: {type(exc).__name__}: {exc}", self.deps
                )
                await msg.ack_sync()
        finally:
            heartbeat.cancel()
            self.metrics.jobs_held.dec()
            self._job_cancels.pop(job_id, None)
            structlog.contextvars.unbind_contextvars("job_id")

    async def _heartbeat(self, msg: Msg, job_id: str) -> None:
        beat = self.settings.job_ack_wait / 3
        while True:
            await asyncio.sleep(beat)
            with contextlib.suppress(Exception):
                await msg.in_progress()
            # Bounded: a renewal waiting on a database that is away must not delay the next
            # in-progress ack past JetStream's ack_wait.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.deps.repo.renew_lease(
                        job_id, self.settings.replica, self.settings.lease_seconds
                    ),
                    beat,
                )

    async def _trial_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await self.trials_sub.fetch(self.settings.trial_fetch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("fetching trials failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self._handle_trial(msg)

    async def _handle_trial(self, msg: Msg) -> None:
        try:
            work = TrialWork.from_bytes(msg.data)
        except ValidationError as exc:
            log.error("refusing a malformed trial work item", error=str(exc))
            with contextlib.suppress(Exception):
                await msg.term()
            return
        numbers = [t.number for t in work.trials]
        try:
            results = await run_trials(work, self.deps)
        except TRANSIENT as exc:
            log.warning(
                "trials interrupted; they will be retried",
                job_id=work.job_id,
                trials=numbers,
                error=str(exc),
            )
            with contextlib.suppress(Exception):
                await msg.nak(delay=1)
            return
        except Exception as exc:
            # A bug or a state this code does not expect: it must neither end this replica's
            # trial loop nor leave the job waiting forever for these trials.
            reason = f"internal error: {type(exc).__name__}: {exc}"
            attempts = msg.metadata.num_delivered or 1
            log.exception("trials crashed", job_id=work.job_id, trials=numbers, attempt=attempts)
            if attempts < self.settings.trial_max_deliver:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=2)
                return
            try:
                results = await give_up_trials(
                    work, f"gave up after {attempts} attempts: {reason}", self.deps
                )
            except Exception:
                log.exception("could not store the failed trials", job_id=work.job_id)
                with contextlib.suppress(Exception):
                    await msg.nak(delay=5)
                return
        for result in results:
            self.metrics.trials.labels(result.state).inc()
            self.metrics.trial_seconds.observe(result.duration_ms / 1000)
        self._trials_done += len(results)
        with contextlib.suppress(Exception):
            await msg.ack()

    async def _metrics_loop(self) -> None:
        last_count, last_time = self._trials_done, time.monotonic()
        while not self._stopping.is_set():
            await asyncio.sleep(10)
            now = time.monotonic()
            self.metrics.trials_per_second.set((self._trials_done - last_count) / (now - last_time))
            last_count, last_time = self._trials_done, now
            with contextlib.suppress(Exception):
                for status, count in (await self.deps.repo.jobs_by_status()).items():
                    self.metrics.jobs.labels(status).set(count)
                for queue, stream, durable in (
                    ("jobs", self.names.jobs_stream, self.names.trainer_jobs_durable),
                    ("trials", self.names.trials_stream, self.names.trainer_trials_durable),
                ):
                    info = await self.js.consumer_info(stream, durable)
                    self.metrics.backlog.labels(queue).set(info.num_pending + info.num_ack_pending)


def _warm_up_compiled_code() -> None:
    """Load the core's compiled kernels now, so the first trial of a job is not the slow one."""
    n = 400
    close = np.maximum(100 + np.cumsum(np.random.default_rng(0).normal(0, 1, n)), 10.0)
    candles = Candles.from_arrays(
        np.arange(n, dtype=np.int64) * 300_000,
        close,
        close + 1,
        close - 1,
        close,
        np.full(n, 10.0),
        timeframe_seconds=300,
    )
    strategy = LiquiditySweep()
    window = last_window(candles, 100, strategy.warmup_bars(300))
    params = {p.name: int(p.low) if p.kind == "int" else p.low for p in strategy.space}
    result = run_backtest(window.candles, strategy, params, trade_from=window.trade_from)
    _ = result.fingerprint
