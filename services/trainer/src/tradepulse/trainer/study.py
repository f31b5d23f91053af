"""One optimization of a job, run over the bus: ask a batch, publish its work, wait, tell.

A `StudyRunner` knows nothing of the job's status; the job's holder (handlers.hold_job) opens
it, runs it and ends the job. A job may run several studies side by side (each on its own
window, seed and range of trial numbers): every study subscribes to the job's results and
keeps those in its own range.

Determinism: the study is rebuilt from the stored trials of its leading complete batches
(plan.resume_point), so a resumed study asks exactly what an uninterrupted one would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from tradepulse.common.contracts.training import (
    DataWindow,
    TrainingRequested,
    TrialCompleted,
    TrialSpec,
    TrialWork,
)
from tradepulse.common.logging import get_logger
from tradepulse.quant import SearchSpace
from tradepulse.trainer import plan
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.errors import JobError
from tradepulse.trainer.optimizer import Asked, BatchOptimizer, SamplerSpec, Told
from tradepulse.trainer.ports import StoredTrial

log = get_logger("trainer")

# Told after each batch with the study's trials done so far and every result it has.
OnBatch = Callable[[int, Mapping[int, TrialCompleted]], Awaitable[None]]


def completed_from_stored(job_id: str, t: StoredTrial) -> TrialCompleted:
    """A stored trial as the event its evaluation announced."""
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


@dataclass(frozen=True)
class StudySpec:
    """`n` trials numbered from `first`, searched by `sampler` seeded with `seed` on
    `window`; the rest of a work item (strategy, regime, settings, objective) is the
    request's."""

    request: TrainingRequested
    window: DataWindow
    sampler: SamplerSpec
    seed: int
    n: int
    first: int = 0

    @property
    def job_id(self) -> str:
        return self.request.job_id

    def owns(self, number: int) -> bool:
        return self.first <= number < self.first + self.n


