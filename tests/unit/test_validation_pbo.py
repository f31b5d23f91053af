"""Spec validation.md section 2 by hand and as properties: CSCV, ranks, logits, report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradepulse.quant import ParameterError
from tradepulse.quant.validation import PboReport, block_sums, pbo, pbo_from_block_sums
from tradepulse.quant.validation.pbo import MAX_DEGRADATION_POINTS, logit_histogram, sample_sets

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SQRT2 = math.sqrt(2.0)


def matrix(*trials: list[float]) -> np.ndarray:
    """Trials given as their return series become the columns of a T x N matrix."""
    return np.array(trials, dtype=np.float64).T


def report(m: np.ndarray, blocks: int) -> PboReport:
    r = pbo(m, blocks)
    assert r is not None
    return r


def test_zero_variance_performs_zero_and_lambda_zero_counts_as_overfit() -> None:
    # S = 2, B = 2, c = 2: performance (s1/2) / sqrt(s2 - s1^2/2).
    m = matrix(
        [1, 3, 0, 2],  # block 0: 2/sqrt(2); block 1: 1/sqrt(2)
        [0, 2, 1, 3],  # the mirror
        [2, 2, -1, 1],  # block 0 has var 0: performance 0; block 1 has mean 0
    )
    r = report(m, 2)
    # J = {0}: trial 0 wins IS; OOS [1/sqrt2, sqrt2, 0] puts it second of 3: w = 2/4.
    # J = {1}: trial 1 wins IS; OOS it is second again. Both logits are exactly 0.
    assert r.sets == 2
    assert r.pbo == 1.0
    assert r.prob_oos_loss == 0.0
    assert r.logit_quantiles == {"5": 0.0, "25": 0.0, "50": 0.0, "75": 0.0, "95": 0.0}
    assert r.logit_histogram[12] == 2
    assert sum(r.logit_histogram) == 2
    # Every IS winner performs sqrt(2): no line through equal x.
    assert (r.degradation.slope, r.degradation.intercept, r.degradation.r2) == (None, None, None)


def test_is_ties_go_to_the_lowest_trial_and_oos_ties_share_the_average_rank() -> None:
    m = matrix(
        [1, 3, -1, 1],  # block 0: sqrt2; block 1: mean 0 -> 0
        [1, 3, 0, 2],  # block 0: sqrt2 (ties trial 0); block 1: 1/sqrt2
        [0, 0, 1, 3],  # block 0: var 0 -> 0; block 1: sqrt2
        [-1, 1, 5, 5],  # block 0: 0; block 1: var 0 -> 0
    )
    r = report(m, 2)
    # J = {0}: trials 0 and 1 tie IS -> trial 0; OOS [0, 1/sqrt2, sqrt2, 0]: it ties with
    # trial 3 for ranks 1-2, average 1.5: w = 1.5/5. (Trial 1 would have had w = 3/5.)
    # J = {1}: trial 2 wins IS; OOS [sqrt2, sqrt2, 0, 0]: ties with trial 3, w = 1.5/5.
    lam = math.log(0.3 / 0.7)
    assert r.pbo == 1.0
    assert r.prob_oos_loss == 0.0
    for q in r.logit_quantiles.values():
        assert q == pytest.approx(lam, rel=1e-12)
    assert r.logit_histogram[math.floor(2 * lam) + 12] == 2
    # Both IS winners perform sqrt2: no line.
    assert (r.degradation.slope, r.degradation.intercept, r.degradation.r2) == (None, None, None)


def test_degradation_line_by_hand() -> None:
    m = matrix(
        [1, 3, -1, 1],  # block 0: sqrt2; block 1: 0
        [1, 3, 0, 2],  # block 0: sqrt2; block 1: 1/sqrt2
        [0, 0, 3, 5],  # block 0: 0; block 1: 4/sqrt2 = 2 sqrt2
    )
    r = report(m, 2)
    # J = {0}: trial 0 (tie to the lowest), OOS 0. J = {1}: trial 2, IS 2 sqrt2, OOS 0.
    # Points (sqrt2, 0) and (2 sqrt2, 0): every OOS equal, so r2 is null; slope 0.
    assert r.degradation.slope == pytest.approx(0.0, abs=1e-15)
    assert r.degradation.intercept == pytest.approx(0.0, abs=1e-15)
    assert r.degradation.r2 is None
    m3 = matrix(
        [1, 3, -3, -1],  # block 0: sqrt2; block 1: -sqrt2
        [0, 2, 3, 5],  # block 0: 1/sqrt2; block 1: 2 sqrt2
    )
    r3 = report(m3, 2)
    # J = {0}: trial 0 at (sqrt2, -sqrt2), OOS rank 1 of 2: w = 1/3.
    # J = {1}: trial 1 at (2 sqrt2, 1/sqrt2), OOS rank 1 of 2 again: w = 1/3.
    assert r3.degradation.slope == pytest.approx(1.5, rel=1e-12)
    assert r3.degradation.intercept == pytest.approx(-2.5 * SQRT2, rel=1e-12)
    assert r3.degradation.r2 == pytest.approx(1.0, rel=1e-12)
    assert r3.pbo == 1.0
    assert r3.prob_oos_loss == 0.5
    assert r3.logit_quantiles["50"] == pytest.approx(math.log(0.5), rel=1e-12)


def test_the_degradation_points_are_the_sets_winners_by_hand() -> None:
    m3 = matrix(
        [1, 3, -3, -1],  # block 0: sqrt2; block 1: -sqrt2
        [0, 2, 3, 5],  # block 0: 1/sqrt2; block 1: 2 sqrt2
    )
    d = report(m3, 2).degradation
    # J = {0}: trial 0 at (sqrt2, -sqrt2); J = {1}: trial 1 at (2 sqrt2, 1/sqrt2).
    assert d.is_performance == pytest.approx((SQRT2, 2 * SQRT2), rel=1e-12)
    assert d.oos_performance == pytest.approx((-SQRT2, 1 / SQRT2), rel=1e-12)
    # A line through equal IS performances is null, but the points are still there.
    flat = report(matrix([1, 3, 0, 2], [0, 2, 1, 3], [2, 2, -1, 1]), 2).degradation
    assert flat.slope is None
    assert flat.is_performance == pytest.approx((SQRT2, SQRT2), rel=1e-12)


def test_every_set_is_kept_up_to_the_limit_and_an_even_sample_beyond() -> None:
    assert sample_sets(252).tolist() == list(range(252))  # S = 10: every set
    assert sample_sets(256).tolist() == list(range(256))
    picked = sample_sets(12_870)  # S = 16
    assert len(picked) == MAX_DEGRADATION_POINTS == 256
    assert picked[0] == 0
    assert np.all(np.diff(picked) > 0)
    assert picked.tolist() == [j * 12_870 // 256 for j in range(256)]
    assert sample_sets(10, limit=4).tolist() == [0, 2, 5, 7]
    rng = np.random.default_rng(3)
    wide = report(rng.normal(0.0, 0.01, (600, 6)), 12)  # 924 sets
    assert wide.sets == 924
    assert len(wide.degradation.is_performance) == len(wide.degradation.oos_performance) == 256
    small = report(rng.normal(0.0, 0.01, (600, 6)), 8)  # 70 sets: all of them
    assert len(small.degradation.is_performance) == 70


def test_the_first_t_mod_s_returns_are_dropped() -> None:
    base = matrix([1, 3, -3, -1], [0, 2, 3, 5])
    assert pbo(np.vstack([[1e6, -1e6], [5.0, -5.0], base]), 4) is None  # T = 6, S = 4: B = 1
    padded = np.vstack([[1e6, -1e6], base])  # T = 5, S = 2: 1 dropped, B = 2
    assert report(padded, 2) == report(base, 2)
    s1, s2 = block_sums([100.0, 1, 2, 3, 4], 2)
    assert s1.tolist() == [3.0, 7.0]
    assert s2.tolist() == [5.0, 25.0]
    s1, s2 = block_sums(np.arange(39.0), 4)  # 3 dropped, B = 9
    assert s1.tolist() == [sum(range(3 + 9 * b, 12 + 9 * b)) for b in range(4)]


def test_nulls_with_one_trial_or_blocks_of_one_return() -> None:
    assert pbo(np.ones((64, 1)), 16) is None  # N < 2
    assert pbo(np.random.default_rng(0).normal(size=(31, 4)), 16) is None  # B = 1
    assert pbo(np.random.default_rng(0).normal(size=(32, 4)), 16) is not None  # B = 2
    assert pbo_from_block_sums(np.ones((3, 4)), np.ones((3, 4)), 1) is None
    assert pbo_from_block_sums(np.ones((1, 4)), np.ones((1, 4)), 10) is None


def test_blocks_must_be_even_in_2_to_16() -> None:
    m = np.zeros((100, 3))
    for bad in (0, 1, 3, 18, 2.0, True):
        with pytest.raises(ParameterError, match=r"even integer in 2\.\.16"):
            pbo(m, bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="N x S alike"):
        pbo_from_block_sums(np.ones((3, 4)), np.ones((3, 6)), 10)


def test_histogram_bins_are_half_open_and_the_last_is_closed() -> None:
    values = np.array([-7.0, -6.0, -5.5, np.nextafter(-5.5, -6.0), -1e-300, 0.0, 5.5, 6.0, 9.0])
    h = logit_histogram(values)
    assert len(h) == 24
    assert h[0] == 3  # -7 (below), -6, and just under -5.5
    assert h[1] == 1  # -5.5 opens bin 1
    assert h[11] == 1  # -1e-300 is in [-0.5, 0)
    assert h[12] == 1  # 0 opens bin 12
    assert h[23] == 3  # 5.5, 6 (closed end) and 9 (above)
    assert sum(h) == len(values)


def test_to_dict_has_exactly_the_report_keys() -> None:
    r = report(np.random.default_rng(1).normal(size=(200, 5)), 4)
    d = r.to_dict()
    assert set(d) == {
        "blocks",
        "sets",
        "pbo",
        "prob_oos_loss",
        "degradation",
        "logit_quantiles",
        "logit_histogram",
    }
    assert set(d["degradation"]) == {"slope", "intercept", "r2", "points"}
    assert set(d["degradation"]["points"]) == {"is_performance", "oos_performance"}
    assert list(d["logit_quantiles"]) == ["5", "25", "50", "75", "95"]
    assert d["sets"] == 6
    assert len(d["logit_histogram"]) == 24
    assert sum(d["logit_histogram"]) == 6


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 12), blocks=st.sampled_from([2, 4, 8]))
def test_identical_strategies_rank_at_the_median(seed: int, n: int, blocks: int) -> None:
    col = np.random.default_rng(seed).normal(0.0, 0.01, 100)
    r = report(np.repeat(col[:, None], n, axis=1), blocks)
    # Every set: all tie IS (trial 0 wins) and OOS (average rank (N+1)/2): lambda = 0.
    assert r.pbo == 1.0
    assert r.logit_histogram[12] == r.sets


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 20))
def test_a_strategy_that_dominates_every_block_is_not_overfit(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, 0.01, (320, n))
    m[:, 0] = 0.01 + rng.normal(0.0, 0.001, 320)  # Sharpe ~10 per bar in every block
    r = report(m, 16)
    assert r.pbo == 0.0
    assert r.prob_oos_loss == 0.0


def test_pure_noise_is_overfit_half_the_time() -> None:
    # With iid trials the IS winner's OOS rank is uniform on 1..N; for even N exactly half
    # the ranks give lambda <= 0. Averaged over many seeded matrices.
    values = [report(np.random.default_rng(s).normal(size=(160, 10)), 8).pbo for s in range(60)]
    assert abs(float(np.mean(values)) - 0.5) < 0.05


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 15), blocks=st.sampled_from([2, 6, 16]))
def test_matrix_and_block_sums_give_the_same_report(seed: int, n: int, blocks: int) -> None:
    rng = np.random.default_rng(seed)
    t = int(rng.integers(2 * blocks, 400))
    m = rng.normal(0.0, 0.01, (t, n))
    sums = [block_sums(m[:, j], blocks) for j in range(n)]
    s1 = np.array([s[0] for s in sums])
    s2 = np.array([s[1] for s in sums])
    assert pbo(m, blocks) == pbo_from_block_sums(s1, s2, t // blocks)


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 15))
def test_column_order_does_not_matter_without_ties(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, 0.01, (200, n))
    perm = rng.permutation(n)
    assert pbo(m[:, perm], 8) == pbo(m, 8)
