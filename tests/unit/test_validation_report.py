"""The job's `validation` object (spec validation.md sections 0-2) and seed convergence
(section 4)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradepulse.quant import ParameterError, ParamSpec, SearchSpace
from tradepulse.quant.validation import (
    REPORT_KEYS,
    EvaluatedTrial,
    block_sums,
    deflated_sharpe,
    dispersion,
    pbo,
    seed_convergence,
    sharpe_per_bar,
    validation_report,
)

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PPY = 105120.0


def trials_of(m: np.ndarray, blocks: int, first: int = 0) -> list[EvaluatedTrial]:
    out = []
    for j in range(m.shape[1]):
        s1, s2 = block_sums(m[:, j], blocks)
        out.append(EvaluatedTrial(first + j, sharpe_per_bar(m[:, j]), s1.tolist(), s2.tolist()))
    return out


def test_report_assembles_sections_1_and_2() -> None:
    m = np.random.default_rng(11).normal(0.0002, 0.01, (320, 6))
    trials = trials_of(m, 8, first=10)
    best = 10 + int(np.argmax([t.sharpe_per_bar for t in trials]))
    rep = validation_report(trials, best, m[:, best - 10], ppy=PPY, blocks=8)
    assert tuple(rep) == REPORT_KEYS
    ds = deflated_sharpe(m[:, best - 10], [t.sharpe_per_bar for t in trials])
    assert rep["n_trials"] == 6
    assert rep["sharpe_variance"] == ds.sharpe_variance
    assert rep["expected_max_sharpe_per_bar"] == ds.expected_max_sharpe_per_bar
    assert rep["expected_max_sharpe"] == ds.expected_max_sharpe_per_bar * math.sqrt(PPY)
    assert rep["selected"] == {
        "trial": best,
        "sharpe_per_bar": ds.sharpe_per_bar,
        "returns": 320,
        "skew": ds.skew,
        "kurtosis": ds.kurt,
    }
    assert (rep["psr"], rep["dsr"]) == (ds.psr, ds.dsr)
    expected = pbo(m, 8)
    assert expected is not None
    assert rep["pbo"] == expected.to_dict()
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep


def test_no_usable_trial_leaves_sections_1_and_2_null() -> None:
    m = np.random.default_rng(1).normal(size=(64, 3))
    rep = validation_report(trials_of(m, 4), None, None, ppy=PPY, blocks=4)
    assert rep == {key: (3 if key == "n_trials" else None) for key in REPORT_KEYS}


def test_one_trial_has_a_psr_a_dsr_equal_to_it_and_no_pbo() -> None:
    r = np.random.default_rng(2).normal(0.001, 0.01, 200)
    rep = validation_report(trials_of(r[:, None], 16), 0, r, ppy=PPY)
    assert rep["n_trials"] == 1
    assert rep["sharpe_variance"] is None
    assert rep["expected_max_sharpe"] == 0.0
    assert rep["dsr"] == rep["psr"] is not None
    assert rep["pbo"] is None


def test_report_refuses_inconsistent_input() -> None:
    m = np.random.default_rng(3).normal(size=(64, 3))
    trials = trials_of(m, 4)
    with pytest.raises(ParameterError, match="not among"):
        validation_report(trials, 7, m[:, 0], ppy=PPY, blocks=4)
    with pytest.raises(ParameterError, match="once"):
        validation_report([*trials, trials[0]], 0, m[:, 0], ppy=PPY, blocks=4)
    with pytest.raises(ParameterError, match="block sums"):
        validation_report(trials, 0, m[:, 0], ppy=PPY, blocks=8)


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12))
def test_report_does_not_depend_on_the_order_trials_arrive_in(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, 0.01, (160, n))
    m[:, n // 2] = m[:, 0]  # a duplicate trial: ties must still go to the lowest number
    trials = trials_of(m, 16)
    shuffled = list(trials)
    random.Random(seed).shuffle(shuffled)
    a = validation_report(trials, 0, m[:, 0], ppy=PPY)
    b = validation_report(shuffled, 0, m[:, 0], ppy=PPY)
    assert a == b


def test_dispersion_by_hand() -> None:
    # std(ddof 0) of 1, 2, 3 is sqrt(2/3); range 0..10.
    assert dispersion([1.0, 2.0, 3.0], 0.0, 10.0) == pytest.approx(math.sqrt(2 / 3) / 10, 1e-15)
    assert dispersion([5, 5, 5], 0, 10) == 0.0
    assert dispersion([4.0], 0.0, 10.0) is None
    assert dispersion([], 0.0, 10.0) is None
    assert dispersion([2, 2], 2, 2) == 0.0
    with pytest.raises(ParameterError, match="below"):
        dispersion([1.0, 2.0], 3.0, 1.0)


SPACE = SearchSpace(
    (ParamSpec("lookback", "int", 10, 110, 10), ParamSpec("mult", "float", 1.0, 3.0))
)


def test_seeds_that_agree_converge() -> None:
    best = [
        {"lookback": 50, "mult": 2.0},
        {"lookback": 60, "mult": 2.1},
        {"lookback": 50, "mult": 1.9},
    ]
    rep = seed_convergence(best, [1.0, 2.0, 4.0], SPACE)
    lookback = float(np.std([50, 60, 50])) / 100
    mult = float(np.std([2.0, 2.1, 1.9])) / 2.0
    assert rep["dispersion"]["lookback"] == pytest.approx(lookback, rel=1e-12)
    assert rep["dispersion"]["mult"] == pytest.approx(mult, rel=1e-12)
    assert rep["objective"] == {
        "mean": pytest.approx(7 / 3, rel=1e-15),
        "std": pytest.approx(
            math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
        ),
        "min": 1.0,
        "max": 4.0,
    }
    assert rep["max_dispersion"] == 0.10
    assert rep["converged"] is True


def test_seeds_that_scatter_do_not_converge() -> None:
    best = [{"lookback": 10, "mult": 2.0}, {"lookback": 110, "mult": 2.0}]
    rep = seed_convergence(best, [1.0, 1.5], SPACE)
    assert rep["dispersion"] == {"lookback": 0.5, "mult": 0.0}
    assert rep["converged"] is False
    assert seed_convergence(best, [1.0, 1.5], SPACE, max_dispersion=0.5)["converged"] is True


def test_one_seed_has_null_dispersions_and_does_not_converge() -> None:
    rep = seed_convergence([{"lookback": 50, "mult": 2.0}], [3.0], SPACE)
    assert rep["dispersion"] == {"lookback": None, "mult": None}
    assert rep["objective"] == {"mean": 3.0, "std": None, "min": 3.0, "max": 3.0}
    assert rep["converged"] is False


def test_seed_convergence_refuses_bad_input() -> None:
    with pytest.raises(ParameterError, match="max_dispersion"):
        seed_convergence([], [], SPACE, max_dispersion=0.0)
    with pytest.raises(ParameterError, match="objectives"):
        seed_convergence([{"lookback": 50, "mult": 2.0}], [], SPACE)
    with pytest.raises(ParameterError, match="mult"):
        seed_convergence([{"lookback": 50}], [1.0], SPACE)
