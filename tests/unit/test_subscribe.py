"""The one NATS idiom (`tradepulse.common.subscribe`) with in-memory stand-ins for nats-py.

The settling rules are a pure function; the consumer and the responder run against fakes
that record what a real message would be told (ack, nak with delay, term, in-progress, reply).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from tradepulse.common.bus import while_transient
from tradepulse.common.contracts.base import (
    INVALID_REQUEST,
    NOT_FOUND,
    UNAVAILABLE,
    ErrorReply,
    Message,
)
from tradepulse.common.contracts.market import CoverageQuery, CoverageReply, GetIngest
from tradepulse.common.errors import InvalidRequestError, NotFoundError
from tradepulse.common.subscribe import (
    AckPolicy,
    Consumer,
    ConsumerSpec,
    Settlement,
    pull_subscription,
    respond,
    settle,
)

POLICY = AckPolicy(ack_wait_s=30, max_deliver=5, retry_delay_s=2, max_retry_delay_s=10)


async def until(check: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.005)


# --- the pure rules ---------------------------------------------------------------------------


def test_a_failed_delivery_is_naked_with_a_doubling_capped_delay_until_the_last() -> None:
    delays = [settle("failed", n, POLICY) for n in range(1, 5)]
    assert delays == [
        Settlement("nak", 2.0),
        Settlement("nak", 4.0),
        Settlement("nak", 8.0),
        Settlement("nak", 10.0),
    ]
    assert settle("failed", 5, POLICY) == Settlement("give_up")
    assert settle("failed", 6, POLICY) == Settlement("give_up")


def test_forever_means_no_give_up_and_backoff_one_means_a_constant_delay() -> None:
    forever = AckPolicy(ack_wait_s=30, max_deliver=-1, retry_delay_s=2, retry_backoff=1)
    assert {settle("failed", n, forever) for n in (1, 2, 50, 10_000)} == {Settlement("nak", 2.0)}


def test_other_verdicts() -> None:
    assert settle("handled", 5, POLICY) == Settlement("ack")
    assert settle("unreadable", 1, POLICY) == Settlement("term")
    assert settle("newer_schema", 9, POLICY) == Settlement("nak", 30.0)
    assert settle("shutdown", 1, POLICY) == Settlement("nak", None)


@pytest.mark.parametrize(
    "bad",
    [
        {"ack_wait_s": 0},
        {"ack_wait_s": 1, "retry_delay_s": 0},
        {"ack_wait_s": 1, "retry_backoff": 0.5},
        {"ack_wait_s": 1, "max_deliver": 0},
        {"ack_wait_s": 1, "max_deliver": -2},
    ],
)
def test_a_policy_that_cannot_work_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        AckPolicy(**bad)


# --- the consumer with a stand-in message -------------------------------------------------------


@dataclass
class FakeJsMsg:
    """What the consumer calls on a JetStream message, recorded."""

    data: bytes
    num_delivered: int = 1
    told: list[tuple[str, float | None]] = field(default_factory=list)
    heartbeats: int = 0

    @property
    def metadata(self) -> Any:
        return SimpleNamespace(
            num_delivered=self.num_delivered,
            stream="S",
            sequence=SimpleNamespace(stream=7),
        )

    async def ack_sync(self, timeout: float = 1.0) -> None:  # noqa: ASYNC109 (nats-py's signature)
        self.told.append(("ack", None))

    async def ack(self) -> None:
        self.told.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        self.told.append(("nak", delay))

    async def term(self) -> None:
        self.told.append(("term", None))

    async def in_progress(self) -> None:
        self.heartbeats += 1


class FakeSubscription:
    """A pull subscription: hands out the queued batches, then times out like an idle one."""

    def __init__(self, batches: list[list[FakeJsMsg]]) -> None:
        self.batches = batches
        self.fetches = 0

    async def fetch(self, batch: int, timeout: float) -> list[FakeJsMsg]:  # noqa: ASYNC109
        self.fetches += 1
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(0.001)
        raise nats.errors.TimeoutError

    async def unsubscribe(self) -> None:
        pass


class FakeJs:
    """`pull_subscribe` raises each of `failures` in turn, then subscribes."""

    def __init__(self, sub: FakeSubscription, failures: list[Exception] | None = None) -> None:
        self.sub = sub
        self.configs: list[Any] = []
        self.failures = list(failures or [])

    async def pull_subscribe(self, subject: str, **kwargs: Any) -> FakeSubscription:
        self.configs.append(kwargs["config"])
        if self.failures:
            raise self.failures.pop(0)
        return self.sub


def consumer(
    handler: Callable[[GetIngest], Awaitable[None]],
    *,
    policy: AckPolicy = POLICY,
    give_up: Callable[[GetIngest, Exception, int], Awaitable[None]] | None = None,
    js: FakeJs | None = None,
) -> Consumer[GetIngest]:
    spec = ConsumerSpec(name="test", stream="S", subject="s.x", durable="d", policy=policy)
    fake_js = cast(JetStreamContext, js or FakeJs(FakeSubscription([])))
    return Consumer(fake_js, spec, GetIngest, handler, give_up=give_up)


def as_msg(fake: FakeJsMsg) -> Msg:
    return cast(Msg, fake)


async def test_a_handled_message_is_decoded_and_acked() -> None:
    seen: list[GetIngest] = []

    async def handler(message: GetIngest) -> None:
        seen.append(message)

    msg = FakeJsMsg(GetIngest(request_id="r1").to_bytes())
    assert await consumer(handler).handle(as_msg(msg)) == Settlement("ack")
    assert [m.request_id for m in seen] == ["r1"]
    assert msg.told == [("ack", None)]


async def test_a_failure_is_naked_then_given_up_on_the_last_delivery() -> None:
    given_up: list[tuple[str, str, int]] = []

    async def handler(message: GetIngest) -> None:
        raise ConnectionError("database away")

    async def give_up(message: GetIngest, error: Exception, attempts: int) -> None:
        given_up.append((message.request_id, str(error), attempts))

    c = consumer(handler, give_up=give_up)
    second = FakeJsMsg(GetIngest(request_id="r").to_bytes(), num_delivered=2)
    assert await c.handle(as_msg(second)) == Settlement("nak", 4.0)
    assert second.told == [("nak", 4.0)]
    assert given_up == []

    last = FakeJsMsg(GetIngest(request_id="r").to_bytes(), num_delivered=5)
    assert await c.handle(as_msg(last)) == Settlement("ack")
    assert given_up == [("r", "database away", 5)]
    assert last.told == [("ack", None)]


async def test_the_last_delivery_is_terminated_when_there_is_no_verdict_to_record() -> None:
    async def handler(message: GetIngest) -> None:
        raise RuntimeError("bug")

    async def give_up(message: GetIngest, error: Exception, attempts: int) -> None:
        raise ConnectionError("still away")

    last = FakeJsMsg(GetIngest(request_id="r").to_bytes(), num_delivered=5)
    assert await consumer(handler).handle(as_msg(last)) == Settlement("term")
    again = FakeJsMsg(GetIngest(request_id="r").to_bytes(), num_delivered=5)
    assert await consumer(handler, give_up=give_up).handle(as_msg(again)) == Settlement("term")


async def test_unreadable_bodies_are_terminated_and_newer_ones_wait_for_an_upgrade() -> None:
    calls: list[GetIngest] = []

    async def handler(message: GetIngest) -> None:
        calls.append(message)

    c = consumer(handler)
    garbage = FakeJsMsg(b'{"request_id": ""}')
    with capture_logs() as logs:
        assert await c.handle(as_msg(garbage)) == Settlement("term")
        newer = FakeJsMsg(json.dumps({"schema_version": 2, "request_id": "r"}).encode())
        assert await c.handle(as_msg(newer)) == Settlement("nak", 30.0)
    assert calls == []
    assert [e["event"] for e in logs] == ["message_unreadable", "message_newer_schema"]
    assert "request_id" in logs[0]["error"]


async def test_a_long_handler_sends_heartbeats() -> None:
    release = asyncio.Event()

    async def handler(message: GetIngest) -> None:
        await release.wait()

    msg = FakeJsMsg(GetIngest(request_id="r").to_bytes())
    quick = AckPolicy(ack_wait_s=0.03)
    task = asyncio.create_task(consumer(handler, policy=quick).handle(as_msg(msg)))
    await until(lambda: msg.heartbeats >= 3, "three heartbeats")
    assert msg.told == []
    release.set()
    assert await task == Settlement("ack")


async def test_at_shutdown_the_message_in_hand_and_the_rest_of_its_batch_are_handed_back() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(message: GetIngest) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    first = FakeJsMsg(GetIngest(request_id="a").to_bytes())
    second = FakeJsMsg(GetIngest(request_id="b").to_bytes())
    js = FakeJs(FakeSubscription([[first, second]]))
    c = consumer(handler, js=js)
    await c.start()
    await asyncio.wait_for(started.wait(), 5)
    await c.stop(grace=5)
    assert cancelled.is_set()
    assert first.told == [("nak", None)]
    assert second.told == [("nak", None)]
    [config] = js.configs
    assert (config.durable_name, config.ack_wait, config.max_deliver) == ("d", 30, 5)


async def test_a_consumer_spec_configures_its_durable_and_its_pending_limit() -> None:
    js = FakeJs(FakeSubscription([]))
    spec = ConsumerSpec(
        name="t", stream="S", subject="s.x", durable="d", policy=POLICY, max_ack_pending=10_000
    )
    sub = await pull_subscription(cast(JetStreamContext, js), spec)
    assert cast(object, sub) is js.sub
    [config] = js.configs
    assert (config.durable_name, config.filter_subject, config.max_ack_pending) == (
        "d",
        "s.x",
        10_000,
    )
    default = ConsumerSpec(name="t", stream="S", subject="s.x", durable="d", policy=POLICY)
    assert default.config().max_ack_pending is None, "the server's default"


async def test_a_cluster_electing_its_leader_is_waited_for_at_subscription() -> None:
    # Seen on a 3-node cluster: a trainer started as a stream was being created crashed on
    # the consumer lookup's timeout and never answered a ping.
    js = FakeJs(
        FakeSubscription([]),
        [nats.errors.TimeoutError(), nats.js.errors.ServiceUnavailableError()],
    )
    spec = ConsumerSpec(name="t", stream="S", subject="s.x", durable="d", policy=POLICY)
    sub = await pull_subscription(cast(JetStreamContext, js), spec)
    assert cast(object, sub) is js.sub
    assert len(js.configs) == 3


async def test_jetstream_silent_past_the_wait_is_a_connection_error_naming_the_call() -> None:
    async def silent() -> None:
        raise nats.errors.TimeoutError

    with pytest.raises(ConnectionError, match="the consumer d within 0 s"):
        await while_transient(silent, "the consumer d", within=0)


async def test_a_refusal_is_not_retried() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise nats.js.errors.NotFoundError

    with pytest.raises(nats.js.errors.NotFoundError):
        await while_transient(refused, "the stream info")
    assert calls == 1


async def test_an_idle_consumer_logs_nothing() -> None:
    async def handler(message: GetIngest) -> None:
        raise AssertionError("nothing to handle")

    sub = FakeSubscription([])
    c = consumer(handler, js=FakeJs(sub))
    with capture_logs() as logs:
        await c.start()
        await until(lambda: sub.fetches >= 5, "five idle fetches")
        await c.stop()
    assert logs == []


# --- request/reply --------------------------------------------------------------------------


@dataclass
class FakeRequest:
    data: bytes
    reply: str = "_INBOX.1"
    answers: list[bytes] = field(default_factory=list)

    async def respond(self, data: bytes) -> None:
        self.answers.append(data)


class FakeNats:
    def __init__(self) -> None:
        self.callbacks: dict[tuple[str, str], Callable[[Msg], Awaitable[None]]] = {}

    async def subscribe(
        self, subject: str, queue: str = "", cb: Callable[[Msg], Awaitable[None]] | None = None
    ) -> None:
        assert cb is not None
        self.callbacks[(subject, queue)] = cb


async def responder(
    handler: Callable[[CoverageQuery], Awaitable[Message]],
) -> Callable[[bytes], Awaitable[list[bytes]]]:
    nc = FakeNats()
    await respond(
        cast(NatsClient, nc),
        "s.coverage",
        CoverageQuery,
        handler,
        service="ingest",
        name="coverage",
        queue="ingest",
    )
    callback = nc.callbacks[("s.coverage", "ingest")]

    async def ask(body: bytes) -> list[bytes]:
        request = FakeRequest(body)
        await callback(cast(Msg, request))
        return request.answers

    return ask


async def test_a_request_gets_the_handlers_reply() -> None:
    async def handler(query: CoverageQuery) -> Message:
        assert query.symbol == "BTC/USDT"
        return CoverageReply(datasets=[])

    ask = await responder(handler)
    [answer] = await ask(CoverageQuery(symbol="BTC/USDT").to_bytes())
    assert CoverageReply.from_bytes(answer).datasets == []


@pytest.mark.parametrize(
    ("raised", "code", "text"),
    [
        (InvalidRequestError("give exactly one of a and b"), INVALID_REQUEST, "exactly one"),
        (NotFoundError("no job j1"), NOT_FOUND, "no job j1"),
        (ConnectionError("cannot reach PostgreSQL"), UNAVAILABLE, "ingest service"),
        (RuntimeError("a bug"), UNAVAILABLE, "try again"),
    ],
)
async def test_a_handlers_error_keeps_its_kind(raised: Exception, code: str, text: str) -> None:
    async def handler(query: CoverageQuery) -> Message:
        raise raised

    ask = await responder(handler)
    with capture_logs():
        [answer] = await ask(CoverageQuery().to_bytes())
    reply = ErrorReply.from_bytes(answer)
    assert reply.code == code
    assert text in reply.error


async def test_a_request_that_does_not_validate_is_refused_naming_the_field() -> None:
    async def handler(query: CoverageQuery) -> Message:
        raise AssertionError("must not be called")

    ask = await responder(handler)
    for body, problem in (
        (b'{"symbol": 7}', "symbol: Input should be a valid string"),
        (b"not json", "body: Invalid JSON"),
    ):
        [answer] = await ask(body)
        reply = ErrorReply.from_bytes(answer)
        assert reply.code == INVALID_REQUEST
        assert reply.error.startswith(f"not a CoverageQuery: {problem}")
