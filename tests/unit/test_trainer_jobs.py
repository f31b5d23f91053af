"""A job's holder on in-memory ports: resume, cancel, give-up, duplicates and takeover.

Each test delivers a job message to `deliveries.job`, as the job loop does, with `Worker`
standing in for the replicas that evaluate trials; the process-level tests in tests/fault
prove the same on NATS and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog

from tradepulse.common.contracts.training import (
    CancelJob,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgress,
    TrainingRequested,
    TrialCompleted,
    TrialSpec,
    TrialWork,
)
from tradepulse.quant import get_strategy
from tradepulse.trainer import deliveries, plan, queries
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.optimizer import SamplerSpec
from tradepulse.trainer.ports import JobRow
from tradepulse.trainer.study import StudyRunner, StudySpec, completed_from_stored

from .trainer_fakes import (
    Clock,
    FakeDelivery,
    MemoryBus,
    MemoryJobStore,
    Worker,
    eventually,
    job_request,
    make_deps,
    no_heartbeat,
)


def parts(deps: Deps) -> tuple[MemoryJobStore, MemoryBus]:
    assert isinstance(deps.store, MemoryJobStore)
    assert isinstance(deps.bus, MemoryBus)
    return deps.store, deps.bus


async def deliver(deps: Deps, job: TrainingRequested, attempt: int = 1) -> FakeDelivery:
    delivery = FakeDelivery(job.to_bytes(), attempt=attempt)
    await deliveries.job(delivery, deps, no_heartbeat)
    return delivery


def row(deps: Deps, job_id: str) -> JobRow:
    return parts(deps)[0].jobs[job_id]


def outcome(deps: Deps, job_id: str) -> list[tuple[Any, ...]]:
    """What must not depend on interruptions: every trial's parameters and result."""
    trials = parts(deps)[0].trials[job_id]
    return [(k, trials[k].params, trials[k].value, trials[k].state) for k in sorted(trials)]


def dispatched(deps: Deps) -> list[int]:
    return [t.number for w in parts(deps)[1].published_work for t in w.trials]


def events(deps: Deps, kind: type[Any]) -> list[Any]:
    return parts(deps)[1].events_of(kind)


async def undisturbed(job: TrainingRequested) -> Deps:
    deps = make_deps()
    async with Worker(deps):
        delivery = await deliver(deps, job)
    assert delivery.settled == ["ack"]
    assert row(deps, job.job_id).status == "completed"
    return deps


def held_until(deps: Deps, job_id: str, trials_done: int) -> Any:
    jobs = parts(deps)[0].jobs
    return eventually(lambda: job_id in jobs and jobs[job_id].trials_done == trials_done)


async def test_a_job_runs_its_batches_in_order_and_completes_with_its_best() -> None:
    job = job_request(n_iterations=10)
    deps = await undisturbed(job)
    store, bus = parts(deps)
    done = row(deps, job.job_id)
    assert (done.trials_done, done.progress, done.batch_size, done.holder) == (
        10,
        100.0,
        4,
        "trainer-1",
    )
    assert dispatched(deps) == list(range(10))
    assert [w.message_id for w in bus.published_work][:2] == [
        f"{job.job_id}.trials.0-1",
        f"{job.job_id}.trials.2-3",
    ]
    best = plan.best_of({t.number: t for t in store.trials[job.job_id].values()})
    assert best is not None
    assert (done.best_trial, done.best_value) == (best.number, best.value)
    assert [(e.message_id, e.progress) for e in events(deps, JobProgress)] == [
        (f"{job.job_id}.progress.4", 40.0),
        (f"{job.job_id}.progress.8", 80.0),
        (f"{job.job_id}.progress.10", 100.0),
    ]
    [completed] = events(deps, JobCompleted)
    assert (completed.message_id, completed.best_trial, completed.best_value) == (
        f"{job.job_id}.completed",
        best.number,
        best.value,
    )
    assert (completed.params, completed.window) == (best.params, done.data_window)
    assert bus.subscriptions == [], "the holder stopped listening for results"


