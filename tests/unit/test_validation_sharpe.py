"""Spec validation.md section 1 by hand: moments, PSR, the expected maximum Sharpe, DSR."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradepulse.quant import ParameterError
from tradepulse.quant.validation import (
    EULER_GAMMA,
    deflated_sharpe,
    expected_max_sharpe,
    moments,
    probabilistic_sharpe,
    psr_from_moments,
    sharpe_per_bar,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_moments_are_population_moments_and_kurtosis_is_not_excess() -> None:
    # mean 3, deviations -2, -1, 0, 3: m2 = 14/4, m3 = 18/4, m4 = 98/4.
    m = moments([1.0, 2.0, 3.0, 6.0])
    assert m.count == 4
    assert m.mean == 3.0
    assert m.m2 == 3.5
    assert m.skew == pytest.approx(4.5 / 3.5**1.5, rel=1e-15)
    assert m.kurt == pytest.approx(2.0, rel=1e-15)


def test_identical_returns_have_no_skew_or_kurtosis_and_a_sharpe_of_zero() -> None:
    r = [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]  # a rounded mean would leave m2 ~ 1e-35
    m = moments(r)
    assert (m.m2, m.skew, m.kurt) == (0.0, None, None)
    assert sharpe_per_bar(r) == 0.0
    assert probabilistic_sharpe(r) is None


def test_moments_refuse_an_empty_or_non_finite_series() -> None:
    with pytest.raises(ParameterError, match="at least one"):
        moments([])
    with pytest.raises(ParameterError, match="finite"):
        moments([0.1, math.nan])


def test_sharpe_per_bar_is_ls6_before_annualization() -> None:
    r = [1.0, 2.0, 3.0, 6.0]
    assert sharpe_per_bar(r) == pytest.approx(3.0 / math.sqrt(14.0 / 3.0), rel=1e-15)
    assert sharpe_per_bar([0.5]) == 0.0
    assert sharpe_per_bar([]) == 0.0


def test_psr_from_moments_by_hand() -> None:
    # sr 0.1 over 101 returns of a normal law: z = 0.1 * 10 / sqrt(1 + 2/4 * 0.01).
    assert psr_from_moments(0.1, 101, 0.0, 3.0) == pytest.approx(
        phi(1.0 / math.sqrt(1.005)), rel=1e-12
    )
    # Against a benchmark of 0.05, with skew and fat tails.
    z = (0.1 - 0.05) * 10 / math.sqrt(1 - (-1.0) * 0.1 + (6.0 - 1) / 4 * 0.01)
    assert psr_from_moments(0.1, 101, -1.0, 6.0, 0.05) == pytest.approx(phi(z), rel=1e-12)


def test_probabilistic_sharpe_of_a_series_by_hand() -> None:
    r = [1.0, 2.0, 3.0, 6.0]
    sr = 3.0 / math.sqrt(14.0 / 3.0)
    skew = 4.5 / 3.5**1.5
    z = sr * math.sqrt(3) / math.sqrt(1 - skew * sr + (2.0 - 1) / 4 * sr * sr)
    assert probabilistic_sharpe(r) == pytest.approx(phi(z), rel=1e-12)


def test_psr_nulls() -> None:
    assert probabilistic_sharpe([]) is None
    assert probabilistic_sharpe([0.01]) is None  # T < 2
    assert probabilistic_sharpe([0.0, 0.0, 0.0]) is None  # m2 = 0
    assert psr_from_moments(0.1, 1, 0.0, 3.0) is None
    assert psr_from_moments(0.1, 50, None, None) is None
    assert psr_from_moments(1.0, 50, 2.0, 1.0) is None  # radicand 1 - 2 + 0 < 0
    assert psr_from_moments(2.0, 50, 1.0, 2.0) is None  # radicand 1 - 2 + 1 == 0
    assert psr_from_moments(2.0, 50, 1.0, 2.0 + 1e-9) is not None


def test_expected_max_sharpe_nulls_and_zero_variance() -> None:
    assert expected_max_sharpe([]) == (0.0, None)
    assert expected_max_sharpe([0.3]) == (0.0, None)
    assert expected_max_sharpe([0.2, 0.2, 0.2]) == (0.0, 0.0)
    assert expected_max_sharpe([0.0, 0.0]) == (0.0, 0.0)


def test_expected_max_sharpe_by_hand() -> None:
    from scipy.stats import norm  # type: ignore[import-untyped]  # an independent Phi^-1

    # N = 2: Phi^-1(1/2) = 0, so only the gamma term stays; V = 0.02.
    sr0, v = expected_max_sharpe([0.1, 0.3])
    assert v == pytest.approx(0.02, rel=1e-14)
    assert sr0 == pytest.approx(
        math.sqrt(0.02) * EULER_GAMMA * norm.ppf(1 - 1 / (2 * math.e)), rel=1e-12
    )
    s = [0.01, -0.02, 0.03, 0.0, 0.015]
    sr0, v = expected_max_sharpe(s)
    assert v is not None
    assert v == pytest.approx(float(np.var(s, ddof=1)), rel=1e-14)
    z = (1 - EULER_GAMMA) * norm.ppf(1 - 1 / 5) + EULER_GAMMA * norm.ppf(1 - 1 / (5 * math.e))
    assert sr0 == pytest.approx(math.sqrt(v) * z, rel=1e-12)


def test_deflated_sharpe_of_one_trial_is_its_psr() -> None:
    r = np.random.default_rng(3).normal(0.001, 0.01, 500)
    ds = deflated_sharpe(r, [sharpe_per_bar(r)])
    assert ds.n_trials == 1
    assert ds.sharpe_variance is None
    assert ds.expected_max_sharpe_per_bar == 0.0
    assert ds.dsr == ds.psr == probabilistic_sharpe(r)
    assert ds.returns == 500
    m = moments(r)
    assert (ds.skew, ds.kurt) == (m.skew, m.kurt)


def test_deflated_sharpe_takes_the_sharpe_it_is_given() -> None:
    r = np.random.default_rng(4).normal(0.001, 0.01, 300)
    ds = deflated_sharpe(r, [0.1, 0.0, -0.05], sharpe_per_bar_override=0.1)
    m = moments(r)
    sr0, _ = expected_max_sharpe([0.1, 0.0, -0.05])
    assert ds.sharpe_per_bar == 0.1
    assert ds.dsr == psr_from_moments(0.1, 300, m.skew, m.kurt, sr0)


def standardized(n: int, seed: int) -> list[float]:
    z = np.random.default_rng(seed).normal(size=n)
    z = z - z.mean()
    return [float(x) for x in z / z.std(ddof=1)]


@FAST
@given(seed=st.integers(0, 2**32 - 1), v=st.floats(1e-6, 1e-2), n=st.integers(2, 200))
def test_dsr_decreases_in_n_for_a_fixed_selected_series(seed: int, v: float, n: int) -> None:
    r = np.random.default_rng(seed).normal(0.002, 0.01, 400)
    # Trial Sharpes with the same variance V at every N: only N changes the benchmark.
    few = [x * math.sqrt(v) for x in standardized(n, seed)]
    more = [x * math.sqrt(v) for x in standardized(n + 1, seed + 1)]
    a = deflated_sharpe(r, few)
    b = deflated_sharpe(r, more)
    assert a.sharpe_variance == pytest.approx(b.sharpe_variance, rel=1e-9)
    assert b.expected_max_sharpe_per_bar > a.expected_max_sharpe_per_bar
    assert a.dsr is not None
    assert b.dsr is not None
    assert b.dsr <= a.dsr
    if 1e-9 < a.dsr < 1 - 1e-9:
        assert b.dsr < a.dsr
