"""The trainer's decisions as pure functions: no I/O, no clock, no asyncio.

Trial numbers run from `first` to `first + n - 1` within a study (0 for a job's only study);
batch k holds numbers [first + k*size, first + (k+1)*size), the last one possibly shorter.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tradepulse.common.contracts.training import TERMINAL_STATUSES

# Samplers that learn from results between batches (see optimizer.SamplerSpec.adaptive).
ADAPTIVE_OPTIMIZERS = frozenset({"bayesian", "cmaes"})


def batch_size_for(
    optimizer: str,
    *,
    recorded: int | None,
    requested: int | None,
    default: int,
    model_default: int,
) -> int:
    """The batch size of a job: the one recorded at its first hold (a resumed job must keep
    it), else the request's, else the service default for its kind of sampler."""
    return recorded or requested or (model_default if optimizer in ADAPTIVE_OPTIMIZERS else default)


def depth_for(adaptive: bool) -> int:
    """Batches asked but not yet told: one for a sampler that learns, two for one that does
    not, so replicas that finish a batch early start on the next instead of waiting."""
    return 1 if adaptive else 2


def resume_point(stored: Collection[int], n: int, batch_size: int, first: int = 0) -> int:
    """How many trials of the study a resumed run tells without running them: those of the
    leading complete batches in `stored` (numbers of stored trials). A stored trial of a
    batch with a gap is run again, because the sampler asks a batch only as a whole."""
    done = 0
    while done < n and all(first + k in stored for k in range(done, min(done + batch_size, n))):
        done = min(done + batch_size, n)
    return done


@dataclass(frozen=True)
class Batch:
    """The sampler's trials [first, first + size): asked together, told together."""

    first: int
    size: int

    @property
    def numbers(self) -> list[int]:
        return list(range(self.first, self.first + self.size))


def batches(n: int, batch_size: int, *, start: int = 0) -> list[Batch]:
    """The batches of a study of `n` trials that remain after the first `start` trials
    (`start` is a multiple of `batch_size`, or n), numbered as the sampler numbers them:
    from 0, whatever the study's first trial number."""
    return [Batch(first=k, size=min(batch_size, n - k)) for k in range(start, n, batch_size)]


def progress_of(done: int, total: int) -> float:
    """Percent done to 0.1, rounded down: 100.0 only once every trial is in."""
    return (1000 * done // total) / 10


class Scored(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def value(self) -> float | None: ...


T = TypeVar("T", bound=Scored)


def best_of(results: Mapping[int, T]) -> T | None:
    """The highest finite objective value; the lowest trial number among equals. None if no
    trial has one."""
    best: T | None = None
    best_value = -math.inf
    for number in sorted(results):
        r = results[number]
        if r.value is None or not math.isfinite(r.value):
            continue
        if best is None or r.value > best_value:
            best, best_value = r, r.value
    return best


class Action(enum.Enum):
    """What a replica does with a job delivered to it."""

    RUN = "run"  # hold it: take the lease, resume from its stored trials
    CANCEL = "cancel"  # cancelled before any replica ran it: end it as cancelled
    REPUBLISH_TERMINAL = "republish"  # over already: publish its end again (idempotent)
    GIVE_UP = "give_up"  # delivered too often with no live holder: end it as failed
    WAIT = "wait"  # delivered too often, but a live replica holds it: come back later


@dataclass(frozen=True)
class JobState:
    """What the next action depends on. `held_elsewhere` is only read once a job was
    delivered more than `max_deliveries` times."""

    status: str
    cancel_requested: bool
    deliveries: int
    max_deliveries: int
    held_elsewhere: bool = False

    @property
    def over_delivered(self) -> bool:
        return self.deliveries > self.max_deliveries


def next_action(state: JobState) -> Action:
    """Deliveries also count the naks of duplicates and of shutdowns, so a job delivered
    too often with a live holder is running, not failing; without one it is given up,
    whatever its status (giving up a job that is over changes nothing but republishes its
    end)."""
    if state.over_delivered:
        return Action.WAIT if state.held_elsewhere else Action.GIVE_UP
    if state.status in TERMINAL_STATUSES:
        return Action.REPUBLISH_TERMINAL
    if state.cancel_requested:
        return Action.CANCEL
    return Action.RUN