async def test_a_job_whose_trials_all_fail_fails_with_an_example_reason() -> None:
    def no_trades(work: TrialWork, trial: TrialSpec, replica: str) -> TrialCompleted:
        return TrialCompleted(
            job_id=work.job_id,
            number=trial.number,
            params=trial.params,
            state="failed",
            value=None,
            metrics={},
            fingerprint="fp",
            duration_ms=1.0,
            replica=replica,
            reason="0 trades, fewer than min_trades 1",
        )

    job = job_request(n_iterations=3)
    deps = make_deps()
    async with Worker(deps, result=no_trades):
        delivery = await deliver(deps, job)
    assert delivery.settled == ["ack"]
    done = row(deps, job.job_id)
    assert done.status == "failed"
    assert done.error == (
        "none of the 3 trials produced a usable sharpe_ratio"
        " (e.g. 0 trades, fewer than min_trades 1)"
    )
    [failed] = events(deps, JobFailed)
    assert (failed.message_id, failed.reason) == (f"{job.job_id}.failed", done.error)


async def test_a_job_without_data_fails_without_dispatching_anything() -> None:
    job = job_request(lookback_candles=5_000)  # the history has 600 candles
    deps = make_deps()
    delivery = await deliver(deps, job)
    assert delivery.settled == ["ack"]
    done = row(deps, job.job_id)
    assert done.status == "failed"
    assert done.error == (
        "binance BTC/USDT 5m: asked for the last 5000 candles but the history has only 600"
    )
    assert dispatched(deps) == []


# Resume ---------------------------------------------------------------------------------


async def resumed(
    job: TrainingRequested, reference: Deps, stored: set[int], attempt: int = 2
) -> Deps:
    """The state a holder that died leaves (its lease run out, `stored` trials in), then the
    job's redelivery to another replica."""
    deps = make_deps()
    store, _ = parts(deps)
    await store.create_job(job)
    assert await store.take_job(job.job_id, "trainer-dead", 15)
    first = row(reference, job.job_id)
    assert first.data_window is not None
    assert first.batch_size is not None
    await store.start_job(
        job.job_id,
        sampler="s",
        sampler_version="v",
        batch_size=first.batch_size,
        window=first.data_window,
    )
    store.expire_lease(job.job_id)
    before = parts(reference)[0].trials[job.job_id]
    await store.insert_trials(
        [(completed_from_stored(job.job_id, before[k]), before[k].system_attrs) for k in stored]
    )
    async with Worker(deps):
        delivery = await deliver(deps, job, attempt=attempt)
    assert delivery.settled == ["ack"]
    return deps


@pytest.mark.parametrize(
    ("optimizer", "stored"),
    [
        pytest.param("random", set(range(8)), id="random-complete-batches"),
        pytest.param("random", {0, 1, 2, 3, 4, 5}, id="random-mid-batch"),
        pytest.param("random", {0, 1, 2, 3, 5, 9}, id="random-with-gaps"),
        pytest.param("bayesian", set(range(8)), id="bayesian-complete-batches"),
        pytest.param("bayesian", {0, 1, 2, 3, 4, 5}, id="bayesian-mid-batch"),
        # A grid's order is a permutation of its 3,000,000 points: built once per hold.
        pytest.param("grid", {0, 1, 2, 3, 4, 5}, id="grid-mid-batch"),
    ],
)
async def test_a_resumed_job_asks_and_keeps_what_an_undisturbed_one_did(
    optimizer: str, stored: set[int]
) -> None:
    job = job_request(n_iterations=10, optimizer=optimizer)
    reference = await undisturbed(job)
    deps = await resumed(job, reference, stored)
    assert outcome(deps, job.job_id) == outcome(reference, job.job_id)
    assert dispatched(deps) == sorted(set(range(10)) - stored), "stored trials are not rerun"
    done, first = row(deps, job.job_id), row(reference, job.job_id)
    assert (done.status, done.holder, done.best_trial, done.best_value) == (
        "completed",
        "trainer-1",
        first.best_trial,
        first.best_value,
    )
    assert events(deps, JobCompleted) == events(reference, JobCompleted)


async def test_a_job_resumed_with_every_trial_stored_records_its_best_and_completes() -> None:
    job = job_request(n_iterations=10)
    reference = await undisturbed(job)
    deps = await resumed(job, reference, set(range(10)))
    assert dispatched(deps) == []
    done, first = row(deps, job.job_id), row(reference, job.job_id)
    assert (done.trials_done, done.progress, done.best_trial) == (10, 100.0, first.best_trial)
    assert [e.trials_done for e in events(deps, JobProgress)] == [10]
    assert events(deps, JobCompleted) == events(reference, JobCompleted)


# Cancel ---------------------------------------------------------------------------------


