"""The trainer process's edge: connections, two JetStream pull loops (jobs, trials), the
intake loop, request/reply handlers, the heartbeat and the metrics loop.

The trainer uses nats-py directly rather than FastStream: holding a job for minutes needs its
own heartbeat (in-progress acks), a nak on shutdown so another replica takes the job at once,
and confirmed acks. Both loops share one event loop; a trial is a few milliseconds of CPU.
Everything between a message's bytes and its ack is in deliveries.py; the decisions are in
plan.py and policy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, get_args

import asyncpg
import nats.errors
import numpy as np
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import ObjectNotFoundError

from tradepulse.common.bus import connect, ensure_streams, get_object
from tradepulse.common.contracts.base import Message
from tradepulse.common.contracts.training import (
    CancelJob,
    GetEnsemble,
    GetJob,
    JobStatus,
    ListJobs,
    ListTrials,
)
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.common.logging import get_logger
from tradepulse.common.metrics import serve_metrics
from tradepulse.quant import Candles, LiquiditySweep, code_version, last_window, run_backtest
from tradepulse.trainer import deliveries, queries
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.errors import SnapshotMissingError
from tradepulse.trainer.evaluate import DatasetCache
from tradepulse.trainer.nats_bus import JetStreamDelivery, NatsBus
from tradepulse.trainer.ports import Delivery
from tradepulse.trainer.repository import TrainingRepository, init_connection
from tradepulse.trainer.settings import TrainerSettings

log = get_logger("trainer")

M = TypeVar("M", bound=Message)


class Trainer:
    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.names = settings.names
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._job_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect, set up streams and consumers, and start the loops; `stop` undoes it."""
        s = self.settings
        self.pool = await create_pool(s.database_url, init=init_connection, max_size=4)
        await apply_migrations(self.pool, "training", "tradepulse.trainer.migrations")
        self.nc: NatsClient = await connect(s.nats_url, f"trainer-{s.replica}")
        self.js: JetStreamContext = self.nc.jetstream()
        await ensure_streams(self.js, self.names, s.stream_replicas)
        self.deps = Deps(
            store=TrainingRepository(self.pool),
            bus=NatsBus(self.nc, self.js, self.names, s.coverage_wait),
            cache=DatasetCache(self._load_snapshot),
            settings=s,
            code_version=code_version(),
        )
        _warm_up_compiled_code()
        serve_metrics(self.deps.metrics.registry, s.metrics_port)
        n = self.names
        deps = self.deps
        await self._reply(n.cancel_job, CancelJob, lambda r: queries.cancel_job(r, deps))
        await self._reply(n.get_job, GetJob, lambda r: queries.get_job(r, deps))
        await self._reply(n.list_trials, ListTrials, lambda r: queries.list_trials(r, deps))
        await self._reply(n.list_jobs, ListJobs, lambda r: queries.list_jobs(r, deps))
        await self._reply(n.get_ensemble, GetEnsemble, lambda r: queries.get_ensemble(r, deps))
        await self._reply(n.run_backtest, queries.RunBacktest, lambda r: queries.backtest(r, deps))
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

    async def _load_snapshot(self, name: str) -> bytes:
        try:
            return await get_object(self.js, self.names.candles_bucket, name)
        except ObjectNotFoundError as exc:
            # Not a passing fault like the other NATS errors: retrying cannot bring it back.
            raise SnapshotMissingError(
                f"dataset snapshot {name} is no longer in the object store"
            ) from exc

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
        model: type[M],
        handler: Callable[[M], Awaitable[Message]],
    ) -> None:
        async def callback(msg: Msg) -> None:
            await msg.respond((await queries.answer(model, msg.data, handler)).to_bytes())

        await self.nc.subscribe(subject, queue=self.names.trainer_queue, cb=callback)

    async def _on_ping(self, msg: Msg) -> None:
        await msg.respond(self.settings.replica.encode())

    async def _on_cancel_broadcast(self, msg: Msg) -> None:
        self.deps.cancels.cancel(msg.subject.rsplit(".", 1)[-1])

    async def _fetch(self, sub: Any, batch: int, what: str) -> list[Msg]:
        """Up to `batch` messages, or none after a second (or a NATS error, logged)."""
        try:
            msgs: list[Msg] = await sub.fetch(batch, timeout=1.0)
            return msgs
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except nats.errors.Error as exc:
            log.warning(f"fetching {what} failed", error=str(exc))
            await asyncio.sleep(0.5)
            return []

    async def _intake_loop(self) -> None:
        """Record every submitted job as queued at once, before any replica has a free slot."""
        while not self._stopping.is_set():
            for msg in await self._fetch(self.intake_sub, 16, "submitted jobs"):
                await deliveries.intake(JetStreamDelivery(msg), self.deps)

    async def _job_loop(self) -> None:
        slots = asyncio.Semaphore(self.settings.max_jobs)
        while not self._stopping.is_set():
            await slots.acquire()
            msgs = await self._fetch(self.jobs_sub, 1, "jobs")
            if not msgs:
                slots.release()
                continue
            task = asyncio.create_task(
                deliveries.job(JetStreamDelivery(msgs[0]), self.deps, self._heartbeat)
            )
            self._job_tasks.add(task)
            task.add_done_callback(self._job_tasks.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _heartbeat(self, delivery: Delivery, job_id: str) -> None:
        await deliveries.heartbeat(delivery, job_id, self.deps)

    async def _trial_loop(self) -> None:
        metrics = self.deps.metrics
        while not self._stopping.is_set():
            for msg in await self._fetch(self.trials_sub, self.settings.trial_fetch, "trials"):
                results = await deliveries.trial_work(JetStreamDelivery(msg), self.deps)
                for result in results:
                    metrics.trials.labels(result.state).inc()
                    metrics.trial_seconds.observe(result.duration_ms / 1000)
                metrics.trials_done += len(results)

    async def _metrics_loop(self) -> None:
        metrics = self.deps.metrics
        last_count, last_time = metrics.trials_done, time.monotonic()
        while not self._stopping.is_set():
            await asyncio.sleep(10)
            now = time.monotonic()
            metrics.trials_per_second.set((metrics.trials_done - last_count) / (now - last_time))
            last_count, last_time = metrics.trials_done, now
            metrics.nats_connected.set(1 if self.nc.is_connected else 0)
            try:
                counts = await self.deps.store.jobs_by_status()
            except Exception:
                # Whatever stops the query (refused, timed out, pool closed), the alert wants 0.
                metrics.database_up.set(0)
            else:
                metrics.database_up.set(1)
                # Every status, so that one that empties reads 0 instead of its last count.
                for status in get_args(JobStatus):
                    metrics.jobs.labels(status).set(counts.get(status, 0))
            with contextlib.suppress(Exception):
                for queue, stream, durable in (
                    ("jobs", self.names.jobs_stream, self.names.trainer_jobs_durable),
                    ("trials", self.names.trials_stream, self.names.trainer_trials_durable),
                ):
                    info = await self.js.consumer_info(stream, durable)
                    metrics.backlog.labels(queue).set(info.num_pending + info.num_ack_pending)


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