class Inbox:
    """The study's results as they arrive, by trial number."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.results: dict[int, TrialCompleted] = {}
        self.arrived = asyncio.Event()

    def put(self, result: TrialCompleted) -> None:
        if self.spec.owns(result.number):
            self.results[result.number] = result
            self.arrived.set()


class StudyRunner:
    """Open with `open` (reads the stored trials, rebuilds the sampler), then `run`."""

    def __init__(
        self,
        spec: StudySpec,
        optimizer: BatchOptimizer,
        stored: dict[int, TrialCompleted],
        resumed_from: int,
        deps: Deps,
        cancel: asyncio.Event,
    ) -> None:
        self.spec = spec
        self.optimizer = optimizer
        self.stored = stored
        self.deps = deps
        self.cancel = cancel
        # Trials told from the store, not run: those of the leading complete batches.
        self.resumed_from = resumed_from
        self.results: dict[int, TrialCompleted] = {
            spec.first + k: stored[spec.first + k] for k in range(self.resumed_from)
        }

    @classmethod
    async def open(
        cls,
        spec: StudySpec,
        space: SearchSpace,
        rows: list[StoredTrial],
        deps: Deps,
        cancel: asyncio.Event,
    ) -> StudyRunner:
        """`rows`: the job's stored trials (those of other studies are left out). Raises
        JobError when the study cannot run as asked (a grid smaller than n)."""
        mine = {t.number: t for t in rows if spec.owns(t.number)}
        told = plan.resume_point(mine, spec.n, spec.sampler.batch_size, spec.first)
        # Told numbers are the sampler's own, from 0; trial numbers start at spec.first.
        leading = [mine[spec.first + k] for k in range(told)]
        history = [Told(k, t.params, t.value, t.system_attrs) for k, t in enumerate(leading)]
        # The sampler's work runs in a thread: TPE's cost grows with the trials told, and the
        # event loop must keep renewing the lease and answering meanwhile.
        optimizer = await asyncio.to_thread(BatchOptimizer, spec.sampler, spec.seed, space, history)
        if optimizer.grid is not None and optimizer.grid.size < spec.n:
            raise JobError(
                f"the grid has {optimizer.grid.size:,} points, fewer than the"
                f" {spec.n:,} trials asked: lower n_iterations"
            )
        stored = {k: completed_from_stored(spec.job_id, t) for k, t in mine.items()}
        return cls(spec, optimizer, stored, told, deps, cancel)

    async def run(self, on_batch: OnBatch) -> dict[int, TrialCompleted] | None:
        """Every result of the study by trial number; None if the job was cancelled."""
        spec = self.spec
        inbox = Inbox(spec)
        sub = await self.deps.bus.subscribe_trials(spec.job_id, inbox.put)
        depth = plan.depth_for(spec.sampler.adaptive)
        # Batches and in-flight numbers are the sampler's (from 0); trials are spec.first on.
        pending = plan.batches(spec.n, spec.sampler.batch_size, start=self.resumed_from)
        in_flight: list[list[int]] = []
        done = self.resumed_from
        try:
            while done < spec.n:
                if self.cancel.is_set() or await self.deps.store.cancel_requested(spec.job_id):
                    return None
                while len(in_flight) < depth and pending:
                    in_flight.append(await self._ask_and_dispatch(pending.pop(0), inbox))
                relative = in_flight.pop(0)
                batch = await self._wait_for([spec.first + k for k in relative], inbox)
                if batch is None:
                    return None
                values = {k: batch[spec.first + k].value for k in relative}
                await asyncio.to_thread(self.optimizer.tell_batch, values)
                self.results.update(batch)
                done += len(relative)
                await on_batch(done, self.results)
        finally:
            await sub.unsubscribe()
        return self.results

    async def _ask_and_dispatch(self, batch: plan.Batch, inbox: Inbox) -> list[int]:
        """Ask the batch (study-relative numbers) and publish the work items of its trials
        not stored yet (a resumed job); a stored one goes to the inbox as it is.

        A sampler that learns is asked one work item at a time, each published as soon as it
        is asked, so replicas evaluate the first trials while it thinks about the rest (its
        time per trial is many backtests: TPE's about 10-30 ms). One that does not is asked
        the whole batch at once, which costs less than a backtest."""
        adaptive = self.spec.sampler.adaptive
        settings = self.deps.settings
        size = settings.model_trials_per_item if adaptive else settings.trials_per_item
        part = size if adaptive else batch.size
        publishing: list[asyncio.Task[None]] = []
        numbers: list[int] = []
        try:
            await asyncio.to_thread(self.optimizer.open_batch)
            while len(numbers) < batch.size:
                asked = await asyncio.to_thread(
                    self.optimizer.ask_more, min(part, batch.size - len(numbers))
                )
                numbers += [a.number for a in asked]
                missing = []
                for a in asked:
                    number = self.spec.first + a.number
                    if number in self.stored:
                        inbox.put(self.stored[number])
                    else:
                        missing.append(self._trial_spec(number, a))
                publishing += [
                    asyncio.create_task(
                        self.deps.bus.publish_work(self._work(missing[i : i + size]))
                    )
                    for i in range(0, len(missing), size)
                ]
            await asyncio.gather(*publishing)
        finally:
            for task in publishing:
                task.cancel()
        if numbers != batch.numbers:
            raise RuntimeError(f"sampler numbered trials {numbers}, expected {batch.numbers}")
        return numbers

    @staticmethod
    def _trial_spec(number: int, asked: Asked) -> TrialSpec:
        return TrialSpec(number=number, params=asked.params, sampler_state=asked.system_attrs)

    def _work(self, chunk: list[TrialSpec]) -> TrialWork:
        request = self.spec.request
        return TrialWork(
            message_id=f"{request.job_id}.trials.{chunk[0].number}-{chunk[-1].number}",
            job_id=request.job_id,
            strategy=request.strategy,
            trials=chunk,
            window=self.spec.window,
            regime=request.regime,
            settings=request.settings,
            objective=request.objective,
            min_trades=request.min_trades,
            pbo_blocks=request.pbo_blocks,
        )

    async def _wait_for(self, numbers: list[int], inbox: Inbox) -> dict[int, TrialCompleted] | None:
        """Wait until every trial of the batch has a result; None if the job was cancelled.

        Results come as events; the store is read as well now and then, so an event lost
        while NATS reconnected costs a moment, not the job.
        """
        job_id = self.spec.job_id
        store = self.deps.store
        loop = asyncio.get_running_loop()
        last_check = loop.time()
        while True:
            missing = [k for k in numbers if k not in inbox.results]
            if not missing:
                return {k: inbox.results[k] for k in numbers}
            if self.cancel.is_set():
                return None
            inbox.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inbox.arrived.wait(), timeout=0.5)
            if loop.time() - last_check >= self.deps.settings.result_poll_interval:
                last_check = loop.time()
                if await store.cancel_requested(job_id):
                    return None
                for t in (await store.trials_in(job_id, missing)).values():
                    inbox.put(completed_from_stored(job_id, t))
