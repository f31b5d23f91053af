"""How a pulled job or trial work item is settled when handling it raised: the trainer's one retry
policy.

The job and trial loops ask `RetryPolicy.verdict` and do what it says; nothing else decides
between ack, nak and term. The intake is a common `Consumer` and settles by its `AckPolicy`
(app.intake_policy). The actions are those of the common consumer's `Settlement`
(tradepulse.common.subscribe): nak (with a delay), term, give_up (record the verdict, then
ack). As a common consumer does, a body no version can read is terminated and one from a newer
producer is nak'ed for an upgraded replica (`NEWER_SCHEMA_DELAY_S`). Why these two queues do
not settle by an `AckPolicy` as well: an `AckPolicy` counts every failure towards one give-up,
on the delivery the server treats as its last, whereas here a passing fault (`TRANSIENT`) is
retried however often it happens and only a crash counts towards `TRAINER_TRIAL_MAX_DELIVER` (a
setting, which a durable consumer's server-side limit could not follow); a job is given up by
`plan.next_action` once delivered too often (unless another live replica holds it) and fails at
once on a crash; a job handed back at shutdown also gives its lease up; and a give-up that
cannot be recorded is nak'ed for later, where the consumer would terminate it (losing a work
item would leave its job waiting for those trials for ever).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

import nats.errors

from tradepulse.common.db.pool import TRANSIENT as DATABASE_TRANSIENT
from tradepulse.common.errors import ServiceError
from tradepulse.common.subscribe import NEWER_SCHEMA_DELAY_S
from tradepulse.trainer.errors import JobHeldElsewhereError, JobTakenOverError

# Failures that pass: a lost connection, NATS or PostgreSQL away for a moment.
TRANSIENT: tuple[type[BaseException], ...] = (
    ConnectionError,
    nats.errors.Error,
    *DATABASE_TRANSIENT,
)


def describe(exc: BaseException) -> str:
    """An exception for a log field or a stored reason: `Type: message`, or only the type when
    the message is empty (a bare TimeoutError would otherwise read as '')."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class MalformedMessageError(ServiceError):
    """A message that does not decode as its contract: no delivery can ever succeed."""


class NewerSchemaError(MalformedMessageError):
    """A message from a newer producer: an upgraded replica can read it, so it waits for one
    (`NEWER_SCHEMA_DELAY_S` apart, as a common consumer's does)."""


class Queue(enum.Enum):
    JOBS = "jobs"  # a job to hold
    TRIALS = "trials"  # a trial work item to evaluate


class Settle(enum.Enum):
    NAK = "nak"  # deliver again after `delay`
    TERM = "term"  # never deliver again
    GIVE_UP = "give_up"  # record the failure (job failed / trials failed), then ack
    RAISE = "raise"  # not this policy's to handle: let it propagate
    LEAVE = "leave"  # settle nothing: the message is another replica's delivery now


@dataclass(frozen=True)
class Verdict:
    settle: Settle
    # NAK: seconds before the redelivery (None: at once). GIVE_UP: the nak's delay if recording
    # the failure fails too (None: no nak; the message comes back after its ack wait).
    delay: float | None = None
    # Shutting down: give the job's lease up so that another replica can take it at once.
    release_lease: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    lease_seconds: float
    trial_max_deliver: int

    def verdict(self, queue: Queue, exc: BaseException, attempt: int = 1) -> Verdict:
        """`attempt`: the delivery that raised, counted from 1."""
        if isinstance(exc, NewerSchemaError):
            return Verdict(Settle.NAK, delay=NEWER_SCHEMA_DELAY_S)
        if isinstance(exc, MalformedMessageError):
            return Verdict(Settle.TERM)
        if queue is Queue.JOBS:
            if isinstance(exc, asyncio.CancelledError):
                # The replica is stopping: hand the job to another replica now rather than
                # after the ack wait, and without making it wait for the lease to run out.
                return Verdict(Settle.NAK, release_lease=True)
            if isinstance(exc, JobTakenOverError):
                # Its new holder was delivered this message again and keeps it in progress;
                # an ack or nak here would settle that holder's delivery.
                return Verdict(Settle.LEAVE)
            if isinstance(exc, JobHeldElsewhereError):
                # A duplicate of a job another replica runs: come back once its lease could
                # have run out, in case that replica dies (then this message resumes the job).
                return Verdict(Settle.NAK, delay=self.lease_seconds)
            if isinstance(exc, TRANSIENT):
                return Verdict(Settle.NAK, delay=2)
            if isinstance(exc, Exception):
                return Verdict(Settle.GIVE_UP)
        if queue is Queue.TRIALS:
            if isinstance(exc, TRANSIENT):
                return Verdict(Settle.NAK, delay=1)
            if isinstance(exc, Exception):
                # A bug or a state this code does not expect: retried a few times, then its
                # trials are stored as failed, so the job neither waits forever nor stops.
                if attempt < self.trial_max_deliver:
                    return Verdict(Settle.NAK, delay=2)
                return Verdict(Settle.GIVE_UP, delay=5)
        return Verdict(Settle.RAISE)

    def held_here(self) -> Verdict:
        """A job delivered again while this replica still runs it (its heartbeat was late):
        running it twice here would only do the work twice."""
        return Verdict(Settle.NAK, delay=self.lease_seconds)
