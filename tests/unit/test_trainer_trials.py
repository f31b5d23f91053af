"""A trial work item from delivery to ack, and the trainer's answers to requests, on
in-memory ports."""

from __future__ import annotations

from typing import Any

import structlog

from tradepulse.common.contracts.base import INVALID_REQUEST, UNAVAILABLE, ErrorReply
from tradepulse.common.contracts.training import (
    CancelJob,
    CancelReply,
    DataWindow,
    GetJob,
    JobReply,
    ListTrials,
    TrialSpec,
    TrialsReply,
    TrialWork,
)
from tradepulse.trainer import deliveries, queries
from tradepulse.trainer.deps import Deps

from .trainer_fakes import (
    SNAPSHOT,
    FakeDelivery,
    MemoryBus,
    MemoryJobStore,
    job_request,
    make_deps,
)


def parts(deps: Deps) -> tuple[MemoryJobStore, MemoryBus]:
    assert isinstance(deps.store, MemoryJobStore)
    assert isinstance(deps.bus, MemoryBus)
    return deps.store, deps.bus


def work_item(
    job_id: str, *, begin: int = 0, stop: int = 600, snapshot: str = SNAPSHOT
) -> TrialWork:
    job = job_request(job_id=job_id)
    return TrialWork(
        message_id=f"{job_id}.trials.900-901",
        job_id=job_id,
        strategy=job.strategy,
        trials=[
            TrialSpec(number=900, params={"a": 1}, sampler_state={"grid_id": 4}),
            TrialSpec(number=901, params={"a": 2}),
        ],
        window=DataWindow(
            snapshot=snapshot,
            content_hash="h",
            begin=begin,
            stop=stop,
            trade_from=0,
            first_ms=0,
            last_ms=1,
        ),
        regime=job.regime,
        settings=job.settings,
        objective=job.objective,
        min_trades=job.min_trades,
    )


async def with_job(deps: Deps) -> str:
    job = job_request()
    await parts(deps)[0].create_job(job)
    return job.job_id


async def test_a_work_item_that_keeps_crashing_is_stored_as_failed_trials_with_why() -> None:
    deps = make_deps()  # trial_max_deliver 2
    store, bus = parts(deps)
    job_id = await with_job(deps)
    poisoned = work_item(job_id, begin=5_000, stop=10)  # outside the 600-row snapshot

    with structlog.testing.capture_logs() as logs:
        first = FakeDelivery(poisoned.to_bytes(), attempt=1)
        assert await deliveries.trial_work(first, deps) == []
    assert first.settled == ["nak 2"]
    assert store.trials[job_id] == {}
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["trials crashed"]

    with structlog.testing.capture_logs():
        last = FakeDelivery(poisoned.to_bytes(), attempt=2)
        results = await deliveries.trial_work(last, deps)
    assert last.settled == ["ack"]
    reason = "gave up after 2 attempts: internal error: IndexError: slice 5000:10 outside 0:600"
    assert [(r.number, r.state, r.reason) for r in results] == [
        (900, "failed", reason),
        (901, "failed", reason),
    ]
    stored = store.trials[job_id]
    assert [(t.state, t.value, t.reason) for t in stored.values()] == [("failed", None, reason)] * 2
    assert stored[900].system_attrs == {"grid_id": 4}
    assert [r.message_id for r in bus.announced] == [
        f"{job_id}.trial.900.done",
        f"{job_id}.trial.901.done",
    ]


async def test_a_work_item_that_cannot_even_be_stored_as_failed_comes_back_later() -> None:
    deps = make_deps()
    store, _ = parts(deps)
    job_id = await with_job(deps)

    async def away(trials: Any) -> None:
        raise KeyError("a bug in the store")

    store.insert_trials = away  # type: ignore[method-assign]
    delivery = FakeDelivery(work_item(job_id, begin=5_000, stop=10).to_bytes(), attempt=2)
    with structlog.testing.capture_logs():
        assert await deliveries.trial_work(delivery, deps) == []
    assert delivery.settled == ["nak 5"]


