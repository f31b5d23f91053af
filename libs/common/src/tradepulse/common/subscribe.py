"""The one way a service listens on NATS: plain nats-py and two small helpers.

- `Consumer`: a JetStream pull-consumer loop. It decodes each message into its pydantic
  contract, calls the handler, and settles the delivery by one explicit `AckPolicy`: ack when
  the handler returns; nak with a growing delay when it raises, until the policy's last
  delivery, where `give_up` records the verdict; term for a body no version can read; nak
  after a delay for a body from a newer producer; in-progress acks (heartbeats) while a
  handler runs; an immediate nak of whatever is in hand at shutdown, so that another replica
  takes it at once.
- `respond`: request/reply. It decodes the request, calls the handler and answers with its
  reply, or with an `ErrorReply(error, code)` whose code survives the bus: INVALID_REQUEST
  for a body that does not validate or an `InvalidRequestError`, NOT_FOUND for a
  `NotFoundError`, UNAVAILABLE for anything else (a database or NATS away, or a fault).

Why not FastStream: the trainer holds a job for minutes, so it needs heartbeats (in-progress
acks), a nak on shutdown and confirmed acks, which FastStream's subscriber model hides behind
its own loop; ingest and registry used FastStream only as a loop shell with manual acks,
hand decoding and a second raw connection. One idiom for every service means one way to write
a subscriber and one way to test it: a handler is a plain async function of a contract, and
the settling rules are a pure function (`settle`) with unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from tradepulse.common.bus import while_transient
from tradepulse.common.contracts.base import (
    INVALID_REQUEST,
    NOT_FOUND,
    UNAVAILABLE,
    ErrorReply,
    Message,
)
from tradepulse.common.errors import InvalidRequestError, NotFoundError
from tradepulse.common.logging import get_logger

M = TypeVar("M", bound=Message)
Q = TypeVar("Q", bound=Message)

# How long one fetch waits for messages before the loop looks at its stop flag again.
FETCH_WAIT_S = 1.0
# Pause after a failed fetch (NATS away, consumer being re-created) before the next one.
FETCH_RETRY_S = 0.5
# How long a message from a newer producer waits before it is offered again (to a replica
# that may have been upgraded meanwhile).
NEWER_SCHEMA_DELAY_S = 30.0

log = get_logger(__name__)


# --- the ack policy: a pure function ------------------------------------------------------------


@dataclass(frozen=True)
class AckPolicy:
    """How a consumer settles its deliveries; fixed per consumer, in code.

    `max_deliver` is also the consumer's server-side limit (-1: redeliver forever); a durable
    consumer keeps the limit it was created with, so the give-up must happen on the delivery
    the server treats as the last. A failed delivery n (1-based) is nak'ed with
    `retry_delay_s * retry_backoff ** (n - 1)`, at most `max_retry_delay_s`.
    """

    ack_wait_s: float
    max_deliver: int = -1
    retry_delay_s: float = 2.0
    retry_backoff: float = 2.0
    max_retry_delay_s: float = 60.0
    newer_schema_delay_s: float = NEWER_SCHEMA_DELAY_S
    # ack_sync: wait for the server to confirm the ack before the next message.
    confirm_ack: bool = True

    def __post_init__(self) -> None:
        if self.ack_wait_s <= 0 or self.retry_delay_s <= 0 or self.retry_backoff < 1:
            raise ValueError("ack_wait_s and retry_delay_s must be > 0, retry_backoff >= 1")
        if self.max_deliver == 0 or self.max_deliver < -1:
            raise ValueError("max_deliver must be -1 (forever) or at least 1")

    @property
    def heartbeat_s(self) -> float:
        """In-progress acks three times per ack wait: one lost heartbeat costs nothing."""
        return self.ack_wait_s / 3


Verdict = Literal["handled", "failed", "unreadable", "newer_schema", "shutdown"]
# The outcomes the metrics count: a consumer's settlements, a responder's reply kinds.
CONSUMER_OUTCOMES = ("ack", "nak", "term")
RESPONDER_OUTCOMES = ("ok", INVALID_REQUEST, NOT_FOUND, UNAVAILABLE)


@dataclass(frozen=True)
class Settlement:
    action: Literal["ack", "nak", "term", "give_up"]
    delay_s: float | None = None


def settle(verdict: Verdict, delivered: int, policy: AckPolicy) -> Settlement:
    """What to tell JetStream about delivery number `delivered` (1-based) given its verdict.

    `give_up`: the handler failed on the last delivery the server will make; the consumer calls
    the give-up handler, then acks (or terms if even that fails)."""
    if verdict == "handled":
        return Settlement("ack")
    if verdict == "unreadable":
        # No replica of any version can read it: redelivering would only cost work forever.
        return Settlement("term")
    if verdict == "newer_schema":
        # An upgraded replica can; wait for one instead of dropping the message.
        return Settlement("nak", policy.newer_schema_delay_s)
    if verdict == "shutdown":
        return Settlement("nak")
    if policy.max_deliver != -1 and delivered >= policy.max_deliver:
        return Settlement("give_up")
    delay = policy.retry_delay_s * policy.retry_backoff ** max(0, delivered - 1)
    return Settlement("nak", min(policy.max_retry_delay_s, delay))


def describe(exc: ValueError) -> str:
    """A decoding error as `field: problem` pairs, without pydantic's URLs and input echoes."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def newer_schema(body: bytes, contract: type[Message]) -> bool:
    """The body names a schema_version newer than this service's contract."""
    try:
        version = json.loads(body).get("schema_version")
    except (ValueError, AttributeError):
        return False
    return isinstance(version, int) and version > contract.SCHEMA_VERSION


