"""Seeded, batched optimization on top of optuna's ask/tell.

Determinism contract: trials are asked in batches of a fixed size; before each batch the
sampler is replaced by one seeded from (job seed, batch index); the whole batch is asked
before any result is told, and results are told in trial order. A batch's parameters then
depend only on the results of earlier batches and the batch seed, so a job resumed from its
stored trials asks exactly what an uninterrupted run would, whichever replica holds it.
Grid search is the exception: it does not use optuna. Trial k takes point `order[k]` of the
grid, `order` being a permutation of the grid's points fixed by the job seed. (optuna's
GridSampler re-reads the whole grid, 3,000,000 points for the liquidity sweep, on every tell:
about half a second per trial, with the event loop blocked.)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tradepulse.quant import SearchSpace
from tradepulse.trainer.errors import JobError

optuna.logging.set_verbosity(optuna.logging.WARNING)

GRID_POINTS_PER_FLOAT = 5
TPE_STARTUP_TRIALS = 10
# The grid's order is a materialised permutation (8 bytes a point).
MAX_GRID_POINTS = 1 << 24


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for spec in space:
        if spec.kind == "int":
            step = int(spec.step) if spec.step is not None else 1
            out[spec.name] = IntDistribution(int(spec.low), int(spec.high), step=step)
        else:
            out[spec.name] = FloatDistribution(spec.low, spec.high, step=spec.step)
    return out


def batch_seed(seed: int, batch: int) -> int:
    digest = hashlib.sha256(f"{seed}:{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class SamplerSpec:
    optimizer: str
    batch_size: int

    @property
    def adaptive(self) -> bool:
        """Whether the sampler learns from results. One that does not (random, grid) can be
        asked for the next batch before the current one is told: its draws depend only on the
        batch seed (random) or the trial number (grid), so trials stay the same."""
        return self.optimizer in ("bayesian", "cmaes")

    @property
    def description(self) -> str:
        return {
            "random": "RandomSampler",
            "bayesian": f"TPESampler(multivariate=True, constant_liar=True, n_startup_trials={TPE_STARTUP_TRIALS})",
            "grid": (
                f"grid in a seeded order (numpy PCG64 permutation;"
                f" {GRID_POINTS_PER_FLOAT} points per float parameter)"
            ),
            "cmaes": f"CmaEsSampler(popsize={self.batch_size})",
        }[self.optimizer]

    @property
    def version(self) -> str:
        if self.optimizer == "grid":
            return f"numpy {np.__version__}"
        return f"optuna {optuna.__version__}"

    def make(self, seed: int, batch: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        if self.optimizer == "random":
            return optuna.samplers.RandomSampler(seed=batch_seed(seed, batch))
        if self.optimizer == "bayesian":
            return optuna.samplers.TPESampler(
                seed=batch_seed(seed, batch),
                multivariate=True,
                constant_liar=True,
                n_startup_trials=TPE_STARTUP_TRIALS,
            )
        if self.optimizer == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=batch_seed(seed, batch),
                popsize=self.batch_size,
                warn_independent_sampling=False,
            )
        raise ValueError(f"no optuna sampler for optimizer {self.optimizer!r}")


class GridOrder:
    """Every point of the search space's grid, in an order fixed by the job seed."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.axes = [(spec.name, spec.grid(GRID_POINTS_PER_FLOAT)) for spec in space]
        self.size = math.prod(len(values) for _, values in self.axes)
        if self.size > MAX_GRID_POINTS:
            raise JobError(
                f"the grid has {self.size:,} points, more than {MAX_GRID_POINTS:,}:"
                " use random or bayesian search"
            )
        digest = hashlib.sha256(f"{seed}:grid".encode()).digest()
        rng = np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "little")))
        self._order = rng.permutation(self.size)

    def point(self, k: int) -> tuple[int, dict[str, float | int]]:
        """Trial k's grid index and parameters (the first parameter varies slowest)."""
        if not 0 <= k < self.size:
            raise JobError(f"the grid has {self.size:,} points; there is no trial {k}")
        index = int(self._order[k])
        rest = index
        values: dict[str, float | int] = {}
        for name, axis in reversed(self.axes):
            rest, position = divmod(rest, len(axis))
            values[name] = axis[position]
        return index, {name: values[name] for name, _ in self.axes}


@dataclass(frozen=True)
class Asked:
    number: int
    params: dict[str, float | int]
    system_attrs: dict[str, Any]


@dataclass(frozen=True)
class Told:
    """A finished trial as stored: value None means the trial failed."""

    number: int
    params: Mapping[str, float | int]
    value: float | None
    system_attrs: Mapping[str, Any]


class BatchOptimizer:
    """One job's study: `ask_batch`, then `tell_batch` with every result of that batch."""

    def __init__(
        self, spec: SamplerSpec, seed: int, space: SearchSpace, history: Sequence[Told] = ()
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.space = space
        self._dists = distributions(space)
        self._pending: list[list[optuna.Trial]] = []
        # Counted here: `study.trials` deep-copies every trial, O(n) per call.
        self.trials_asked = len(history)
        self.grid = GridOrder(space, seed) if spec.optimizer == "grid" else None
        self._grid_pending: list[list[int]] = []
        if self.grid is not None:
            return
        self.study = optuna.create_study(direction="maximize", sampler=spec.make(seed, 0, space))
        for told in history:
            self.study.add_trial(
                create_trial(
                    params=dict(told.params),
                    distributions=self._dists,
                    value=told.value,
                    state=TrialState.COMPLETE if told.value is not None else TrialState.FAIL,
                    system_attrs=dict(told.system_attrs),
                )
            )

    def ask_batch(self, size: int) -> list[Asked]:
        if self._pending and self.spec.adaptive:
            raise RuntimeError("an adaptive sampler's batch must be told before the next is asked")
        if self.grid is not None:
            return self._ask_grid(size)
        batch = self.trials_asked // self.spec.batch_size
        self.study.sampler = self.spec.make(self.seed, batch, self.space)
        trials = [self.study.ask(self._dists) for _ in range(size)]
        self._pending.append(trials)
        self.trials_asked += size
        storage = self.study._storage
        return [
            Asked(
                number=t.number,
                params=dict(t.params),
                system_attrs=dict(storage.get_trial(t._trial_id).system_attrs),
            )
            for t in trials
        ]

    def _ask_grid(self, size: int) -> list[Asked]:
        assert self.grid is not None
        asked = []
        for number in range(self.trials_asked, self.trials_asked + size):
            index, params = self.grid.point(number)
            asked.append(Asked(number=number, params=params, system_attrs={"grid_id": index}))
        self._grid_pending.append([a.number for a in asked])
        self.trials_asked += size
        return asked

    def tell_batch(self, values: Mapping[int, float | None]) -> None:
        """Tell the oldest batch asked, in trial order."""
        if self.grid is not None:
            # A grid's order does not depend on results.
            self._grid_pending.pop(0)
            return
        for trial in self._pending.pop(0):
            value = values[trial.number]
            if value is None or not math.isfinite(value):
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                self.study.tell(trial, value)