async def test_a_job_cancelled_before_any_replica_held_it_is_not_run() -> None:
    job = job_request()
    deps = make_deps()
    store, bus = parts(deps)
    await store.create_job(job)  # recorded by the intake
    reply = await queries.cancel_job(CancelJob(job_id=job.job_id), deps)
    assert (reply.status, reply.found) == ("cancelled", True)
    assert bus.cancels == [job.job_id]
    assert [e.message_id for e in events(deps, JobCancelled)] == [f"{job.job_id}.cancelled"]

    delivery = await deliver(deps, job)
    assert delivery.settled == ["ack"]
    assert dispatched(deps) == []
    assert bus.dropped == [f"{job.job_id}.cancelled"], "its end is published again, once"


async def test_a_cancel_heard_before_the_hold_ends_the_job_before_any_trial() -> None:
    job = job_request()
    deps = make_deps()
    deps.cancels.cancel(job.job_id)  # the broadcast reached this replica first
    delivery = await deliver(deps, job)
    assert delivery.settled == ["ack"]
    assert row(deps, job.job_id).status == "cancelled"
    assert dispatched(deps) == []
    assert len(events(deps, JobCancelled)) == 1


@pytest.mark.parametrize("broadcast_heard", [True, False])
async def test_a_cancel_during_a_batch_stops_the_job_there(broadcast_heard: bool) -> None:
    job = job_request(n_iterations=20)
    deps = make_deps()
    async with Worker(deps, limit=4) as worker:
        holding = asyncio.create_task(deliver(deps, job))
        await held_until(deps, job.job_id, 4)
        reply = await queries.cancel_job(CancelJob(job_id=job.job_id), deps)
        assert (reply.status, reply.found) == ("running", True), "its holder ends it"
        if broadcast_heard:
            deps.cancels.cancel(job.job_id)
        # Without the broadcast the holder reads the flag from the store.
        delivery = await holding
        worker.allow(None)
    assert delivery.settled == ["ack"]
    done = row(deps, job.job_id)
    assert (done.status, done.trials_done) == ("cancelled", 4)
    assert dispatched(deps) == list(range(12)), "batches 1 and 2 were in flight"
    assert len(events(deps, JobCancelled)) == 1
    assert events(deps, JobCompleted) == []


async def test_the_trials_of_a_cancelled_job_are_skipped() -> None:
    deps = make_deps()
    deps.cancels.cancel("job-x")
    work = TrialWork.model_validate(
        {
            "job_id": "job-x",
            "strategy": "LIQUIDITY_SWEEP",
            "trials": [{"number": 0, "params": {}}],
            "window": {
                "snapshot": "s",
                "content_hash": "h",
                "begin": 0,
                "stop": 10,
                "trade_from": 0,
                "first_ms": 0,
                "last_ms": 1,
            },
            "regime": "any",
            "settings": {},
            "objective": "sharpe_ratio",
            "min_trades": 1,
        }
    )
    delivery = FakeDelivery(work.to_bytes())
    assert await deliveries.trial_work(delivery, deps) == []
    assert delivery.settled == ["ack"]


# Give up, duplicates, takeover ----------------------------------------------------------


async def test_a_job_delivered_too_often_with_no_live_holder_is_given_up() -> None:
    job = job_request()
    deps = make_deps()  # job_max_deliver 3
    delivery = await deliver(deps, job, attempt=4)
    assert delivery.settled == ["ack"]
    done = row(deps, job.job_id)
    assert (done.status, done.error) == ("failed", "gave up after 3 attempts; see the trainer logs")
    [failed] = events(deps, JobFailed)
    assert failed.reason == done.error
    assert dispatched(deps) == []


async def test_a_job_delivered_too_often_but_held_by_a_live_replica_is_not_given_up() -> None:
    job = job_request()
    deps = make_deps()
    store, bus = parts(deps)
    await store.create_job(job)
    assert await store.take_job(job.job_id, "trainer-2", 15)
    delivery = await deliver(deps, job, attempt=4)
    assert delivery.settled == ["nak 15"], "back once the holder's lease could have run out"
    assert row(deps, job.job_id).status == "queued"
    assert bus.events == []


async def test_a_job_delivered_again_while_held_here_is_handed_back_not_run_twice() -> None:
    job = job_request(n_iterations=10)
    deps = make_deps()
    async with Worker(deps, limit=4) as worker:
        holding = asyncio.create_task(deliver(deps, job))
        await held_until(deps, job.job_id, 4)
        duplicate = await deliver(deps, job, attempt=2)
        assert duplicate.settled == ["nak 15"]
        worker.allow(None)
        first = await holding
    assert first.settled == ["ack"]
    assert row(deps, job.job_id).status == "completed"
    assert dispatched(deps) == list(range(10))
    assert outcome(deps, job.job_id) == outcome(await undisturbed(job), job.job_id)


