"""The trainer's batched optimizer, without servers: the determinism contract of
`tradepulse.trainer.optimizer` for every optimizer a job can ask for."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from tradepulse.quant import get_strategy
from tradepulse.trainer.errors import JobError
from tradepulse.trainer.optimizer import (
    Asked,
    BatchOptimizer,
    GridOrder,
    RandomDraws,
    SamplerSpec,
    Told,
    batch_seed,
    distributions,
)

SPACE = get_strategy("LIQUIDITY_SWEEP").space
OPTIMIZERS = ("random", "bayesian", "grid", "cmaes")
BATCH = 8


def score(params: dict[str, float | int]) -> float | None:
    """A stand-in objective: deterministic, varied, and failing for some trials."""
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).digest()
    value = int.from_bytes(digest[:4], "little") / 2**32
    return None if value < 0.15 else value * 3 - 1


def run(optimizer: BatchOptimizer, batches: int) -> list[list[Asked]]:
    out = []
    for _ in range(batches):
        asked = optimizer.ask_batch(BATCH)
        optimizer.tell_batch({a.number: score(a.params) for a in asked})
        out.append(asked)
    return out


def history(batches: list[list[Asked]]) -> list[Told]:
    return [
        Told(a.number, a.params, score(a.params), a.system_attrs)
        for batch in batches
        for a in batch
    ]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_same_seed_asks_the_same_trials_and_another_seed_others(name: str) -> None:
    spec = SamplerSpec(name, BATCH)
    first = run(BatchOptimizer(spec, 12345, SPACE), 4)
    again = run(BatchOptimizer(spec, 12345, SPACE), 4)
    other = run(BatchOptimizer(spec, 123, SPACE), 4)
    params = [[a.params for a in batch] for batch in first]
    assert params == [[a.params for a in batch] for batch in again]
    assert params != [[a.params for a in batch] for batch in other]
    assert [a.number for batch in first for a in batch] == list(range(4 * BATCH))
    for batch in first:
        for a in batch:
            assert set(a.params) == {p.name for p in SPACE}
            for p in SPACE:
                assert p.contains(a.params[p.name]), (p.name, a.params[p.name])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_study_rebuilt_from_stored_batches_asks_what_the_uninterrupted_one_would(
    name: str,
) -> None:
    """What a replica taking a job over does: rebuild from the complete batches stored, then
    ask the rest. It must ask exactly the trials the dead holder would have asked."""
    spec = SamplerSpec(name, BATCH)
    whole = run(BatchOptimizer(spec, 42, SPACE), 5)
    resumed = BatchOptimizer(spec, 42, SPACE, history(whole[:3]))
    rest = run(resumed, 2)
    assert [[a.params for a in b] for b in rest] == [[a.params for a in b] for b in whole[3:]]
    assert [a.number for b in rest for a in b] == list(range(3 * BATCH, 5 * BATCH))


def test_samplers_that_do_not_learn_may_have_two_batches_in_flight() -> None:
    for name in ("random", "grid"):
        spec = SamplerSpec(name, BATCH)
        assert not spec.adaptive
        told_each_time = run(BatchOptimizer(spec, 7, SPACE), 2)
        ahead = BatchOptimizer(spec, 7, SPACE)
        first, second = ahead.ask_batch(BATCH), ahead.ask_batch(BATCH)
        assert [a.params for a in first + second] == [
            a.params for b in told_each_time for a in b
        ], name
    bayesian = BatchOptimizer(SamplerSpec("bayesian", BATCH), 7, SPACE)
    bayesian.ask_batch(BATCH)
    with pytest.raises(RuntimeError, match="must be told"):
        bayesian.ask_batch(BATCH)


def test_the_grid_visits_every_point_once_in_a_seeded_order() -> None:
    grid = GridOrder(SPACE, 42)
    expected = math.prod(len(p.grid(5)) for p in SPACE)
    assert grid.size == expected
    seen = {grid.point(k)[0] for k in range(5000)}
    assert len(seen) == 5000, "no point twice"
    # The index decodes to the parameters, the first parameter varying slowest.
    index, params = grid.point(0)
    rest = index
    for p in reversed(list(SPACE)):
        rest, position = divmod(rest, len(p.grid(5)))
        assert params[p.name] == p.grid(5)[position]
    assert rest == 0
    assert [GridOrder(SPACE, 43).point(k)[0] for k in range(20)] != [
        grid.point(k)[0] for k in range(20)
    ]
    with pytest.raises(JobError, match="there is no trial"):
        grid.point(grid.size)


def study_asked(
    space_dists: dict[str, BaseDistribution], seed: int, sizes: list[int]
) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """What optuna's own ask/tell gives: the reference for random search's direct draws."""
    study = optuna.create_study(direction="maximize")
    out: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for batch, size in enumerate(sizes):
        study.sampler = optuna.samplers.RandomSampler(seed=batch_seed(seed, batch))
        trials = [study.ask(space_dists) for _ in range(size)]
        out.extend(
            (t.number, t.params, study._storage.get_trial(t._trial_id).system_attrs) for t in trials
        )
        for t in trials:
            study.tell(t, 0.0)
    return out


@pytest.mark.parametrize("seed", [0, 7, 12345, 2**63 - 1])
def test_random_search_draws_what_optunas_study_asks(seed: int) -> None:
    """Random search skips the study: same numbers, params (values and types) and state."""
    ours = BatchOptimizer(SamplerSpec("random", BATCH), seed, SPACE)
    asked = []
    for _ in range(3):
        batch = ours.ask_batch(BATCH)
        ours.tell_batch({a.number: score(a.params) for a in batch})
        asked += [(a.number, a.params, a.system_attrs) for a in batch]
    reference = study_asked(distributions(SPACE), seed, [BATCH] * 3)
    assert asked == reference
    assert [[type(v) for v in p.values()] for _, p, _ in asked] == [
        [type(v) for v in p.values()] for _, p, _ in reference
    ]


def test_random_draws_skip_single_valued_distributions_as_optuna_does() -> None:
    dists: dict[str, BaseDistribution] = {
        "a": FloatDistribution(0.0, 1.0),
        "fixed": IntDistribution(3, 3),
        "narrow": FloatDistribution(1.0, 1.0),
        "b": IntDistribution(0, 100, step=5),
    }
    draws = RandomDraws(dists)
    mine = []
    for batch in range(2):
        mine += draws.draw(optuna.samplers.RandomSampler(seed=batch_seed(9, batch)), 4)
    assert [p for _, p, _ in study_asked(dists, 9, [4, 4])] == mine
    assert {p["fixed"] for p in mine} == {3}
    assert {p["narrow"] for p in mine} == {1.0}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_batch_asked_in_parts_is_the_batch_asked_whole(name: str) -> None:
    """How a holder hands out an adaptive sampler's first trials while it asks the rest."""
    spec = SamplerSpec(name, BATCH)
    whole = run(BatchOptimizer(spec, 5, SPACE), 3)
    parts = BatchOptimizer(spec, 5, SPACE)
    asked = []
    for _ in range(3):
        parts.open_batch()
        batch = parts.ask_more(1) + parts.ask_more(3) + parts.ask_more(BATCH - 4)
        parts.tell_batch({a.number: score(a.params) for a in batch})
        asked.append(batch)
    assert asked == whole
