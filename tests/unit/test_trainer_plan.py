"""The trainer's pure decisions, from hand-made cases: resume point, batches, best, progress,
the next action for a delivered job, the retry policy and the cancel registry."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import asyncpg
import nats.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradepulse.trainer import plan
from tradepulse.trainer.cancels import CancelRegistry
from tradepulse.trainer.errors import JobError, JobHeldElsewhereError, JobTakenOverError
from tradepulse.trainer.plan import Action, Batch, JobState
from tradepulse.trainer.policy import (
    MalformedMessageError,
    NewerSchemaError,
    Queue,
    RetryPolicy,
    Settle,
    Verdict,
    describe,
)


@pytest.mark.parametrize(
    ("stored", "n", "size", "expected"),
    [
        (set(), 10, 4, 0),  # nothing stored
        ({0, 1, 2}, 10, 4, 0),  # the first batch is not complete
        ({0, 1, 2, 3}, 10, 4, 4),  # one complete batch
        ({0, 1, 2, 3, 4, 5}, 10, 4, 4),  # mid-batch: trials 4 and 5 are asked again
        ({0, 1, 2, 3, 5, 6, 7, 8, 9}, 10, 4, 4),  # a gap: everything after it is asked again
        ({0, 1, 2, 3, 4, 5, 6, 7, 8}, 10, 4, 8),  # the short last batch lacks trial 9
        (set(range(10)), 10, 4, 10),  # everything stored, the last batch short
        (set(range(12)), 12, 4, 12),
        ({0}, 1, 4, 1),  # one trial, batch larger than the study
        (set(range(20)), 10, 4, 10),  # stored trials beyond n count for nothing
    ],
)
def test_the_resume_point_is_the_end_of_the_leading_complete_batches(
    stored: set[int], n: int, size: int, expected: int
) -> None:
    assert plan.resume_point(stored, n, size) == expected


def test_a_study_from_trial_100_resumes_from_its_own_numbers() -> None:
    assert plan.resume_point({0, 1, 2, 3}, 8, 4, first=100) == 0
    assert plan.resume_point({100, 101, 102, 103, 104}, 8, 4, first=100) == 4


@given(
    n=st.integers(1, 60),
    size=st.integers(1, 16),
    stored=st.sets(st.integers(0, 70)),
)
def test_the_resume_point_ends_a_batch_and_every_trial_before_it_is_stored(
    n: int, size: int, stored: set[int]
) -> None:
    point = plan.resume_point(stored, n, size)
    assert point == n or point % size == 0
    assert all(k in stored for k in range(point))
    if point < n:
        assert not all(k in stored for k in range(point, min(point + size, n)))


def test_batches_cover_the_rest_of_a_study_in_order() -> None:
    assert plan.batches(10, 4) == [Batch(0, 4), Batch(4, 4), Batch(8, 2)]
    assert plan.batches(10, 4, start=4) == [Batch(4, 4), Batch(8, 2)]
    assert plan.batches(10, 4, start=10) == []
    assert Batch(8, 2).numbers == [8, 9]


def test_a_sampler_that_learns_has_one_batch_in_flight_others_two() -> None:
    assert plan.depth_for(adaptive=True) == 1
    assert plan.depth_for(adaptive=False) == 2


def test_the_batch_size_recorded_with_the_job_wins_then_the_request_then_the_default() -> None:
    defaults = {"default": 64, "model_default": 16}
    assert plan.batch_size_for("random", recorded=8, requested=32, **defaults) == 8
    assert plan.batch_size_for("random", recorded=None, requested=32, **defaults) == 32
    assert plan.batch_size_for("random", recorded=None, requested=None, **defaults) == 64
    assert plan.batch_size_for("grid", recorded=None, requested=None, **defaults) == 64
    assert plan.batch_size_for("bayesian", recorded=None, requested=None, **defaults) == 16
    assert plan.batch_size_for("cmaes", recorded=None, requested=None, **defaults) == 16


@dataclass(frozen=True)
class R:
    number: int
    value: float | None


def test_the_best_is_the_highest_value_and_the_lowest_number_among_equals() -> None:
    results = {k: R(k, v) for k, v in enumerate([1.0, None, 3.0, math.nan, 3.0, math.inf, 2.0])}
    best = plan.best_of(results)
    assert best == R(2, 3.0), "NaN and inf are not usable values; ties go to trial 2"
    assert plan.best_of({4: R(4, -1.0), 9: R(9, -0.5)}) == R(9, -0.5)
    assert plan.best_of({0: R(0, None), 1: R(1, math.nan)}) is None
    assert plan.best_of({}) is None


@pytest.mark.parametrize(
    ("done", "total", "expected"),
    [
        (0, 7, 0.0),
        (1, 3, 33.3),
        (2, 3, 66.6),
        (999, 1000, 99.9),
        (9999, 10000, 99.9),
        (7, 7, 100.0),
    ],
)
def test_progress_is_rounded_down_to_a_tenth(done: int, total: int, expected: float) -> None:
    assert plan.progress_of(done, total) == expected


def state(**fields: object) -> JobState:
    values: dict[str, object] = {
        "status": "queued",
        "cancel_requested": False,
        "deliveries": 1,
        "max_deliveries": 10,
        "held_elsewhere": False,
        **fields,
    }
    return JobState(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "action"),
    [
        ({}, Action.RUN),
        ({"status": "running"}, Action.RUN),  # a takeover, or the holder's redelivery
        ({"cancel_requested": True}, Action.CANCEL),
        ({"status": "running", "cancel_requested": True}, Action.CANCEL),
        ({"status": "completed"}, Action.REPUBLISH_TERMINAL),
        ({"status": "cancelled", "cancel_requested": True}, Action.REPUBLISH_TERMINAL),
        ({"status": "failed"}, Action.REPUBLISH_TERMINAL),
        ({"deliveries": 10}, Action.RUN),  # the 10th delivery still runs
        ({"deliveries": 11}, Action.GIVE_UP),
        ({"deliveries": 11, "status": "running"}, Action.GIVE_UP),
        ({"deliveries": 11, "status": "completed"}, Action.GIVE_UP),  # changes nothing
        ({"deliveries": 11, "held_elsewhere": True}, Action.WAIT),
        ({"deliveries": 5, "held_elsewhere": True}, Action.RUN),  # the lease decides then
    ],
)
def test_the_next_action_for_a_delivered_job(fields: dict[str, object], action: Action) -> None:
    assert plan.next_action(state(**fields)) is action


POLICY = RetryPolicy(lease_seconds=15, trial_max_deliver=3)


@pytest.mark.parametrize(
    ("queue", "exc", "attempt", "verdict"),
    [
        (Queue.JOBS, MalformedMessageError("x"), 1, Verdict(Settle.TERM)),
        (Queue.JOBS, asyncio.CancelledError(), 1, Verdict(Settle.NAK, release_lease=True)),
        (Queue.JOBS, JobHeldElsewhereError("job-1"), 1, Verdict(Settle.NAK, delay=15)),
        (Queue.JOBS, JobTakenOverError("job-1"), 1, Verdict(Settle.LEAVE)),
        (Queue.JOBS, ConnectionError("gone"), 1, Verdict(Settle.NAK, delay=2)),
        (Queue.JOBS, nats.errors.TimeoutError(), 1, Verdict(Settle.NAK, delay=2)),
        (Queue.JOBS, TimeoutError(), 1, Verdict(Settle.NAK, delay=2)),
        (Queue.JOBS, asyncpg.exceptions.AdminShutdownError(), 1, Verdict(Settle.NAK, delay=2)),
        (Queue.JOBS, KeyError("bug"), 1, Verdict(Settle.GIVE_UP)),
        (Queue.JOBS, JobError("no data"), 1, Verdict(Settle.GIVE_UP)),
        (Queue.TRIALS, MalformedMessageError("x"), 1, Verdict(Settle.TERM)),
        (Queue.JOBS, NewerSchemaError("v9"), 1, Verdict(Settle.NAK, delay=30)),
        (Queue.TRIALS, NewerSchemaError("v9"), 1, Verdict(Settle.NAK, delay=30)),
        (Queue.TRIALS, ConnectionError("gone"), 9, Verdict(Settle.NAK, delay=1)),
        (Queue.TRIALS, IndexError("bug"), 1, Verdict(Settle.NAK, delay=2)),
        (Queue.TRIALS, IndexError("bug"), 2, Verdict(Settle.NAK, delay=2)),
        (Queue.TRIALS, IndexError("bug"), 3, Verdict(Settle.GIVE_UP, delay=5)),
        (Queue.TRIALS, asyncio.CancelledError(), 1, Verdict(Settle.RAISE)),
    ],
)
def test_the_retry_policy(queue: Queue, exc: BaseException, attempt: int, verdict: Verdict) -> None:
    assert POLICY.verdict(queue, exc, attempt) == verdict


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (TimeoutError(), "TimeoutError"),
        (ConnectionError("connection refused"), "ConnectionError: connection refused"),
        (KeyError("boom"), "KeyError: 'boom'"),
    ],
)
def test_an_error_is_described_by_its_type_when_its_message_is_empty(
    exc: BaseException, text: str
) -> None:
    assert describe(exc) == text


def test_a_job_held_here_already_comes_back_after_a_lease() -> None:
    assert POLICY.held_here() == Verdict(Settle.NAK, delay=15)


async def test_a_cancel_heard_before_the_hold_starts_it_cancelled() -> None:
    cancels = CancelRegistry()
    cancels.cancel("job-1")
    event = cancels.hold("job-1")
    assert event is not None
    assert event.is_set()
    assert cancels.requested("job-1")


async def test_a_cancel_during_the_hold_sets_its_event_and_a_second_hold_is_refused() -> None:
    cancels = CancelRegistry()
    event = cancels.hold("job-1")
    assert event is not None
    assert not event.is_set()
    assert cancels.hold("job-1") is None, "held here already"
    assert not cancels.requested("job-2")
    cancels.cancel("job-1")
    assert event.is_set()
    cancels.release("job-1")
    again = cancels.hold("job-1")
    assert again is not None
    assert again.is_set(), "the cancel is remembered"
