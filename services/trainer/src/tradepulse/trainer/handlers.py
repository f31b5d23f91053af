"""Use cases of the trainer: hold a job, evaluate a trial, cancel, answer queries.

Holding a job: resolve its data window once (recorded with the job so a resumed job uses the
same snapshot), rebuild the study from the trials of complete batches already stored, then
for each batch: ask, publish the work items still missing, wait for every result, tell in
trial order, record progress. A replica that takes over a job after a crash runs exactly this
code, so its trials are those of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from tradepulse.common.bus import publish
from tradepulse.common.contracts.market import CoverageQuery, CoverageReply, DatasetCoverage
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import (
    DataWindow,
    EnsembleView,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgress,
    JobView,
    TrainingRequested,
    TrialCompleted,
    TrialSpec,
    TrialView,
    TrialWork,
)
from tradepulse.common.logging import get_logger
from tradepulse.quant import QuantError, get_strategy, last_window, range_window
from tradepulse.trainer.errors import JobError, JobHeldElsewhereError, SnapshotMissingError
from tradepulse.trainer.evaluate import DatasetCache, evaluate
from tradepulse.trainer.optimizer import Asked, BatchOptimizer, SamplerSpec, Told
from tradepulse.trainer.repository import TERMINAL, StoredTrial, TrainingRepository
from tradepulse.trainer.settings import TrainerSettings
from tradepulse.trainer.validation import ensemble_view, record_report

log = get_logger("trainer")


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
    repo: TrainingRepository
    nc: NatsClient
    js: JetStreamContext
    names: Names
    cache: DatasetCache
    settings: TrainerSettings
    replica: str
    code_version: str
    cancelled_jobs: set[str] = field(default_factory=set)


def progress_of(done: int, total: int) -> float:
    """Percent done to 0.1, rounded down: 100.0 only once every trial is in."""
    return (1000 * done // total) / 10


async def resolve_window(request: TrainingRequested, deps: Deps) -> DataWindow:
    """Find the dataset's current snapshot (asking ingest) and cut the job's window from it."""
    query = CoverageQuery(
        exchange=request.dataset.exchange,
        symbol=request.dataset.symbol,
        timeframe=request.dataset.timeframe,
    )
    reply: CoverageReply | None = None
    deadline = asyncio.get_running_loop().time() + deps.settings.coverage_wait
    while reply is None:
        try:
            msg = await deps.nc.request(deps.names.coverage, query.to_bytes(), timeout=5)
            reply = CoverageReply.from_bytes(msg.data)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise ConnectionError(
                    "the ingest service does not answer coverage queries"
                ) from exc
            await asyncio.sleep(1.0)
    match: DatasetCoverage | None = next(
        (d for d in reply.datasets if d.dataset == request.dataset), None
    )
    key = request.dataset
    if match is None:
        raise JobError(
            f"no candles for {key.exchange} {key.symbol} {key.timeframe}: ingest them first"
        )
    history = await deps.cache.history(match.snapshot)
    strategy = get_strategy(request.strategy)
    warmup = strategy.warmup_bars(history.timeframe_seconds)
    try:
        if request.lookback_candles is not None:
            window = last_window(history, request.lookback_candles, warmup)
        else:
            assert request.start_ms is not None
            window = range_window(history, request.start_ms, request.end_ms, warmup)
    except QuantError as exc:
        raise JobError(f"{key.exchange} {key.symbol} {key.timeframe}: {exc}") from exc
    c = window.candles
    return DataWindow(
        snapshot=match.snapshot,
        content_hash=match.content_hash,
        begin=c.first_row,
        stop=c.first_row + len(c),
        trade_from=window.trade_from,
        first_ms=int(c.open_time[window.trade_from]),
        last_ms=int(c.open_time[-1]),
    )


class BatchResults:
    """Collects TrialCompleted events of one job as they arrive on the bus."""

    def __init__(self) -> None:
        self.results: dict[int, TrialCompleted] = {}
        self.arrived = asyncio.Event()

    async def on_message(self, msg: Any) -> None:
        result = TrialCompleted.from_bytes(msg.data)
        self.results[result.number] = result
        self.arrived.set()


def _stored_to_completed(job_id: str, t: StoredTrial) -> TrialCompleted:
    return TrialCompleted(
        message_id=f"{job_id}.trial.{t.number}.done",
        job_id=job_id,
        number=t.number,
        params=t.params,
        state="complete" if t.state == "complete" else "failed",
        value=t.value,
        metrics=t.metrics,
        fingerprint=t.fingerprint,
        duration_ms=t.duration_ms,
        replica=t.replica,
        reason=t.reason,
    )


def best_of(results: dict[int, TrialCompleted]) -> TrialCompleted | None:
    """The highest objective value; the lowest trial number among equals."""
    best: TrialCompleted | None = None
    for number in sorted(results):
        r = results[number]
        if r.value is None or not math.isfinite(r.value):
            continue
        if best is None or r.value > best.value:  # type: ignore[operator]
            best = r
    return best


async def hold_job(request: TrainingRequested, deps: Deps, cancel: asyncio.Event) -> str:
    """Run (or resume) a job to its end. Returns the job's final status."""
    job_id = request.job_id
    repo = deps.repo
    job = await repo.create_job(request)
    if job["status"] in TERMINAL:
        await publish_terminal(job_id, deps)
        return str(job["status"])
    if job["cancel_requested"]:
        return await finish_cancelled(job_id, deps)
    if not await repo.take_job(job_id, deps.replica, deps.settings.lease_seconds):
        raise JobHeldElsewhereError(job_id)
    try:
        window = (
            DataWindow.model_validate(job["data_window"])
            if job["data_window"]
            else await resolve_window(request, deps)
        )
        space = get_strategy(request.strategy).space
    except (JobError, QuantError) as exc:
        return await finish_failed(job_id, str(exc), deps)

    default_batch = (
        deps.settings.model_batch_size
        if request.optimizer in ("bayesian", "cmaes")
        else deps.settings.batch_size
    )
    batch_size = job["batch_size"] or request.batch_size or default_batch
    spec = SamplerSpec(request.optimizer, batch_size)
    await repo.start_job(
        job_id,
        sampler=spec.description,
        sampler_version=spec.version,
        batch_size=batch_size,
        window=window.model_dump(mode="json"),
    )
    n = request.n_iterations
    rows = await repo.stored_trials(job_id)
    stored = {t.number: _stored_to_completed(job_id, t) for t in rows}
    attrs = {t.number: t.system_attrs for t in rows}
    complete_batches = 0
    while complete_batches * batch_size < n and all(
        k in stored
        for k in range(complete_batches * batch_size, min((complete_batches + 1) * batch_size, n))
    ):
        complete_batches += 1
    told_upto = min(complete_batches * batch_size, n)
    history = [
        Told(k, stored[k].params, stored[k].value, attrs.get(k, {})) for k in range(told_upto)
    ]
    # The sampler's work runs in a thread: TPE's cost grows with the trials told, and the
    # event loop must keep renewing the lease and answering meanwhile.
    try:
        optimizer = await asyncio.to_thread(BatchOptimizer, spec, request.seed, space, history)
        if optimizer.grid is not None and optimizer.grid.size < n:
            raise JobError(
                f"the grid has {optimizer.grid.size:,} points, fewer than the"
                f" {n:,} trials asked: lower n_iterations"
            )
    except JobError as exc:
        return await finish_failed(job_id, str(exc), deps)
    results: dict[int, TrialCompleted] = {k: stored[k] for k in range(told_upto)}
    log.info("job held", job_id=job_id, resumed_from=told_upto, batch_size=batch_size)

    inbox = BatchResults()
    sub = await deps.nc.subscribe(deps.names.trial_completed(job_id), cb=inbox.on_message)
    # Batches asked but not yet told: one for a sampler that learns, two for one that does not,
    # so replicas that finish a batch early start on the next instead of waiting.
    depth = 1 if spec.adaptive else 2
    in_flight: list[list[int]] = []
    try:
        done = told_upto
        asked_upto = told_upto
        while done < n:
            if cancel.is_set() or await repo.cancel_requested(job_id):
                return await finish_cancelled(job_id, deps)
            while len(in_flight) < depth and asked_upto < n:
                asked = await asyncio.to_thread(
                    optimizer.ask_batch, min(batch_size, n - asked_upto)
                )
                numbers = [a.number for a in asked]
                if numbers != list(range(asked_upto, asked_upto + len(asked))):
                    raise RuntimeError(
                        f"sampler numbered trials {numbers}, expected from {asked_upto}"
                    )
                await dispatch(request, window, asked, stored, inbox, deps)
                in_flight.append(numbers)
                asked_upto += len(asked)
            numbers = in_flight.pop(0)
            batch = await wait_for_batch(job_id, numbers, inbox, deps, cancel)
            if batch is None:
                return await finish_cancelled(job_id, deps)
            await asyncio.to_thread(optimizer.tell_batch, {k: batch[k].value for k in numbers})
            results.update(batch)
            done += len(numbers)
            await record_progress(request, done, results, deps)
    finally:
        await sub.unsubscribe()
    if told_upto == n:
        # Resumed with every trial already stored (the last holder died after the workers
        # finished): nothing was told above, so the job's best and count are recorded here.
        await record_progress(request, n, results, deps)

    best = best_of(results)
    if best is None:
        reasons = {r.reason for r in results.values() if r.reason}
        example = f" (e.g. {sorted(reasons)[0]})" if reasons else ""
        return await finish_failed(
            job_id, f"none of the {n} trials produced a usable {request.objective}{example}", deps
        )
    await record_report(repo, deps.cache, request, window, best.number)
    await repo.finish(job_id, "completed")
    await publish_terminal(job_id, deps)
    return "completed"