async def test_a_job_of_a_dead_replica_is_taken_over_once_its_lease_ran_out() -> None:
    job = job_request(n_iterations=10)
    clock = Clock()
    deps = make_deps(MemoryJobStore(clock))
    store, _ = parts(deps)
    await store.create_job(job)
    assert await store.take_job(job.job_id, "trainer-2", 15)
    clock.advance(10)
    early = await deliver(deps, job, attempt=2)
    assert early.settled == ["nak 15"], "its lease still runs"
    clock.advance(6)
    async with Worker(deps):
        late = await deliver(deps, job, attempt=3)
    assert late.settled == ["ack"]
    done = row(deps, job.job_id)
    assert (done.status, done.holder) == ("completed", "trainer-1")
    assert outcome(deps, job.job_id) == outcome(await undisturbed(job), job.job_id)


async def test_a_holder_back_after_a_takeover_leaves_the_job_to_its_new_holder() -> None:
    """Trainer 1 is cut off mid-job past its lease; trainer 2 takes the job over from its
    redelivery. Trainer 1 comes back with an older count: it writes no progress and no end
    over trainer 2's, and leaves the message (trainer 2's delivery now) unsettled."""
    job = job_request(n_iterations=12)
    clock = Clock()
    stale = make_deps(MemoryJobStore(clock))
    store, bus = parts(stale)
    fresh = make_deps(store, bus, TP_REPLICA="trainer-2")
    first, again = FakeDelivery(job.to_bytes()), FakeDelivery(job.to_bytes(), attempt=2)
    async with Worker(stale, limit=4) as worker:
        cut_off = asyncio.create_task(deliveries.job(first, stale, no_heartbeat))
        await held_until(stale, job.job_id, 4)
        clock.advance(60)
        taking_over = asyncio.create_task(deliveries.job(again, fresh, no_heartbeat))
        await eventually(lambda: row(stale, job.job_id).holder == "trainer-2")
        worker.allow(None)
        await asyncio.gather(cut_off, taking_over)
    assert first.settled == [], "left to its new holder"
    assert again.settled == ["ack"]
    done = row(stale, job.job_id)
    assert (done.status, done.trials_done, done.holder) == ("completed", 12, "trainer-2")
    reference = await undisturbed(job)
    assert outcome(stale, job.job_id) == outcome(reference, job.job_id)
    assert [e.trials_done for e in events(stale, JobProgress)] == [4, 8, 12]
    assert events(stale, JobCompleted) == events(reference, JobCompleted)


async def test_duplicate_trial_results_change_nothing() -> None:
    job = job_request(n_iterations=10)
    deps = make_deps()
    async with Worker(deps, repeat=3):
        delivery = await deliver(deps, job)
    assert delivery.settled == ["ack"]
    reference = await undisturbed(job)
    assert outcome(deps, job.job_id) == outcome(reference, job.job_id)
    assert len(parts(deps)[1].announced) == 30
    assert events(deps, JobProgress) == events(reference, JobProgress)
    assert events(deps, JobCompleted) == events(reference, JobCompleted)


async def test_a_job_submitted_again_after_its_end_only_republishes_its_end() -> None:
    job = job_request(n_iterations=4)
    deps = await undisturbed(job)
    again = await deliver(deps, job.model_copy(update={"message_id": "another"}))
    assert again.settled == ["ack"]
    assert dispatched(deps) == [0, 1, 2, 3]
    assert parts(deps)[1].dropped == [f"{job.job_id}.completed"]


# Failures -------------------------------------------------------------------------------


async def test_a_replica_stopping_hands_its_job_back_at_once() -> None:
    job = job_request(n_iterations=10)
    deps = make_deps()
    delivery = FakeDelivery(job.to_bytes())
    async with Worker(deps, limit=4):
        holding = asyncio.create_task(deliveries.job(delivery, deps, no_heartbeat))
        await held_until(deps, job.job_id, 4)
        holding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holding
    assert delivery.settled == ["nak"]
    done = row(deps, job.job_id)
    assert (done.status, done.holder) == ("running", None), "another replica takes it at once"
    assert deps.cancels.hold(job.job_id) is not None, "no longer held here"


