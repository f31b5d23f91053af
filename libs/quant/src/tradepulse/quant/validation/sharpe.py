"""Spec validation.md section 1: probabilistic and deflated Sharpe ratios (Bailey & López de
Prado, "The Deflated Sharpe Ratio", 2014).

Every Sharpe here is per bar (LS section 6's Sharpe before annualization: mean over std with
ddof 1). Moments are population moments and kurtosis is not excess (3 for a normal law).
Other implementations differ: pypbo takes pandas' bias-corrected skew and excess kurtosis
plus 3; vectorbt's accessor takes scipy's with `bias=True` (population, as here) unless told
otherwise. Convert before comparing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from tradepulse.quant.errors import ParameterError

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Moments:
    """Population moments of a return series: `m2 = mean((r - mean)^2)`.

    `skew = m3 / m2^1.5` and `kurt = m4 / m2^2` (not excess) are None when `m2 == 0`.
    """

    count: int
    mean: float
    m2: float
    skew: float | None
    kurt: float | None


def as_returns(returns: npt.ArrayLike, name: str = "returns") -> npt.NDArray[np.float64]:
    """A 1-d float64 array of finite values, or a ParameterError naming `name`."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ParameterError(name, f"must be one series (1-d), got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ParameterError(name, "must be finite (an equity that reached 0 has no Sharpe)")
    return r


def moments(returns: npt.ArrayLike) -> Moments:
    """Population moments of at least one finite return.

    Identical returns have `m2 = 0` exactly (a rounded mean would leave ~1e-35 instead).
    """
    r = as_returns(returns)
    if len(r) == 0:
        raise ParameterError("returns", "moments need at least one return")
    mean = float(r.mean())
    if r.min() == r.max():
        return Moments(count=len(r), mean=float(r[0]), m2=0.0, skew=None, kurt=None)
    d = r - mean
    d2 = d * d
    m2 = float(d2.mean())
    if m2 == 0.0:
        return Moments(count=len(r), mean=mean, m2=0.0, skew=None, kurt=None)
    m3 = float((d2 * d).mean())
    m4 = float((d2 * d2).mean())
    return Moments(count=len(r), mean=mean, m2=m2, skew=m3 / m2**1.5, kurt=m4 / (m2 * m2))


def sharpe_per_bar(returns: npt.ArrayLike) -> float:
    """LS section 6's Sharpe before annualization: `mean(r) / std(r, ddof=1)`.

    0 with fewer than 2 returns or a std of 0 (identical returns count as a std of 0).
    """
    r = as_returns(returns)
    if len(r) < 2 or r.min() == r.max():
        return 0.0
    std = float(r.std(ddof=1))
    return float(r.mean()) / std if std > 0.0 else 0.0


def psr_from_moments(
    sr: float, t: int, skew: float | None, kurt: float | None, sr_benchmark: float = 0.0
) -> float | None:
    """`Phi((sr - sr*) sqrt(t - 1) / sqrt(1 - skew sr + (kurt - 1)/4 sr^2))`, per-bar Sharpes.

    `t` is the number of returns; `skew`/`kurt` population, kurtosis not excess. None when
    `t < 2`, a moment is None (`m2 = 0`), or the radicand is `<= 0`.
    """
    if t < 2 or skew is None or kurt is None:
        return None
    radicand = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not radicand > 0.0:
        return None
    z = (sr - sr_benchmark) * math.sqrt(t - 1) / math.sqrt(radicand)
    return _NORMAL.cdf(z)


def probabilistic_sharpe(returns: npt.ArrayLike, sr_benchmark: float = 0.0) -> float | None:
    """PSR(sr_benchmark) of a return series, the benchmark a per-bar Sharpe (section 1)."""
    r = as_returns(returns)
    if len(r) < 2:
        return None
    m = moments(r)
    return psr_from_moments(sharpe_per_bar(r), len(r), m.skew, m.kurt, sr_benchmark)


def expected_max_sharpe(sharpes_per_bar: Sequence[float]) -> tuple[float, float | None]:
    """(sr0, V): the expected maximum per-bar Sharpe of N skill-less trials, and V.

    `V` is the sample variance (ddof 1) of the trials' per-bar Sharpes, None when N < 2;
    `sr0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))`, 0 when N < 2
    or V = 0. Multiply sr0 by sqrt(ppy) to annualize it.
    """
    s = as_returns(list(sharpes_per_bar), "sharpes_per_bar")
    n = len(s)
    if n < 2:
        return 0.0, None
    v = float(s.var(ddof=1)) if s.min() != s.max() else 0.0
    if v == 0.0:
        return 0.0, 0.0
    z = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n) + EULER_GAMMA * _NORMAL.inv_cdf(
        1.0 - 1.0 / (n * math.e)
    )
    return math.sqrt(v) * z, v


@dataclass(frozen=True)
class DeflatedSharpe:
    """Section 1's figures for one selected trial; Sharpes per bar, `returns` is T."""

    n_trials: int
    sharpe_variance: float | None
    expected_max_sharpe_per_bar: float
    sharpe_per_bar: float
    returns: int
    skew: float | None
    kurt: float | None
    psr: float | None
    dsr: float | None


def deflated_sharpe(
    selected_returns: npt.ArrayLike,
    trial_sharpes_per_bar: Sequence[float],
    *,
    sharpe_per_bar_override: float | None = None,
) -> DeflatedSharpe:
    """DSR = PSR(sr0) and psr = PSR(0) of the selected trial's returns.

    `trial_sharpes_per_bar` holds every evaluated trial's per-bar Sharpe, the selected one
    included (N is its length). The selected Sharpe is computed from `selected_returns`
    unless `sharpe_per_bar_override` gives it (the job report passes the trial's own
    `sharpe_ratio / sqrt(ppy)`, so the report agrees with the trials listed to the bit).
    """
    r = as_returns(selected_returns, "selected_returns")
    sr0, v = expected_max_sharpe(trial_sharpes_per_bar)
    sr = sharpe_per_bar(r) if sharpe_per_bar_override is None else float(sharpe_per_bar_override)
    m = moments(r) if len(r) else None
    skew = m.skew if m else None
    kurt = m.kurt if m else None
    return DeflatedSharpe(
        n_trials=len(trial_sharpes_per_bar),
        sharpe_variance=v,
        expected_max_sharpe_per_bar=sr0,
        sharpe_per_bar=sr,
        returns=len(r),
        skew=skew,
        kurt=kurt,
        psr=psr_from_moments(sr, len(r), skew, kurt, 0.0),
        dsr=psr_from_moments(sr, len(r), skew, kurt, sr0),
    )