# --- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointMetrics:
    """Per-endpoint counts and durations (the endpoint is the handler's name, not the subject,
    whose namespace prefix differs per installation)."""

    messages: Counter
    seconds: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> EndpointMetrics:
        return cls(
            messages=Counter(
                "tradepulse_bus_messages",
                "Messages handled by this process, by endpoint and outcome",
                ["endpoint", "outcome"],
                registry=registry,
            ),
            seconds=Histogram(
                "tradepulse_bus_handling_seconds",
                "Time from decoding a message to settling or answering it",
                ["endpoint"],
                buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
                registry=registry,
            ),
        )

    def declare(self, endpoint: str, outcomes: tuple[str, ...]) -> None:
        """Start every known series at 0, so that the first event shows in a rate."""
        for outcome in outcomes:
            self.messages.labels(endpoint, outcome)
        self.seconds.labels(endpoint)

    def observe(self, endpoint: str, outcome: str, started: float) -> None:
        self.messages.labels(endpoint, outcome).inc()
        self.seconds.labels(endpoint).observe(time.perf_counter() - started)


# --- pull consumers -----------------------------------------------------------------------------

Handler = Callable[[M], Awaitable[None]]
GiveUp = Callable[[M, Exception, int], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer of `subject` on `stream`."""

    name: str  # the endpoint's name in logs and metrics
    stream: str
    subject: str
    durable: str
    policy: AckPolicy
    batch: int = 1
    deliver_policy: api.DeliverPolicy = api.DeliverPolicy.ALL
    # Deliveries unsettled at once (naks with a delay included); None: the server's default.
    max_ack_pending: int | None = None

    def config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.policy.ack_wait_s,
            max_deliver=self.policy.max_deliver,
            deliver_policy=self.deliver_policy,
            max_ack_pending=self.max_ack_pending,
        )


async def pull_subscription(
    js: JetStreamContext, spec: ConsumerSpec
) -> JetStreamContext.PullSubscription:
    """Create (or find) the durable consumer of `spec` and subscribe to it. A durable that
    exists keeps the configuration it was created with. Waits out a cluster electing the
    stream's leader (`while_transient`)."""

    async def subscribe() -> JetStreamContext.PullSubscription:
        for attempt in range(20):
            try:
                return await js.pull_subscribe(
                    spec.subject, durable=spec.durable, stream=spec.stream, config=spec.config()
                )
            except nats.js.errors.BadRequestError:
                # Another replica created the same durable consumer at the same moment.
                await asyncio.sleep(0.1 * (attempt + 1))
        return await js.pull_subscribe(
            spec.subject, durable=spec.durable, stream=spec.stream, config=spec.config()
        )

    return await while_transient(subscribe, f"the consumer {spec.durable}")


class Consumer(Generic[M]):
    """A pull loop that feeds `handler` one decoded `contract` at a time (see the module doc).

    `give_up(message, error, deliveries)` runs when the handler failed on the last delivery
    the policy allows; without one, that delivery is terminated."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: ConsumerSpec,
        contract: type[M],
        handler: Handler[M],
        *,
        give_up: GiveUp[M] | None = None,
        metrics: EndpointMetrics | None = None,
    ) -> None:
        self._js = js
        self.spec = spec
        self._contract = contract
        self._handler = handler
        self._give_up = give_up
        self._metrics = metrics
        if metrics is not None:
            metrics.declare(spec.name, CONSUMER_OUTCOMES)
        self._log = log.bind(endpoint=spec.name)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_hand: list[Msg] = []

    async def start(self) -> None:
        """Create (or find) the durable consumer, then pull in the background."""
        sub = await pull_subscription(self._js, self.spec)
        self._task = asyncio.create_task(self._loop(sub), name=f"consume-{self.spec.name}")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop pulling; a handler still running is cancelled and its message nak'ed, so that
        another replica takes it at once. Bounded by `grace` even if NATS is away."""
        self._stopping.set()
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._task, grace)

    async def _loop(self, sub: JetStreamContext.PullSubscription) -> None:
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    self._in_hand = await sub.fetch(self.spec.batch, timeout=FETCH_WAIT_S)
                except TimeoutError:  # nats.errors.TimeoutError is one too
                    continue  # nothing to do: the normal state of an idle consumer
                except (nats.errors.Error, OSError) as exc:
                    # NATS away: the connection's own log says so once; say it here once too.
                    if failures == 0:
                        self._log.warning("pull_failed", error=str(exc) or type(exc).__name__)
                    failures += 1
                    await asyncio.sleep(FETCH_RETRY_S)
                    continue
                failures = 0
                while self._in_hand:
                    await self.handle(self._in_hand[0])
                    self._in_hand.pop(0)
        except asyncio.CancelledError:
            await self._hand_back()
            raise
        finally:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await asyncio.wait_for(sub.unsubscribe(), 1.0)

    async def _hand_back(self) -> None:
        for msg in self._in_hand:
            self._log.info("message_handed_back", delivery=_delivery(msg))
            await self._finish(
                msg,
                settle("shutdown", msg.metadata.num_delivered, self.spec.policy),
                time.perf_counter(),
            )
        self._in_hand = []

    async def handle(self, msg: Msg) -> Settlement:
        """One delivery: decode, call the handler (with heartbeats), settle; returns the
        settlement applied."""
        started = time.perf_counter()
        delivered = msg.metadata.num_delivered
        try:
            message = self._contract.from_bytes(msg.data)
        except ValueError as exc:  # ValidationError, or a schema_version newer than ours
            verdict: Verdict = (
                "newer_schema" if newer_schema(msg.data, self._contract) else "unreadable"
            )
            self._log.warning(f"message_{verdict}", error=describe(exc), delivery=_delivery(msg))
            return await self._finish(msg, settle(verdict, delivered, self.spec.policy), started)
        heartbeat = asyncio.create_task(self._keep_alive(msg))
        try:
            await self._handler(message)
        except Exception as exc:  # every failure is retried by redelivery, bugs included
            settlement = settle("failed", delivered, self.spec.policy)
            self._log.warning(
                "message_failed",
                attempt=delivered,
                retry_in_s=settlement.delay_s,
                error=f"{type(exc).__name__}: {exc}",
                message_id=message.message_id,
            )
            if settlement.action == "give_up":
                settlement = await self._giving_up(message, exc, delivered)
            return await self._finish(msg, settlement, started)
        finally:
            heartbeat.cancel()
        return await self._finish(msg, Settlement("ack"), started)

    async def _giving_up(self, message: M, exc: Exception, delivered: int) -> Settlement:
        self._log.error("message_given_up", attempts=delivered, message_id=message.message_id)
        if self._give_up is None:
            return Settlement("term")
        try:
            await self._give_up(message, exc, delivered)
        except Exception as failure:
            self._log.exception("give_up_failed", error=f"{type(failure).__name__}: {failure}")
            return Settlement("term")
        return Settlement("ack")

    async def _finish(self, msg: Msg, settlement: Settlement, started: float) -> Settlement:
        await self._apply(msg, settlement)
        if self._metrics is not None:
            self._metrics.observe(self.spec.name, settlement.action, started)
        return settlement

    async def _apply(self, msg: Msg, settlement: Settlement) -> None:
        # A settlement lost with the connection only risks a redelivery, which every handler
        # tolerates; it must not stop the loop.
        try:
            if settlement.action == "ack":
                if self.spec.policy.confirm_ack:
                    await msg.ack_sync()
                else:
                    await msg.ack()
            elif settlement.action == "nak":
                await msg.nak(delay=settlement.delay_s)
            else:
                await msg.term()
        except (nats.errors.Error, OSError) as exc:
            self._log.warning(
                "settle_failed", action=settlement.action, error=str(exc) or type(exc).__name__
            )

    async def _keep_alive(self, msg: Msg) -> None:
        """Tell JetStream the message is still being worked on, so that it is not handed to
        another replica while a long handler runs."""
        while True:
            await asyncio.sleep(self.spec.policy.heartbeat_s)
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.in_progress()


