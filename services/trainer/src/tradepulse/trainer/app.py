"""The trainer's assembly on the common skeleton (`tradepulse.common.service`): its Deps from
the runtime the skeleton opened, then its endpoints.

- intake (a common `Consumer`): record every submitted job as queued at once, before any
  replica has a free slot;
- jobs (`JobHolder`, its own pull loop): hold up to `TRAINER_MAX_JOBS` jobs at once, each for
  minutes, under a lease renewed with every in-progress ack; at shutdown (`Runtime.on_stop`)
  every held job is nak'ed and its lease released, so that another replica takes it at once;
- trials (`trial_loop`, its own pull loop): evaluate trial work items, a few at a time;
- request/reply (`Runtime.respond`): cancel a job, read jobs and trials (queries.py);
- the cancel broadcast, and the metrics refresh every 10 s.

Why jobs and trials are not common `Consumer`s: a consumer handles one delivery at a time,
where the holder holds several jobs side by side, each with a lease besides its message; and
both settle by the trainer's retry policy (policy.py says how it differs from an `AckPolicy`).
They fetch as a consumer does (`FETCH_WAIT_S`, one `pull_failed` line per outage), their
durables are configured by a `ConsumerSpec`, and at shutdown they hand back what they hold
with an immediate nak, as a consumer does. Everything between a message's bytes and its ack is
in deliveries.py; the decisions are in plan.py and policy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, get_args

import nats.errors
import numpy as np
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError

from tradepulse.common.bus import get_object
from tradepulse.common.contracts.training import (
    CancelJob,
    GetEnsemble,
    GetJob,
    JobStatus,
    ListJobs,
    ListTrials,
    TrainingRequested,
    TrialCompleted,
)
from tradepulse.common.logging import get_logger
from tradepulse.common.service import Runtime, ServiceSpec, run_service
from tradepulse.common.subscribe import (
    FETCH_RETRY_S,
    FETCH_WAIT_S,
    AckPolicy,
    ConsumerSpec,
    pull_subscription,
)
from tradepulse.quant import Candles, LiquiditySweep, code_version, last_window, run_backtest
from tradepulse.trainer import deliveries, queries
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.errors import SnapshotMissingError
from tradepulse.trainer.evaluate import DatasetCache
from tradepulse.trainer.metrics import TrainerMetrics
from tradepulse.trainer.nats_bus import JetStreamDelivery, NatsBus
from tradepulse.trainer.policy import describe
from tradepulse.trainer.ports import Delivery
from tradepulse.trainer.repository import TrainingRepository, init_connection
from tradepulse.trainer.settings import TrainerSettings

log = get_logger("trainer")

SPEC = ServiceSpec(
    name="trainer",
    schema="training",
    migrations="tradepulse.trainer.migrations",
    pool_size=4,
    pool_init=init_connection,
)
# Jobs and trials: unsettled deliveries, delayed naks included, before the server stops
# delivering (a database away naks every trial work item it meets).
MAX_ACK_PENDING = 10_000
METRICS_INTERVAL_S = 10.0
INTAKE_BATCH = 16


def intake_policy(settings: TrainerSettings) -> AckPolicy:
    """Recording a job is one insert: a failure (PostgreSQL away) is retried every second for
    as long as it lasts, so that the job shows as queued as soon as it can; a body no version
    can read is terminated (the holder refuses it too, and says so)."""
    return AckPolicy(
        ack_wait_s=settings.job_ack_wait,
        max_deliver=-1,
        retry_delay_s=1.0,
        retry_backoff=1.0,
        max_retry_delay_s=1.0,
        confirm_ack=False,
    )


def consumer_specs(rt: Runtime[TrainerSettings]) -> tuple[ConsumerSpec, ConsumerSpec, ConsumerSpec]:
    """The intake's, the holder's and the trial workers' durable consumers."""
    s, n = rt.settings, rt.names
    # The holder and the trial loop settle by policy.RetryPolicy: the server never gives up.
    forever = AckPolicy(ack_wait_s=s.job_ack_wait, max_deliver=-1)
    return (
        ConsumerSpec(
            name="intake",
            stream=n.jobs_stream,
            subject=n.training_requested,
            durable=n.trainer_intake_durable,
            policy=intake_policy(s),
            batch=INTAKE_BATCH,
            max_ack_pending=MAX_ACK_PENDING,
        ),
        ConsumerSpec(
            name="jobs",
            stream=n.jobs_stream,
            subject=n.training_requested,
            durable=n.trainer_jobs_durable,
            policy=forever,
            max_ack_pending=MAX_ACK_PENDING,
        ),
        ConsumerSpec(
            name="trials",
            stream=n.trials_stream,
            subject=n.trial_work,
            durable=n.trainer_trials_durable,
            policy=AckPolicy(ack_wait_s=s.trial_ack_wait, max_deliver=-1),
            batch=s.trial_fetch,
            max_ack_pending=MAX_ACK_PENDING,
        ),
    )


