"""A trial work item from delivery to ack, the intake, and the trainer's answers to requests
(through the skeleton's responder), on in-memory ports."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tradepulse.common.contracts.base import INVALID_REQUEST, UNAVAILABLE, ErrorReply, Message
from tradepulse.common.contracts.training import (
    CancelJob,
    CancelReply,
    DataWindow,
    GetJob,
    JobReply,
    ListTrials,
    TrainingRequested,
    TrialSpec,
    TrialsReply,
    TrialWork,
)
from tradepulse.common.subscribe import Consumer, ConsumerSpec, Settlement, respond
from tradepulse.trainer import deliveries, queries
from tradepulse.trainer.app import intake_policy
from tradepulse.trainer.deps import Deps

from .test_subscribe import FakeJsMsg, FakeNats, FakeRequest, as_msg
from .trainer_fakes import (
    SNAPSHOT,
    FakeDelivery,
    MemoryBus,
    MemoryJobStore,
    job_request,
    make_deps,
    no_heartbeat,
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
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["trials_crashed"]

    with structlog.testing.capture_logs():
        last = FakeDelivery(poisoned.to_bytes(), attempt=2)
        results = await deliveries.trial_work(last, deps)
    assert last.settled == ["ack"]
    reason = (
        "gave up after 2 attempts: internal error in the trainer (IndexError); its log has the "
        "details under the event trials_crashed"
    )
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


async def test_a_job_or_work_item_from_a_newer_producer_waits_for_an_upgraded_replica() -> None:
    deps = make_deps()
    store, _ = parts(deps)
    job_id = await with_job(deps)
    newer_job = json.loads(job_request().to_bytes())
    newer_work = json.loads(work_item(job_id).to_bytes())
    for body in (newer_job, newer_work):
        body["schema_version"] = 9
    with structlog.testing.capture_logs() as logs:
        job = FakeDelivery(json.dumps(newer_job).encode())
        await deliveries.job(job, deps, no_heartbeat)
        work = FakeDelivery(json.dumps(newer_work).encode())
        assert await deliveries.trial_work(work, deps) == []
    assert (job.settled, work.settled) == (["nak 30"], ["nak 30"])
    assert [e["event"] for e in logs] == ["job_newer_schema", "trials_newer_schema"]
    assert list(store.jobs) == [job_id]
    assert store.trials[job_id] == {}


async def test_the_intake_records_a_job_once_and_refuses_a_malformed_one() -> None:
    deps = make_deps()
    store, _ = parts(deps)
    job = job_request()

    async def record(request: TrainingRequested) -> None:
        await store.create_job(request)

    intake = Consumer(
        cast(JetStreamContext, None),
        ConsumerSpec(
            name="intake", stream="S", subject="s", durable="d", policy=intake_policy(deps.settings)
        ),
        TrainingRequested,
        record,
    )
    for _ in range(2):
        delivery = FakeJsMsg(job.to_bytes())
        assert await intake.handle(as_msg(delivery)) == Settlement("ack")
    assert list(store.jobs) == [job.job_id]
    assert store.jobs[job.job_id].status == "queued"
    with structlog.testing.capture_logs():
        malformed = FakeJsMsg(b"not json")
        assert await intake.handle(as_msg(malformed)) == Settlement("term")


async def test_the_intake_retries_a_store_away_every_second_for_as_long_as_it_lasts() -> None:
    deps = make_deps()

    async def away(request: TrainingRequested) -> None:
        raise ConnectionError("connection refused")

    intake = Consumer(
        cast(JetStreamContext, None),
        ConsumerSpec(
            name="intake", stream="S", subject="s", durable="d", policy=intake_policy(deps.settings)
        ),
        TrainingRequested,
        away,
    )
    with structlog.testing.capture_logs():
        for attempt in (1, 2, 50):
            delivery = FakeJsMsg(job_request().to_bytes(), num_delivered=attempt)
            assert await intake.handle(as_msg(delivery)) == Settlement("nak", 1.0)


# Requests -------------------------------------------------------------------------------


async def ask_trainer(
    contract: type[Any], handler: Callable[[Any], Awaitable[Message]], body: bytes
) -> bytes:
    """One request to a trainer endpoint, answered through the skeleton's responder."""
    nc = FakeNats()
    await respond(cast(NatsClient, nc), "s.q", contract, handler, service="trainer", name="q")
    request = FakeRequest(body)
    with structlog.testing.capture_logs():
        await nc.callbacks[("s.q", "")](cast(Msg, request))
    [answer] = request.answers
    return answer


async def test_a_request_that_does_not_decode_is_answered_as_invalid() -> None:
    deps = make_deps()
    reply = ErrorReply.from_bytes(
        await ask_trainer(GetJob, lambda r: queries.get_job(r, deps), b'{"job": 1}')
    )
    assert reply.code == INVALID_REQUEST
    assert reply.error.startswith("not a GetJob: job_id: Field required")


async def test_a_request_met_by_a_store_away_is_answered_as_unavailable() -> None:
    deps = make_deps()
    store, _ = parts(deps)

    async def away(job_id: str) -> None:
        raise ConnectionError("connection refused")

    store.get_job = away  # type: ignore[method-assign]
    data = GetJob(job_id="job-1").to_bytes()
    reply = ErrorReply.from_bytes(
        await ask_trainer(GetJob, lambda r: queries.get_job(r, deps), data)
    )
    assert reply == ErrorReply(
        message_id=reply.message_id,
        error="the trainer service could not answer; try again",
        code=UNAVAILABLE,
    )


async def test_an_unknown_job_is_answered_as_not_found_not_as_an_error() -> None:
    deps = make_deps()
    get = JobReply.from_bytes(
        await ask_trainer(
            GetJob, lambda r: queries.get_job(r, deps), GetJob(job_id="job-nope").to_bytes()
        )
    )
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
