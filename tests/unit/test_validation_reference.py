"""Cross-checks on the same inputs against established implementations, with their
conventions converted explicitly:

- pypbo's published CSCV and PSR/DSR (re-implemented in tests/reference/pypbo_reference.py):
  same drop, chunks, rank and logit rules as the spec; Sharpe of the concatenated returns
  (the spec pools the block sums: equal to rounding); bias-corrected skew and excess
  kurtosis + 3 (the spec: population moments), converted here before comparing.
- vectorbt 1.2's `deflated_sharpe_ratio`: the metrics function takes per-bar Sharpes,
  `var_sharpe` and non-excess kurtosis; the returns accessor takes annualized Sharpes and
  scipy's moments with `bias=True` (population) by default.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vectorbt.returns.metrics import approx_exp_max_sharpe, deflated_sharpe_ratio

from tests.reference.pypbo_reference import (
    bias_corrected_moments,
    population_from_bias_corrected,
    reference_pbo,
)
from tests.reference.pypbo_reference import dsr as pypbo_dsr
from tests.reference.pypbo_reference import psr as pypbo_psr
from tradepulse.quant.validation import (
    deflated_sharpe,
    expected_max_sharpe,
    moments,
    pbo,
    probabilistic_sharpe,
    sample_sets,
    sharpe_per_bar,
)

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def compare_pbo(m: np.ndarray, blocks: int) -> None:
    ours = pbo(m, blocks)
    ref = reference_pbo(m, blocks)
    assert ours is not None
    # Spec section 2: summation orders may break an exact tie differently on a few sets.
    assert abs(ours.pbo - ref.pbo) <= 0.001
    assert abs(ours.prob_oos_loss - ref.prob_oos_loss) <= 0.001
    q = np.quantile(ref.logits, [0.05, 0.25, 0.5, 0.75, 0.95])
    assert list(ours.logit_quantiles.values()) == pytest.approx(list(q), rel=1e-9, abs=1e-12)
    d = ours.degradation
    assert d.slope == pytest.approx(ref.slope, rel=1e-7, abs=1e-12)
    assert d.intercept == pytest.approx(ref.intercept, rel=1e-7, abs=1e-12)
    assert d.r2 == pytest.approx(ref.r2, rel=1e-7, abs=1e-12)
    # The points are pypbo's winners of the sampled sets (itertools.combinations is the
    # lexicographic order too).
    keep = sample_sets(ours.sets)
    assert d.is_performance == pytest.approx(ref.is_winner[keep].tolist(), rel=1e-9, abs=1e-12)
    assert d.oos_performance == pytest.approx(ref.oos_winner[keep].tolist(), rel=1e-9, abs=1e-12)
    hist = np.clip(np.floor(2 * ref.logits) + 12, 0, 23).astype(int)
    assert list(ours.logit_histogram) == np.bincount(hist, minlength=24).tolist()


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 12),
    blocks=st.sampled_from([2, 4, 6, 8]),
)
def test_pbo_matches_pypbo_on_random_trials(seed: int, n: int, blocks: int) -> None:
    rng = np.random.default_rng(seed)
    t = int(rng.integers(4 * blocks, 300))
    m = rng.normal(0.0, 0.01, (t, n)) + rng.normal(0.0, 0.002, n)
    compare_pbo(m, blocks)


def test_pbo_matches_pypbo_with_tied_trials() -> None:
    rng = np.random.default_rng(8)
    m = rng.normal(0.0, 0.01, (200, 8))
    m[:, 3] = m[:, 1]
    m[:, 6] = m[:, 1]
    m[:, 7] = m[:, 4]
    compare_pbo(m, 8)


def test_pbo_matches_pypbo_at_12_blocks() -> None:
    m = np.random.default_rng(10).standard_t(4, (600, 10)) * 0.01
    compare_pbo(m, 12)


@pytest.mark.slow
def test_pbo_matches_pypbo_at_16_blocks() -> None:
    m = np.random.default_rng(9).standard_t(4, (640, 20)) * 0.01
    compare_pbo(m, 16)


def skewed(seed: int, t: int) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(0.0, 0.6, t) * 0.01 - 0.011


@FAST
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(30, 400))
def test_psr_matches_pypbo_once_its_moments_are_converted(seed: int, t: int) -> None:
    r = skewed(seed, t)
    sr = sharpe_per_bar(r)
    g1, g2 = population_from_bias_corrected(*bias_corrected_moments(r), t)
    m = moments(r)
    assert (g1, g2) == pytest.approx((m.skew, m.kurt), rel=1e-9)
    ours = probabilistic_sharpe(r, 0.01)
    assert ours == pytest.approx(pypbo_psr(sr, t, g1, g2, 0.01), rel=1e-10, abs=1e-15)


def test_pypbo_unconverted_moments_give_a_different_psr() -> None:
    # The conversion matters: pypbo's own moments on a short skewed series move the PSR.
    r = skewed(5, 40)
    skew, kurt = bias_corrected_moments(r)
    ours = probabilistic_sharpe(r, 0.05)
    assert ours is not None
    assert abs(pypbo_psr(sharpe_per_bar(r), 40, skew, kurt, 0.05) - ours) > 1e-4


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 50))
def test_dsr_matches_pypbo_and_vectorbt(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    r = skewed(seed, 300)
    sharpes = [*rng.normal(0.0, 0.05, n - 1).tolist(), sharpe_per_bar(r)]
    ours = deflated_sharpe(r, sharpes)
    assert ours.dsr is not None
    m = moments(r)
    sr0, v = expected_max_sharpe(sharpes)
    assert v is not None
    assert sr0 == ours.expected_max_sharpe_per_bar
    assert sr0 == pytest.approx(approx_exp_max_sharpe(0.0, v, n), rel=1e-12)
    g1, g2 = population_from_bias_corrected(*bias_corrected_moments(r), 300)
    ref = pypbo_dsr(ours.sharpe_per_bar, math.sqrt(v), n, 300, g1, g2)
    assert ours.dsr == pytest.approx(ref, rel=1e-9, abs=1e-14)
    vbt = deflated_sharpe_ratio(
        est_sharpe=np.array([ours.sharpe_per_bar]),
        var_sharpe=v,
        nb_trials=n,
        backtest_horizon=300,
        skew=np.array([m.skew]),
        kurtosis=np.array([m.kurt]),
    )
    assert ours.dsr == pytest.approx(float(vbt[0]), rel=1e-9, abs=1e-14)


def test_dsr_matches_vectorbts_returns_accessor() -> None:
    m = np.random.default_rng(0).normal(0.0002, 0.01, (500, 6))
    df = pd.DataFrame(m, index=pd.date_range("2024-01-01", periods=500, freq="5min"))
    acc = df.vbt.returns(freq="5min", year_freq="365 days")
    assert acc.ann_factor == 105120.0
    sharpes = [sharpe_per_bar(m[:, j]) for j in range(6)]
    # bias=True is scipy's population skew and kurtosis, the spec's convention.
    theirs = acc.deflated_sharpe_ratio(bias=True).to_numpy()
    ours = [deflated_sharpe(m[:, j], sharpes).dsr for j in range(6)]
    assert ours == pytest.approx(theirs.tolist(), rel=1e-8, abs=1e-14)
    # bias=False (bias-corrected moments) is a different figure on the same data.
    corrected = acc.deflated_sharpe_ratio(bias=False).to_numpy()
    assert np.max(np.abs(corrected - theirs)) > 1e-9
