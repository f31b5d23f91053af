"""The registry's NATS edge and its only FastStream import: decode, call the handler, reply/ack.

Error replies: a request that cannot be decoded or carried out gets
`{"error": "<what is wrong, naming the field>", "code": "invalid_request" | "internal"}`
instead of the reply model; callers tell the two apart by the "error" key.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from faststream import AckPolicy
from faststream.nats import (
    ConsumerConfig,
    DeliverPolicy,
    JStream,
    NatsBroker,
    NatsMessage,
    PullSub,
)
from nats.js.api import AckPolicy as JsAckPolicy
from pydantic import ValidationError

from tradepulse.common.contracts.base import Message
from tradepulse.common.contracts.registry import ChangeStatus, GetConfig, ListConfigs
from tradepulse.common.contracts.training import JobCompleted
from tradepulse.common.logging import get_logger
from tradepulse.registry import handlers
from tradepulse.registry.errors import InvalidRequestError
from tradepulse.registry.handlers import Deps

# Recording a job takes milliseconds; the margin covers a database that restarts meanwhile.
JOBS_ACK_WAIT_S = 30.0
RETRY_DELAY_S = 2.0
# An event from a newer producer waits for this replica to be upgraded (or replaced).
NEWER_SCHEMA_DELAY_S = 30.0
FETCH_BATCH = 16

R = TypeVar("R", bound=Message)

log = get_logger(__name__)


def error_reply(code: str, message: str) -> bytes:
    return json.dumps({"error": message, "code": code}).encode()


def describe(exc: ValueError) -> str:
    """A decoding error as `field: problem` pairs, without pydantic's URLs and input echoes."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def newer_schema(body: bytes, message_type: type[Message]) -> bool:
    try:
        version = json.loads(body).get("schema_version")
    except (ValueError, AttributeError):
        return False
    return isinstance(version, int) and version > message_type.SCHEMA_VERSION


async def answer(
    body: bytes, request_type: type[R], handle: Callable[[R, Deps], Awaitable[Message]], deps: Deps
) -> bytes:
    try:
        request = request_type.from_bytes(body)
    except ValueError as exc:  # ValidationError, or a schema_version newer than ours
        return error_reply("invalid_request", describe(exc))
    try:
        reply = await handle(request, deps)
    except InvalidRequestError as exc:
        return error_reply("invalid_request", str(exc))
    except Exception:
        log.exception("request_failed", request=request_type.__name__)
        return error_reply("internal", "the registry could not answer; try again")
    return reply.to_bytes()


def register(broker: NatsBroker, deps: Deps) -> None:
    names = deps.names

    @broker.subscriber(
        names.job_completed,
        stream=JStream(name=names.events_stream, declare=False),
        durable=names.registry_jobs_durable,
        pull_sub=PullSub(batch_size=FETCH_BATCH, timeout=1.0),
        config=ConsumerConfig(
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=JOBS_ACK_WAIT_S,
            deliver_policy=DeliverPolicy.ALL,
        ),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_job_completed(msg: NatsMessage) -> None:
        try:
            event = JobCompleted.from_bytes(msg.body)
        except ValueError as exc:
            if newer_schema(msg.body, JobCompleted):
                log.warning("job_completed_newer_schema", error=describe(exc))
                await msg.nack(delay=NEWER_SCHEMA_DELAY_S)
                return
            # Redelivering a message that no version can read would only cost work forever.
            log.error("job_completed_unreadable", error=describe(exc))
            await msg.reject()
            return
        try:
            await handlers.record_job(event, deps)
        except Exception:
            log.exception("job_completed_failed", job_id=event.job_id)
            await msg.nack(delay=RETRY_DELAY_S)
            return
        await msg.ack()

    @broker.subscriber(names.list_configs, queue=names.registry_queue)
    async def on_list_configs(msg: NatsMessage) -> bytes:
        return await answer(msg.body, ListConfigs, handlers.list_configs, deps)

    @broker.subscriber(names.get_config, queue=names.registry_queue)
    async def on_get_config(msg: NatsMessage) -> bytes:
        return await answer(msg.body, GetConfig, handlers.get_config, deps)

    @broker.subscriber(names.change_status, queue=names.registry_queue)
    async def on_change_status(msg: NatsMessage) -> bytes:
        return await answer(msg.body, ChangeStatus, handlers.change_status, deps)