async def dispatch(
    request: TrainingRequested,
    window: DataWindow,
    asked: list[Asked],
    stored: dict[int, TrialCompleted],
    inbox: BatchResults,
    deps: Deps,
) -> None:
    """Publish the work items of a batch, except trials already stored (a resumed job)."""
    missing = []
    for a in asked:
        if a.number in stored:
            inbox.results[a.number] = stored[a.number]
        else:
            missing.append(
                TrialSpec(number=a.number, params=a.params, sampler_state=a.system_attrs)
            )
    size = deps.settings.trials_per_item
    publishes = []
    for i in range(0, len(missing), size):
        chunk = missing[i : i + size]
        work = TrialWork(
            message_id=f"{request.job_id}.trials.{chunk[0].number}-{chunk[-1].number}",
            job_id=request.job_id,
            strategy=request.strategy,
            trials=chunk,
            window=window,
            regime=request.regime,
            settings=request.settings,
            objective=request.objective,
            min_trades=request.min_trades,
            pbo_blocks=request.pbo_blocks,
        )
        publishes.append(publish(deps.js, deps.names.trial_work, work))
    await asyncio.gather(*publishes)


async def record_progress(
    request: TrainingRequested, done: int, results: dict[int, TrialCompleted], deps: Deps
) -> None:
    job_id = request.job_id
    n = request.n_iterations
    best = best_of(results)
    progress = progress_of(done, n)
    await deps.repo.update_progress(
        job_id,
        trials_done=done,
        progress=progress,
        best_trial=best.number if best else None,
        best_value=best.value if best else None,
    )
    await publish(
        deps.js,
        deps.names.job_progress(job_id),
        JobProgress(
            message_id=f"{job_id}.progress.{done}",
            job_id=job_id,
            status="running",
            progress=progress,
            trials_done=done,
            n_iterations=n,
            best_value=best.value if best else None,
            best_trial=best.number if best else None,
        ),
    )