async def setup(rt: Runtime[TrainerSettings]) -> None:
    settings, names = rt.settings, rt.names
    deps = Deps(
        store=TrainingRepository(rt.pool),
        bus=NatsBus(rt.nc, rt.js, names, settings.coverage_wait),
        cache=DatasetCache(snapshot_loader(rt.js, names.candles_bucket)),
        settings=settings,
        code_version=code_version(),
        metrics=TrainerMetrics(rt.registry),
    )
    _warm_up_compiled_code()
    await rt.respond(
        names.cancel_job, CancelJob, lambda r: queries.cancel_job(r, deps), name="cancel_job"
    )
    await rt.respond(names.get_job, GetJob, lambda r: queries.get_job(r, deps), name="get_job")
    await rt.respond(
        names.list_trials, ListTrials, lambda r: queries.list_trials(r, deps), name="list_trials"
    )
    await rt.respond(
        names.list_jobs, ListJobs, lambda r: queries.list_jobs(r, deps), name="list_jobs"
    )
    await rt.respond(
        names.get_ensemble,
        GetEnsemble,
        lambda r: queries.get_ensemble(r, deps),
        name="get_ensemble",
    )
    await rt.respond(
        names.run_backtest,
        queries.RunBacktest,
        lambda r: queries.backtest(r, deps),
        name="run_backtest",
    )
    await rt.respond(
        names.walk_forward_equity,
        queries.GetWalkForwardEquity,
        lambda r: queries.walk_forward_equity(r, deps),
        name="walk_forward_equity",
    )

    async def on_cancel_broadcast(msg: Msg) -> None:
        deps.cancels.cancel(msg.subject.rsplit(".", 1)[-1])

    # Closed with the connection at teardown.
    await rt.nc.subscribe(names.cancel_broadcast("*"), cb=on_cancel_broadcast)

    intake, jobs, trials = consumer_specs(rt)

    async def record_submitted(request: TrainingRequested) -> None:
        await deps.store.create_job(request)

    await rt.consume(intake, TrainingRequested, record_submitted)
    holder = JobHolder(Puller(await pull_subscription(rt.js, jobs), jobs.name), deps)
    rt.background(holder.run(), name="jobs")
    rt.on_stop(holder.hand_back)
    rt.background(
        trial_loop(Puller(await pull_subscription(rt.js, trials), trials.name), trials.batch, deps),
        name="trials",
    )
    rt.background(metrics_loop(rt, deps, (jobs, trials)), name="metrics")
    log.info("trainer_set_up", replica=settings.replica, code_version=deps.code_version)


def main() -> int:
    return run_service(SPEC, TrainerSettings, setup)


def snapshot_loader(js: JetStreamContext, bucket: str) -> Callable[[str], Awaitable[bytes]]:
    async def load(name: str) -> bytes:
        try:
            return await get_object(js, bucket, name)
        except ObjectNotFoundError as exc:
            # Not a passing fault like the other NATS errors: retrying cannot bring it back.
            raise SnapshotMissingError(
                f"dataset snapshot {name} is no longer in the object store"
            ) from exc

    return load


class Puller:
    """Fetches from a pull subscription as the common `Consumer` does: up to `batch` messages,
    none after `FETCH_WAIT_S`; a NATS error pauses `FETCH_RETRY_S` and is logged once per
    outage."""

    def __init__(self, sub: JetStreamContext.PullSubscription, endpoint: str) -> None:
        self._sub = sub
        self._log = log.bind(endpoint=endpoint)
        self._failures = 0

    async def fetch(self, batch: int) -> list[Msg]:
        try:
            msgs: list[Msg] = await self._sub.fetch(batch, timeout=FETCH_WAIT_S)
        except TimeoutError:  # nats.errors.TimeoutError is one too: an idle queue
            return []
        except (nats.errors.Error, OSError) as exc:
            if self._failures == 0:
                self._log.warning("pull_failed", error=describe(exc))
            self._failures += 1
            await asyncio.sleep(FETCH_RETRY_S)
            return []
        self._failures = 0
        return msgs


