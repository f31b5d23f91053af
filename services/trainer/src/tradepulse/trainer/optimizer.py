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

Random search draws from optuna's RandomSampler's generator what `Study.ask` would have it
draw (`RandomDraws`), a batch at once, without a study: the study's bookkeeping (a trial in
storage, deep copies, a transform built per parameter, a tell) cost about 0.3 ms per trial, a
third of a backtest, for draws that depend on nothing the study holds. `tests/unit/test_trainer_optimizer.py` checks the draws against `Study.ask`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna._transform import _SearchSpaceTransform
from optuna.distributions import (
    BaseDistribution,
    FloatDistribution,
    IntDistribution,
    _get_single_value,
)
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


class RandomDraws:
    """What `Study.ask(distributions)` draws with a RandomSampler, without a study.

    `Trial._suggest` takes a single-valued distribution's value without drawing, and asks the
    sampler for each other one in order; RandomSampler's `sample_independent` reads neither
    the study nor the trial: it draws one uniform double from its generator (a numpy
    RandomState) between the bounds of a `_SearchSpaceTransform` of that one parameter and
    untransforms it. Here the doubles of a whole batch come from one call (RandomState draws
    them in the same sequence, row after row) and are untransformed by one transform of every
    drawn parameter, whose columns are the one-parameter transforms' bounds. Those are
    optuna's internals, so a test checks the result against `Study.ask` for the locked
    version.
    """

    def __init__(self, dists: Mapping[str, BaseDistribution]) -> None:
        self._names = list(dists)
        self._single: dict[str, float | int] = {}
        for name, d in dists.items():
            if d.single():
                value = _get_single_value(d)
                assert isinstance(value, (int, float)), (name, value)
                self._single[name] = value
        drawn = {name: d for name, d in dists.items() if name not in self._single}
        self._transform = _SearchSpaceTransform(drawn) if drawn else None

    def draw(self, sampler: optuna.samplers.RandomSampler, n: int) -> list[dict[str, float | int]]:
        drawn: list[dict[str, Any]] = [{} for _ in range(n)]
        if self._transform is not None:
            bounds = self._transform.bounds
            rows = sampler._rng.rng.uniform(bounds[:, 0], bounds[:, 1], size=(n, len(bounds)))
            drawn = [self._transform.untransform(row) for row in rows]
        return [
            {name: self._single[name] if name in self._single else d[name] for name in self._names}
            for d in drawn
        ]


class BatchOptimizer:
    """One job's study: `ask_batch` (or `open_batch`, then `ask_more` until the batch is
    asked, to hand out its first trials while the sampler thinks about the rest), then
    `tell_batch` with every result of that batch. Asking a batch in parts asks exactly what
    asking it whole would: the sampler is seeded once, when the batch opens."""

    def __init__(
        self, spec: SamplerSpec, seed: int, space: SearchSpace, history: Sequence[Told] = ()
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.space = space
        self._dists = distributions(space)
        # Per batch asked and not told: optuna's trials (none for grid and random search).
        self._pending: list[list[optuna.Trial]] = []
        # Counted here: `study.trials` deep-copies every trial, O(n) per call.
        self.trials_asked = len(history)
        self.grid = GridOrder(space, seed) if spec.optimizer == "grid" else None
        self.random = RandomDraws(self._dists) if spec.optimizer == "random" else None
        if self.grid is not None:
            return
        self.study = optuna.create_study(direction="maximize", sampler=spec.make(seed, 0, space))
        if self.random is not None:
            # Its draws depend on the batch seed only: no history to replay.
            return
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
        self.open_batch()
        return self.ask_more(size)

    def open_batch(self) -> None:
        """Start the next batch: its sampler, seeded from (job seed, batch index)."""
        if self._pending and self.spec.adaptive:
            raise RuntimeError("an adaptive sampler's batch must be told before the next is asked")
        if self.grid is None:
            batch = self.trials_asked // self.spec.batch_size
            self.study.sampler = self.spec.make(self.seed, batch, self.space)
        self._pending.append([])

    def ask_more(self, size: int) -> list[Asked]:
        """The next `size` trials of the open batch."""
        first = self.trials_asked
        self.trials_asked += size
        if self.grid is not None:
            points = [self.grid.point(k) for k in range(first, first + size)]
            return [
                Asked(number=first + k, params=params, system_attrs={"grid_id": index})
                for k, (index, params) in enumerate(points)
            ]
        if self.random is not None:
            sampler = self.study.sampler
            assert isinstance(sampler, optuna.samplers.RandomSampler)
            return [
                Asked(number=first + k, params=params, system_attrs={})
                for k, params in enumerate(self.random.draw(sampler, size))
            ]
        trials = [self.study.ask(self._dists) for _ in range(size)]
        self._pending[-1].extend(trials)
        storage = self.study._storage
        return [
            Asked(
                number=t.number,
                params=dict(t.params),
                system_attrs=dict(storage.get_trial(t._trial_id).system_attrs),
            )
            for t in trials
        ]

    def tell_batch(self, values: Mapping[int, float | None]) -> None:
        """Tell the oldest batch asked, in trial order (grid and random search learn nothing
        from results: their batch is only closed)."""
        for trial in self._pending.pop(0):
            value = values[trial.number]
            if value is None or not math.isfinite(value):
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                self.study.tell(trial, value)