def _delivery(msg: Msg) -> str:
    meta = msg.metadata
    return f"{meta.stream}#{meta.sequence.stream}"


# --- request/reply ------------------------------------------------------------------------------

Responder = Callable[[Q], Awaitable[Message]]


def error_reply(exc: Exception, service: str) -> ErrorReply:
    """The answer to a handler's exception, with the kind the caller needs."""
    if isinstance(exc, InvalidRequestError):
        return ErrorReply(error=str(exc), code=INVALID_REQUEST)
    if isinstance(exc, NotFoundError):
        return ErrorReply(error=str(exc), code=NOT_FOUND)
    return ErrorReply(error=f"the {service} service could not answer; try again", code=UNAVAILABLE)


async def respond(
    nc: NatsClient,
    subject: str,
    contract: type[Q],
    handler: Responder[Q],
    *,
    service: str,
    name: str,
    queue: str = "",
    metrics: EndpointMetrics | None = None,
) -> Subscription:
    """Answer requests on `subject` (one replica of a queue group each) with `handler`'s reply.

    Requests are answered one after the other, in order, on this subscription."""
    endpoint_log = log.bind(endpoint=name)

    async def callback(msg: Msg) -> None:
        started = time.perf_counter()
        if not msg.reply:
            endpoint_log.warning("request_without_reply_subject")
            return
        reply: Message
        try:
            request = contract.from_bytes(msg.data)
        except ValueError as exc:  # ValidationError, or a schema_version newer than ours
            reply = ErrorReply(
                error=f"not a {contract.__name__}: {describe(exc)}", code=INVALID_REQUEST
            )
        else:
            try:
                reply = await handler(request)
            except (InvalidRequestError, NotFoundError) as exc:
                reply = error_reply(exc, service)
            except Exception as exc:
                endpoint_log.exception("request_failed", error=f"{type(exc).__name__}: {exc}")
                reply = error_reply(exc, service)
        with contextlib.suppress(nats.errors.Error, OSError):
            await msg.respond(reply.to_bytes())
        if metrics is not None:
            outcome = reply.code if isinstance(reply, ErrorReply) else "ok"
            metrics.observe(name, outcome, started)

    if metrics is not None:
        metrics.declare(name, RESPONDER_OUTCOMES)
    return await nc.subscribe(subject, queue=queue, cb=callback)