class JobHolder:
    """Holds up to `TRAINER_MAX_JOBS` jobs at once, each in its own task (deliveries.job)."""

    def __init__(self, puller: Puller, deps: Deps) -> None:
        self._puller = puller
        self._deps = deps
        self._held: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self._loop = asyncio.current_task()
        slots = asyncio.Semaphore(self._deps.settings.max_jobs)
        while True:
            await slots.acquire()
            msgs = await self._puller.fetch(1)
            if not msgs:
                slots.release()
                continue
            task = asyncio.create_task(
                deliveries.job(JetStreamDelivery(msgs[0]), self._deps, self._heartbeat)
            )
            self._held.add(task)
            task.add_done_callback(self._held.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _heartbeat(self, delivery: Delivery, job_id: str) -> None:
        await deliveries.heartbeat(delivery, job_id, self._deps)

    async def hand_back(self) -> None:
        """Stop taking jobs, then hand every held one back: each job's task, cancelled, naks
        its message and releases its lease (deliveries.job), so another replica takes it at
        once. The skeleton bounds this by the shutdown grace."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        held = set(self._held)
        for task in held:
            task.cancel()
        if held:
            await asyncio.wait(held)


# Work items evaluated or being stored at once: while one item's trials travel to PostgreSQL
# and NATS, the next one is evaluated, so a round trip no longer leaves the core idle.
TRIALS_IN_FLIGHT = 2


async def trial_loop(puller: Puller, batch: int, deps: Deps) -> None:
    """Evaluate work items in the order fetched, the next fetch already under way, and up to
    TRIALS_IN_FLIGHT items at once (an evaluation is CPU work that holds the event loop, so
    items overlap only where one waits on a store). Cancelled at teardown, it naks the items
    it holds and has not settled, as a consumer does, so another replica takes them at once.
    """
    metrics = deps.metrics
    in_hand: list[Msg] = []
    running: dict[asyncio.Task[list[TrialCompleted]], Msg] = {}
    fetching: asyncio.Task[list[Msg]] | None = None

    def settled(task: asyncio.Task[list[TrialCompleted]]) -> None:
        running.pop(task, None)
        if task.cancelled() or task.exception() is not None:
            return
        for result in task.result():
            metrics.trials.labels(result.state).inc()
            metrics.trial_seconds.observe(result.duration_ms / 1000)
        metrics.trials_done += len(task.result())

    try:
        while True:
            if fetching is None and len(in_hand) < batch:
                fetching = asyncio.create_task(puller.fetch(batch))
            if in_hand and len(running) < TRIALS_IN_FLIGHT:
                msg = in_hand.pop(0)
                task = asyncio.create_task(deliveries.trial_work(JetStreamDelivery(msg), deps))
                running[task] = msg
                task.add_done_callback(settled)
                continue
            waits: set[asyncio.Future[Any]] = set(running)
            if fetching is not None:
                waits.add(fetching)
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for finished in done - {fetching}:
                finished.result()  # a failure the retry policy does not handle stops the loop
            if fetching is not None and fetching in done:
                in_hand.extend(fetching.result())
                fetching = None
    except asyncio.CancelledError:
        if fetching is not None:
            fetching.cancel()
        started = list(running.items())
        for task, _ in started:
            task.cancel()
        if started:
            await asyncio.wait([task for task, _ in started])
        # An item whose task ended by itself meanwhile was settled by it.
        unsettled = [msg for task, msg in started if task.cancelled() or task.exception()]
        for msg in [*unsettled, *in_hand]:
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.nak()
        raise


async def metrics_loop(
    rt: Runtime[TrainerSettings], deps: Deps, queues: tuple[ConsumerSpec, ...]
) -> None:
    last = (deps.metrics.trials_done, time.monotonic())
    while True:
        await asyncio.sleep(METRICS_INTERVAL_S)
        last = await refresh_metrics(rt, deps, queues, last)


async def refresh_metrics(
    rt: Runtime[TrainerSettings],
    deps: Deps,
    queues: tuple[ConsumerSpec, ...],
    last: tuple[int, float],
) -> tuple[int, float]:
    """One round: the trial rate since `last` (trials done, monotonic time), the NATS and
    database gauges, every job status (one that empties reads 0, not its last count) and the
    backlog of each queue. Returns the new `last`."""
    metrics = deps.metrics
    now = time.monotonic()
    metrics.trials_per_second.set((metrics.trials_done - last[0]) / max(now - last[1], 1e-9))
    metrics.nats_connected.set(1 if rt.nc.is_connected else 0)
    try:
        counts = await deps.store.jobs_by_status()
    except Exception:
        # Whatever stops the query (refused, timed out, pool closed), the alert wants 0.
        metrics.database_up.set(0)
    else:
        metrics.database_up.set(1)
        for status in get_args(JobStatus):
            metrics.jobs.labels(status).set(counts.get(status, 0))
    with contextlib.suppress(Exception):
        for spec in queues:
            info = await rt.js.consumer_info(spec.stream, spec.durable)
            metrics.backlog.labels(spec.name).set(info.num_pending + info.num_ack_pending)
    return metrics.trials_done, now


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