async def test_a_store_away_leaves_the_job_to_be_retried() -> None:
    job = job_request()
    deps = make_deps()
    store, _ = parts(deps)

    async def away(job_id: str) -> Any:
        raise ConnectionError("connection refused")

    store.stored_trials = away  # type: ignore[method-assign]
    delivery = await deliver(deps, job)
    assert delivery.settled == ["nak 2"]
    assert row(deps, job.job_id).status == "running"
    assert deps.cancels.hold(job.job_id) is not None


async def test_a_bare_timeout_is_logged_by_its_type_not_as_an_empty_error() -> None:
    job = job_request()
    deps = make_deps()
    store, _ = parts(deps)

    async def slow(job_id: str) -> Any:
        raise TimeoutError

    store.stored_trials = slow  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        delivery = await deliver(deps, job)
    assert delivery.settled == ["nak 2"]
    [interrupted] = [e for e in logs if e["event"] == "job_interrupted"]
    assert (interrupted["error"], interrupted["retry_in_s"]) == ("TimeoutError", 2)


async def test_a_job_that_crashes_its_holder_fails_with_the_reason() -> None:
    job = job_request()
    deps = make_deps()
    store, _ = parts(deps)

    async def broken(job_id: str, **progress: Any) -> bool:
        raise KeyError("boom")

    store.update_progress = broken  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        async with Worker(deps):
            delivery = await deliver(deps, job)
    assert delivery.settled == ["ack"]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["job_crashed"]
    done = row(deps, job.job_id)
    assert (done.status, done.error) == (
        "failed",
        "internal error in the trainer (KeyError); its log has the details under the event "
        "job_crashed",
    )


async def test_a_malformed_job_is_refused_for_good() -> None:
    deps = make_deps()
    delivery = FakeDelivery(b'{"job_id": "x"}')
    await deliveries.job(delivery, deps, no_heartbeat)
    assert delivery.settled == ["term"]
    assert parts(deps)[0].jobs == {}


# What a walk-forward job will need --------------------------------------------------------


async def test_two_studies_of_one_job_run_side_by_side_each_on_its_own_trials() -> None:
    """Two optimizations of one job (e.g. two folds: own window, seed, trial numbers), run
    at once, each ask and keep what it would alone."""
    job = job_request(n_iterations=6)
    reference = await undisturbed(job)
    window = row(reference, job.job_id).data_window
    assert window is not None
    space = get_strategy(job.strategy).space
    sampler = SamplerSpec("random", 4)
    folds = [
        StudySpec(request=job, window=window, sampler=sampler, seed=1, n=6, first=0),
        StudySpec(
            request=job,
            window=window.model_copy(update={"begin": 100}),
            sampler=sampler,
            seed=2,
            n=6,
            first=6,
        ),
    ]

    async def run(deps: Deps, specs: list[StudySpec]) -> list[dict[int, Any]]:
        store, _ = parts(deps)
        await store.create_job(job)
        studies = [await StudyRunner.open(s, space, [], deps, asyncio.Event()) for s in specs]
        seen: list[int] = []

        async def on_batch(done: int, results: Any) -> None:
            seen.append(done)

        async with Worker(deps):
            outcomes = await asyncio.gather(*(s.run(on_batch) for s in studies))
        assert all(r is not None for r in outcomes)
        return [{k: (r.params, r.value) for k, r in res.items()} for res in outcomes if res]

    together = await run(make_deps(), folds)
    alone = [(await run(make_deps(), [spec]))[0] for spec in folds]
    assert together == alone
    assert sorted(together[0]) == list(range(6))
    assert sorted(together[1]) == list(range(6, 12))
    assert together[0] != {k - 6: v for k, v in together[1].items()}, "other seed, other trials"


async def test_a_held_job_keeps_its_message_and_lease_alive() -> None:
    job = job_request(n_iterations=8)
    clock = Clock()
    deps = make_deps(MemoryJobStore(clock), TRAINER_JOB_ACK_WAIT=0.03)
    store, _ = parts(deps)
    delivery = FakeDelivery(job.to_bytes())

    async def heartbeat(d: Any, job_id: str) -> None:
        await deliveries.heartbeat(d, job_id, deps)

    async with Worker(deps, limit=4) as worker:
        holding = asyncio.create_task(deliveries.job(delivery, deps, heartbeat))
        await held_until(deps, job.job_id, 4)
        clock.advance(60)  # the first lease has long run out
        beats = delivery.in_progress_calls
        await eventually(lambda: delivery.in_progress_calls >= beats + 2)
        assert await store.held_by_another(job.job_id, "trainer-2"), "renewed from now on"
        worker.allow(None)
        await holding
    assert delivery.settled == ["ack"]
