"""How a pulled message is settled when handling it raised: the trainer's one retry policy.

Every loop (intake, jobs, trials) asks `RetryPolicy.verdict` and does what it says; nothing
else decides between ack, nak and term.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

import nats.errors

from tradepulse.common.db.pool import TRANSIENT as DATABASE_TRANSIENT
from tradepulse.common.errors import ServiceError
from tradepulse.trainer.errors import JobHeldElsewhereError

# Failures that pass: a lost connection, NATS or PostgreSQL away for a moment.
TRANSIENT: tuple[type[BaseException], ...] = (
    ConnectionError,
    nats.errors.Error,
    *DATABASE_TRANSIENT,
)


class MalformedMessageError(ServiceError):
    """A message that does not decode as its contract: no delivery can ever succeed."""


class Queue(enum.Enum):
    INTAKE = "intake"  # every submitted job, recorded as queued
    JOBS = "jobs"  # a job to hold
    TRIALS = "trials"  # a trial work item to evaluate


class Settle(enum.Enum):
    NAK = "nak"  # deliver again after `delay`
    TERM = "term"  # never deliver again
    FAIL = "fail"  # record the failure (job failed / trials failed), then ack
    RAISE = "raise"  # not this policy's to handle: let it propagate


@dataclass(frozen=True)
class Verdict:
    settle: Settle
    # NAK: seconds before the redelivery (None: at once). FAIL: the nak's delay if recording
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
        if isinstance(exc, MalformedMessageError):
            return Verdict(Settle.TERM)
        if queue is Queue.JOBS:
            if isinstance(exc, asyncio.CancelledError):
                # The replica is stopping: hand the job to another replica now rather than
                # after the ack wait, and without making it wait for the lease to run out.
                return Verdict(Settle.NAK, release_lease=True)
            if isinstance(exc, JobHeldElsewhereError):
                # A duplicate of a job another replica runs: come back once its lease could
                # have run out, in case that replica dies (then this message resumes the job).
                return Verdict(Settle.NAK, delay=self.lease_seconds)
            if isinstance(exc, TRANSIENT):
                return Verdict(Settle.NAK, delay=2)
            if isinstance(exc, Exception):
                return Verdict(Settle.FAIL)
        if queue is Queue.TRIALS:
            if isinstance(exc, TRANSIENT):
                return Verdict(Settle.NAK, delay=1)
            if isinstance(exc, Exception):
                # A bug or a state this code does not expect: retried a few times, then its
                # trials are stored as failed, so the job neither waits forever nor stops.
                if attempt < self.trial_max_deliver:
                    return Verdict(Settle.NAK, delay=2)
                return Verdict(Settle.FAIL, delay=5)
        if queue is Queue.INTAKE and isinstance(exc, TRANSIENT):
            return Verdict(Settle.NAK, delay=1)
        return Verdict(Settle.RAISE)

    def held_here(self) -> Verdict:
        """A job delivered again while this replica still runs it (its heartbeat was late):
        running it twice here would only do the work twice."""
        return Verdict(Settle.NAK, delay=self.lease_seconds)
