"""The trainer's bus edge (app.py) on in-memory stand-ins: the job holder handing its jobs back
at shutdown, the trial loop handing back the rest of its batch, one round of the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.js import JetStreamContext

from tradepulse.common.service import Runtime
from tradepulse.trainer.app import JobHolder, Puller, refresh_metrics, trial_loop
from tradepulse.trainer.settings import TrainerSettings

from .test_subscribe import FakeJsMsg, FakeSubscription
from .test_trainer_trials import parts, with_job, work_item
from .trainer_fakes import Worker, eventually, job_request, make_deps

ROOT = Path(__file__).resolve().parents[2]


def puller(batches: list[list[FakeJsMsg]]) -> tuple[Puller, FakeSubscription]:
    sub = FakeSubscription(batches)
    return Puller(cast(JetStreamContext.PullSubscription, sub), "test"), sub


async def test_at_shutdown_a_held_job_is_naked_and_its_lease_released() -> None:
    job = job_request(n_iterations=10)
    deps = make_deps()
    store, _ = parts(deps)
    msg = FakeJsMsg(job.to_bytes())
    jobs, _ = puller([[msg]])
    holder = JobHolder(jobs, deps)
    async with Worker(deps, limit=4):
        running = asyncio.create_task(holder.run())
        await eventually(
            lambda: job.job_id in store.jobs and store.jobs[job.job_id].trials_done == 4
        )
        await holder.hand_back()
    assert running.cancelled()
    assert msg.told == [("nak", None)]
    done = store.jobs[job.job_id]
    assert (done.status, done.holder) == ("running", None), "another replica takes it at once"


async def test_a_holder_takes_no_more_jobs_than_it_has_slots() -> None:
    deps = make_deps(TRAINER_MAX_JOBS=1)
    store, _ = parts(deps)
    first, second = job_request(n_iterations=8), job_request(n_iterations=8)
    jobs, sub = puller([[FakeJsMsg(first.to_bytes())], [FakeJsMsg(second.to_bytes())]])
    holder = JobHolder(jobs, deps)
    async with Worker(deps, limit=4) as worker:
        running = asyncio.create_task(holder.run())
        # Sync point: the first job ran its first batch, long after a holder with a free slot
        # would have fetched the second one (queued, at once).
        await eventually(
            lambda: first.job_id in store.jobs and store.jobs[first.job_id].trials_done == 4
        )
        assert sub.batches, "no fetch while the only slot is taken"
        assert second.job_id not in store.jobs
        worker.allow(None)
        await eventually(lambda: second.job_id in store.jobs)
        await eventually(lambda: store.jobs[second.job_id].status == "completed")
        await holder.hand_back()
    assert running.cancelled()
    assert store.jobs[first.job_id].status == "completed"


async def test_at_shutdown_the_trial_loop_naks_the_rest_of_its_batch() -> None:
    deps = make_deps()
    store, _ = parts(deps)
    job_id = await with_job(deps)
    stuck = asyncio.Event()

    async def blocked(trials: Any) -> None:
        stuck.set()
        await asyncio.Event().wait()

    store.insert_trials = blocked  # type: ignore[method-assign]
    first = FakeJsMsg(work_item(job_id, snapshot="gone").to_bytes())
    second = FakeJsMsg(work_item(job_id, snapshot="gone").to_bytes())
    trials, _ = puller([[first, second]])
    loop = asyncio.create_task(trial_loop(trials, 2, deps))
    await asyncio.wait_for(stuck.wait(), 5)
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    assert first.told == [("nak", None)]
    assert second.told == [("nak", None)]


async def test_the_trial_loop_evaluates_the_next_item_while_one_is_being_stored() -> None:
    """The first item's store waits until the second item's store begins: a loop that
    evaluated items one after the other would never get there."""
    deps = make_deps()
    store, _ = parts(deps)
    job_id = await with_job(deps)
    calls: list[list[int]] = []
    second_began = asyncio.Event()
    insert = store.insert_trials

    async def held_until_the_next(trials: Any) -> None:
        calls.append([t.number for t, _ in trials])
        if len(calls) == 1:
            await second_began.wait()
        else:
            second_began.set()
        await insert(trials)

    store.insert_trials = held_until_the_next  # type: ignore[method-assign]
    items = [FakeJsMsg(work_item(job_id, snapshot="gone").to_bytes()) for _ in range(2)]
    trials, _ = puller([items])
    loop = asyncio.create_task(trial_loop(trials, 2, deps))
    try:
        await asyncio.wait_for(second_began.wait(), 30)  # a hang guard, not a timing claim
        await eventually(lambda: all(m.told == [("ack", None)] for m in items))
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert len(calls) == 2
    assert deps.metrics.trials_done == 4


class FakeConsumerInfo(SimpleNamespace):
    num_pending: int
    num_ack_pending: int


async def test_a_metrics_round_sets_every_job_status_and_says_when_the_database_is_away() -> None:
    deps = make_deps()
    store, _ = parts(deps)
    await store.create_job(job_request())

    async def info(stream: str, durable: str) -> FakeConsumerInfo:
        return FakeConsumerInfo(num_pending=3, num_ack_pending=1)

    rt = cast(
        Runtime[TrainerSettings],
        SimpleNamespace(
            nc=SimpleNamespace(is_connected=True), js=SimpleNamespace(consumer_info=info)
        ),
    )
    queues = (SimpleNamespace(name="jobs", stream="J", durable="d"),)
    registry = deps.metrics.registry
    deps.metrics.trials_done = 20
    await refresh_metrics(rt, deps, queues, (0, 0.0))  # type: ignore[arg-type]
    value = registry.get_sample_value
    assert value("tradepulse_nats_connected") == 1
    assert value("tradepulse_database_up") == 1
    jobs = {
        s: value("tradepulse_jobs", {"status": s})
        for s in ("queued", "running", "completed", "failed", "cancelled")
    }
    assert jobs == {"queued": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert value("tradepulse_queue_backlog", {"queue": "jobs"}) == 4

    async def away() -> dict[str, int]:
        raise ConnectionError("connection refused")

    store.jobs_by_status = away  # type: ignore[method-assign]
    await refresh_metrics(rt, deps, queues, (20, 0.0))  # type: ignore[arg-type]
    assert value("tradepulse_database_up") == 0


@pytest.mark.slow
def test_a_trainer_leaves_scikit_learn_unloaded_and_still_computes_importances() -> None:
    """optuna.importance would load scikit-learn for fANOVA (about 175 MB of RSS) wherever it
    is installed, as it is here for vectorbt; the trainer uses PED-ANOVA only."""
    code = """
import importlib.util, sys
import tradepulse.trainer.app
from tradepulse.trainer.importances import param_importances
from tests.unit.test_dashboard_data import _results
from tests.unit.trainer_fakes import job_request
found = param_importances(job_request(), _results([float(n % 5) for n in range(40)]))
print(importlib.util.find_spec("sklearn") is not None, "sklearn" in sys.modules, found is not None)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    installed, loaded, computed = (word == "True" for word in out)
    assert installed, "scikit-learn is not installed here: this test shows nothing"
    assert not loaded
    assert computed