async def test_a_missing_snapshot_fails_the_trials_at_once() -> None:
    deps = make_deps()
    store, _ = parts(deps)
    job_id = await with_job(deps)
    delivery = FakeDelivery(work_item(job_id, snapshot="gone").to_bytes())
    results = await deliveries.trial_work(delivery, deps)
    assert delivery.settled == ["ack"]
    reason = "cannot evaluate: dataset snapshot gone is no longer in the object store"
    assert [(r.state, r.reason) for r in results] == [("failed", reason)] * 2
    assert len(store.trials[job_id]) == 2


async def test_a_store_away_sends_the_work_item_back_soon() -> None:
    deps = make_deps()
    store, bus = parts(deps)
    job_id = await with_job(deps)

    async def away(trials: Any) -> None:
        raise ConnectionError("connection refused")

    store.insert_trials = away  # type: ignore[method-assign]
    delivery = FakeDelivery(work_item(job_id, snapshot="gone").to_bytes(), attempt=7)
    assert await deliveries.trial_work(delivery, deps) == []
    assert delivery.settled == ["nak 1"], "a passing fault is retried however often"
    assert bus.announced == []


async def test_a_malformed_work_item_is_refused_for_good() -> None:
    deps = make_deps()
    delivery = FakeDelivery(b"{}")
    assert await deliveries.trial_work(delivery, deps) == []
    assert delivery.settled == ["term"]


async def test_the_intake_records_a_job_once_and_refuses_a_malformed_one() -> None:
    deps = make_deps()
    store, _ = parts(deps)
    job = job_request()
    for _ in range(2):
        delivery = FakeDelivery(job.to_bytes())
        await deliveries.intake(delivery, deps)
        assert delivery.settled == ["ack"]
    assert list(store.jobs) == [job.job_id]
    assert store.jobs[job.job_id].status == "queued"
    malformed = FakeDelivery(b"not json")
    await deliveries.intake(malformed, deps)
    assert malformed.settled == ["term"]


# Requests -------------------------------------------------------------------------------


async def test_a_request_that_does_not_decode_is_answered_as_invalid() -> None:
    deps = make_deps()
    reply = await queries.answer(GetJob, b'{"job": 1}', lambda r: queries.get_job(r, deps))
    assert isinstance(reply, ErrorReply)
    assert reply.code == INVALID_REQUEST
    assert reply.error.startswith("invalid request: ")


async def test_a_request_met_by_a_store_away_is_answered_as_unavailable() -> None:
    deps = make_deps()
    store, _ = parts(deps)

    async def away(job_id: str) -> None:
        raise ConnectionError("connection refused")

    store.get_job = away  # type: ignore[method-assign]
    data = GetJob(job_id="job-1").to_bytes()
    reply = await queries.answer(GetJob, data, lambda r: queries.get_job(r, deps))
    assert reply == ErrorReply(
        message_id=reply.message_id,
        error="trainer unavailable: connection refused",
        code=UNAVAILABLE,
    )


async def test_an_unknown_job_is_answered_as_not_found_not_as_an_error() -> None:
    deps = make_deps()
    get = await queries.answer(
        GetJob, GetJob(job_id="job-nope").to_bytes(), lambda r: queries.get_job(r, deps)
    )
    assert isinstance(get, JobReply)
    assert get.job is None
    cancel = await queries.cancel_job(CancelJob(job_id="job-nope"), deps)
    assert cancel == CancelReply(
        message_id=cancel.message_id, job_id="job-nope", status=None, found=False
    )
    assert parts(deps)[1].cancels == [], "nothing to tell the replicas"


async def test_a_job_and_its_trials_are_read_through_the_store() -> None:
    deps = make_deps()
    job_id = await with_job(deps)
    await deliveries.trial_work(FakeDelivery(work_item(job_id, snapshot="gone").to_bytes()), deps)
    view = (await queries.get_job(GetJob(job_id=job_id), deps)).job
    assert view is not None
    assert (view.job_id, view.status, view.trials_done, view.holder) == (job_id, "queued", 0, None)
    page = await queries.list_trials(ListTrials(job_id=job_id, limit=1, offset=1), deps)
    assert isinstance(page, TrialsReply)
    assert (page.total, [t.number for t in page.trials]) == (2, [901])