async def wait_for_batch(
    job_id: str,
    numbers: list[int],
    inbox: BatchResults,
    deps: Deps,
    cancel: asyncio.Event,
) -> dict[int, TrialCompleted] | None:
    """Wait until every trial of the batch has a result; None if the job was cancelled.

    Results come as events; the database is read as well now and then, so an event lost
    while NATS reconnected costs a moment, not the job.
    """
    loop = asyncio.get_running_loop()
    last_check = loop.time()
    while True:
        missing = [k for k in numbers if k not in inbox.results]
        if not missing:
            return {k: inbox.results[k] for k in numbers}
        if cancel.is_set():
            return None
        inbox.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(inbox.arrived.wait(), timeout=0.5)
        if loop.time() - last_check >= deps.settings.result_poll_interval:
            last_check = loop.time()
            if await deps.repo.cancel_requested(job_id):
                return None
            for number, t in (await deps.repo.trials_in(job_id, missing)).items():
                inbox.results[number] = _stored_to_completed(job_id, t)


async def finish_failed(job_id: str, reason: str, deps: Deps) -> str:
    log.warning("job failed", job_id=job_id, reason=reason)
    await deps.repo.finish(job_id, "failed", error=reason)
    await publish_terminal(job_id, deps)
    return "failed"


async def finish_cancelled(job_id: str, deps: Deps) -> str:
    log.info("job cancelled", job_id=job_id)
    await deps.repo.finish(job_id, "cancelled")
    await publish_terminal(job_id, deps)
    return "cancelled"


