"""A pulled job or trial work item, from its bytes to its ack: decode, run the use case,
settle it.

Each function handles one delivery of one queue and settles it as the retry policy says
(policy.RetryPolicy, which also says why these queues are not common `Consumer`s); the pull
loops in app.py only fetch and call them. Log events are lower_snake names (see
tradepulse.common.logging); an error field is `policy.describe(exc)`, never an empty string.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError

from tradepulse.common.contracts.base import Message
from tradepulse.common.contracts.training import TrainingRequested, TrialCompleted, TrialWork
from tradepulse.common.logging import get_logger
from tradepulse.common.subscribe import describe as describe_invalid
from tradepulse.common.subscribe import newer_schema
from tradepulse.trainer import handlers, trials
from tradepulse.trainer.deps import Deps
from tradepulse.trainer.policy import (
    TRANSIENT,
    MalformedMessageError,
    NewerSchemaError,
    Queue,
    Settle,
    Verdict,
    describe,
)
from tradepulse.trainer.ports import Delivery

log = get_logger("trainer")

M = TypeVar("M", bound=Message)


def decode(model: type[M], data: bytes) -> M:
    try:
        return model.from_bytes(data)
    except ValidationError as exc:
        if newer_schema(data, model):
            raise NewerSchemaError(describe_invalid(exc)) from exc
        raise MalformedMessageError(f"not a {model.__name__}: {describe_invalid(exc)}") from exc


async def _settle(delivery: Delivery, verdict: Verdict) -> None:
    """Best effort: a message left unsettled comes back after its ack wait anyway."""
    with contextlib.suppress(Exception):
        if verdict.settle is Settle.TERM:
            await delivery.term()
        elif verdict.settle is Settle.NAK:
            await delivery.nak(delay=verdict.delay)


def _refused(what: str, exc: MalformedMessageError) -> str:
    return f"{what}_newer_schema" if isinstance(exc, NewerSchemaError) else f"{what}_malformed"


def internal_error(exc: BaseException, event: str) -> str:
    """The reason stored and shown for a failure this code did not expect: the exception's
    type and where its details are, never its text (which may hold paths or data)."""
    return (
        f"internal error in the trainer ({type(exc).__name__}); "
        f"its log has the details under the event {event}"
    )


Heartbeat = Callable[[Delivery, str], Coroutine[Any, Any, None]]


async def job(delivery: Delivery, deps: Deps, heartbeat: Heartbeat) -> None:
    """Hold a delivered job until its end, with `heartbeat(delivery, job_id)` running
    meanwhile; a job this replica holds already is handed back for later."""
    policy = deps.policy
    try:
        request = decode(TrainingRequested, delivery.data)
    except MalformedMessageError as exc:
        log.error(_refused("job", exc), error=str(exc))
        await _settle(delivery, policy.verdict(Queue.JOBS, exc))
        return
    job_id = request.job_id
    cancel = deps.cancels.hold(job_id)
    if cancel is None:
        await _settle(delivery, policy.held_here())
        return
    structlog.contextvars.bind_contextvars(job_id=job_id)
    beating = asyncio.create_task(heartbeat(delivery, job_id))
    deps.metrics.jobs_held.inc()
    try:
        status = await handlers.take_delivery(request, delivery.attempt, deps, cancel)
        log.info("job_finished", status=status)
        await delivery.ack_sync()
    except (Exception, asyncio.CancelledError) as exc:
        verdict = policy.verdict(Queue.JOBS, exc, delivery.attempt)
        if verdict.release_lease:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(deps.store.release_lease(job_id, deps.replica), 2)
        if verdict.settle is Settle.GIVE_UP:
            log.exception("job_crashed", error=describe(exc))
            with contextlib.suppress(Exception):
                reason = internal_error(exc, "job_crashed")
                await handlers.finish_failed(job_id, reason, deps)
                await delivery.ack_sync()
        elif verdict.settle is Settle.LEAVE:
            log.warning("job_taken_over", error=describe(exc))
        else:
            if isinstance(exc, TRANSIENT):
                log.warning("job_interrupted", retry_in_s=verdict.delay, error=describe(exc))
            await _settle(delivery, verdict)
        if isinstance(exc, asyncio.CancelledError):
            raise
    finally:
        beating.cancel()
        deps.metrics.jobs_held.dec()
        deps.cancels.release(job_id)
        structlog.contextvars.unbind_contextvars("job_id")


async def heartbeat(delivery: Delivery, job_id: str, deps: Deps) -> None:
    """Keep a held job's message and lease alive: a third of the ack wait apart. Stops once
    another replica has taken the job over (this one was away too long): the holder learns it
    at its next progress record and leaves the job."""
    beat = deps.settings.job_ack_wait / 3
    while True:
        await asyncio.sleep(beat)
        with contextlib.suppress(Exception):
            await delivery.in_progress()
        # Bounded: a renewal waiting on a database that is away must not delay the next
        # in-progress ack past JetStream's ack wait.
        renewed: bool | None = None
        with contextlib.suppress(Exception):
            renewed = await asyncio.wait_for(
                deps.store.renew_lease(job_id, deps.replica, deps.settings.lease_seconds), beat
            )
        if renewed is False:
            log.warning("job_lease_lost", job_id=job_id)
            return


async def trial_work(delivery: Delivery, deps: Deps) -> list[TrialCompleted]:
    """Evaluate a work item; the trials it stored (none if it is to come back)."""
    policy = deps.policy
    try:
        work = decode(TrialWork, delivery.data)
    except MalformedMessageError as exc:
        log.error(_refused("trials", exc), error=str(exc))
        await _settle(delivery, policy.verdict(Queue.TRIALS, exc))
        return []
    numbers = [t.number for t in work.trials]
    attempt = delivery.attempt
    try:
        results = await trials.run_trials(work, deps)
    except Exception as exc:
        verdict = policy.verdict(Queue.TRIALS, exc, attempt)
        if verdict.settle is Settle.RAISE:
            raise
        if isinstance(exc, TRANSIENT):
            log.warning(
                "trials_interrupted",
                job_id=work.job_id,
                trials=numbers,
                retry_in_s=verdict.delay,
                error=describe(exc),
            )
        else:
            log.exception(
                "trials_crashed",
                job_id=work.job_id,
                trials=numbers,
                attempt=attempt,
                error=describe(exc),
            )
        if verdict.settle is not Settle.GIVE_UP:
            await _settle(delivery, verdict)
            return []
        reason = f"gave up after {attempt} attempts: {internal_error(exc, 'trials_crashed')}"
        try:
            results = await trials.give_up_trials(work, reason, deps)
        except Exception as failure:
            log.exception("trials_give_up_failed", job_id=work.job_id, error=describe(failure))
            await _settle(delivery, Verdict(Settle.NAK, delay=verdict.delay))
            return []
    with contextlib.suppress(Exception):
        await delivery.ack()
    return results
