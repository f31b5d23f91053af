"""The trainer's batched optimizer, without servers: the determinism contract of
`tradepulse.trainer.optimizer` for every optimizer a job can ask for."""

from __future__ import annotations

import hashlib
import math

import pytest

from tradepulse.quant import get_strategy
from tradepulse.trainer.errors import JobError
from tradepulse.trainer.optimizer import Asked, BatchOptimizer, GridOrder, SamplerSpec, Told

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