async def publish_terminal(job_id: str, deps: Deps) -> None:
    """Publish the event of a job's terminal status, built from the stored job.

    Safe to repeat: the message id is fixed per job, and a redelivered job message re-publishes
    it in case the replica died between the database commit and the publish.
    """
    job = await deps.repo.get_job(job_id)
    if job is None or job["status"] not in TERMINAL:
        return
    names = deps.names
    if job["status"] == "failed":
        await publish(
            deps.js,
            names.job_failed,
            JobFailed(message_id=f"{job_id}.failed", job_id=job_id, reason=job["error"] or ""),
        )
        return
    if job["status"] == "cancelled":
        await publish(
            deps.js,
            names.job_cancelled,
            JobCancelled(message_id=f"{job_id}.cancelled", job_id=job_id),
        )
        return
    request = TrainingRequested.model_validate(job["request"])
    best = (await deps.repo.trials_in(job_id, [job["best_trial"]]))[job["best_trial"]]
    assert best.value is not None
    await publish(
        deps.js,
        names.job_completed,
        JobCompleted(
            message_id=f"{job_id}.completed",
            job_id=job_id,
            strategy=request.strategy,
            dataset=request.dataset,
            regime=request.regime,
            optimizer=request.optimizer,
            seed=request.seed,
            objective=request.objective,
            n_iterations=request.n_iterations,
            best_trial=best.number,
            best_value=best.value,
            params=best.params,
            metrics=best.metrics,
            fingerprint=best.fingerprint,
            window=DataWindow.model_validate(job["data_window"]),
            settings=request.settings,
            sampler=job["sampler"],
            sampler_version=job["sampler_version"],
            batch_size=job["batch_size"],
            code_version=deps.code_version,
            validation=job["validation"],
        ),
    )


def failed_trial(work: TrialWork, trial: TrialSpec, reason: str, replica: str) -> TrialCompleted:
    return TrialCompleted(
        message_id=f"{work.job_id}.trial.{trial.number}.done",
        job_id=work.job_id,
        number=trial.number,
        params=trial.params,
        state="failed",
        value=None,
        metrics={},
        fingerprint="",
        duration_ms=0.0,
        replica=replica,
        reason=reason,
    )


async def run_trials(work: TrialWork, deps: Deps) -> list[TrialCompleted]:
    """Evaluate, store and announce the trials of a work item; none if the job was cancelled."""
    if work.job_id in deps.cancelled_jobs:
        return []
    results = []
    for trial in work.trials:
        try:
            result = await evaluate(work, trial, deps.cache, deps.replica)
        except (QuantError, SnapshotMissingError) as exc:
            result = failed_trial(work, trial, f"cannot evaluate: {exc}", deps.replica)
        results.append(result)
    return await store_trials(work, results, deps)


async def give_up_trials(work: TrialWork, reason: str, deps: Deps) -> list[TrialCompleted]:
    """Store a work item that keeps crashing its evaluation as failed trials, with why."""
    results = [failed_trial(work, t, reason, deps.replica) for t in work.trials]
    return await store_trials(work, results, deps)


async def store_trials(
    work: TrialWork, results: list[TrialCompleted], deps: Deps
) -> list[TrialCompleted]:
    await deps.repo.insert_trials(
        [(r, t.sampler_state) for r, t in zip(results, work.trials, strict=True)]
    )
    for result in results:
        # The stored row is the record; the event only wakes the job's holder early, so it
        # is sent without waiting for the stream's ack (the holder also reads the database).
        await deps.nc.publish(
            deps.names.trial_completed(work.job_id),
            result.to_bytes(),
            headers={"Nats-Msg-Id": result.message_id},
        )
    return results


async def job_view(job_id: str, deps: Deps) -> JobView | None:
    job = await deps.repo.get_job(job_id)
    if job is None:
        return None
    best = None
    if job["best_trial"] is not None:
        best = (await deps.repo.trials_in(job_id, [job["best_trial"]])).get(job["best_trial"])

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return JobView(
        job_id=job_id,
        status=job["status"],
        progress=job["progress"],
        trials_done=job["trials_done"],
        n_iterations=job["n_iterations"],
        request=TrainingRequested.model_validate(job["request"]),
        best_value=job["best_value"],
        best_trial=job["best_trial"],
        best_params=best.params if best else None,
        best_metrics=best.metrics if best else None,
        error=job["error"],
        sampler=job["sampler"],
        sampler_version=job["sampler_version"],
        batch_size=job["batch_size"],
        holder=job["holder"],
        created_at=job["created_at"].isoformat(),
        started_at=iso(job["started_at"]),
        finished_at=iso(job["finished_at"]),
        validation=job["validation"],
    )


async def get_ensemble(ensemble_id: str, deps: Deps) -> EnsembleView | None:
    return ensemble_view(ensemble_id, await deps.repo.ensemble_jobs(ensemble_id))


def trial_view(t: StoredTrial) -> TrialView:
    return TrialView(
        number=t.number,
        params=t.params,
        state=t.state,
        value=t.value,
        metrics=t.metrics,
        fingerprint=t.fingerprint,
        duration_ms=t.duration_ms,
        replica=t.replica,
        reason=t.reason,
    )
