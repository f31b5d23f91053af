"""pypbo's published algorithm, re-implemented as an independent reference for the tests.

Source: esvhd/pypbo, `pypbo/pbo.py` (functions `pbo`, `psr`, `dsr`, `expected_max`) and
`pypbo/perf/metrics.py` (`sharpe_iid`), https://github.com/esvhd/pypbo. Written afresh from
its steps, without plotting, joblib or the stochastic-dominance table; the steps and their
conventions are kept as pypbo has them:

- PBO: a T x N matrix (rows time, columns trials) loses its first `T % S` rows and is cut
  into S chunks of `T // S` rows; for each of `itertools.combinations(chunks, S/2)` the IS
  rows are the chosen chunks concatenated in order and the OOS rows the others; the metric
  is pypbo's `sharpe_iid` with factor 1 (mean / std ddof 1 of the concatenated rows);
  ranks are `scipy.stats.rankdata` (average ranks for ties); the IS winner is
  `argmax(IS ranks)`; `w = OOS rank / (N + 1)`; logits by `scipy.special.logit`;
  `pbo = mean(logit <= 0)`; `prob_oos_loss = mean(OOS metric of the winner < threshold)`;
  the degradation is `scipy.stats.linregress(IS, OOS)` of the winners.
- PSR/DSR: pandas' `Series.skew()` (bias-corrected) and `Series.kurtosis() + 3` (bias-
  corrected excess plus 3), `sharpe_iid` with factor 1, `T = len(returns)`; the DSR's
  benchmark is `std(trial Sharpes, ddof=1) * expected_max(N)`, and pypbo's `expected_max`
  refuses N < 5.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats  # type: ignore[import-untyped]

EULER_GAMMA = float(np.euler_gamma)


@dataclass(frozen=True)
class ReferencePbo:
    pbo: float
    prob_oos_loss: float
    slope: float
    intercept: float
    r2: float
    logits: npt.NDArray[np.float64]
    is_winner: npt.NDArray[np.float64]
    oos_winner: npt.NDArray[np.float64]


def sharpe_iid(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """pypbo's numpy path of `sharpe_iid(bench=0, factor=1)`, column by column."""
    return np.asarray(np.nanmean(m, axis=0) / np.nanstd(m, axis=0, ddof=1))


def reference_pbo(m: npt.NDArray[np.float64], s: int, threshold: float = 0.0) -> ReferencePbo:
    t = m.shape[0]
    m = m[t % s :]
    sub = m.shape[0] // s
    chunks = [m[i * sub : (i + 1) * sub] for i in range(s)]
    logits, is_w, oos_w = [], [], []
    for chosen in itertools.combinations(range(s), s // 2):
        rest = [i for i in range(s) if i not in chosen]
        r_is = sharpe_iid(np.concatenate([chunks[i] for i in chosen]))
        r_oos = sharpe_iid(np.concatenate([chunks[i] for i in rest]))
        rank_is = stats.rankdata(r_is)
        rank_oos = stats.rankdata(r_oos)
        best = int(np.argmax(rank_is))
        w = float(rank_oos[best]) / (m.shape[1] + 1)
        logits.append(float(special.logit(w)))
        is_w.append(float(r_is[best]))
        oos_w.append(float(r_oos[best]))
    lam = np.array(logits)
    x = np.array(is_w)
    y = np.array(oos_w)
    fit = stats.linregress(x=x, y=y)
    return ReferencePbo(
        pbo=float(np.mean(lam <= 0)),
        prob_oos_loss=float(np.mean(y < threshold)),
        slope=float(fit.slope),
        intercept=float(fit.intercept),
        r2=float(fit.rvalue**2),
        logits=lam,
        is_winner=x,
        oos_winner=y,
    )


def expected_max(n: int) -> float:
    if n < 5:
        raise AssertionError("Condition N >> 1 not satisfied.")
    return float(
        (1 - EULER_GAMMA) * special.ndtri(1 - 1.0 / n)
        + EULER_GAMMA * special.ndtri(1 - math.exp(-1) / n)
    )


def psr(sharpe: float, t: int, skew: float, kurtosis: float, target_sharpe: float = 0.0) -> float:
    value = (
        (sharpe - target_sharpe)
        * math.sqrt(t - 1)
        / math.sqrt(1.0 - skew * sharpe + sharpe**2 * (kurtosis - 1) / 4.0)
    )
    return float(stats.norm.cdf(value))


def bias_corrected_moments(r: npt.NDArray[np.float64]) -> tuple[float, float]:
    """pandas' `skew()` and `kurtosis() + 3`: the adjusted Fisher-Pearson estimators."""
    skew = float(stats.skew(r, bias=False))
    kurt = float(stats.kurtosis(r, bias=False, fisher=True)) + 3.0
    return skew, kurt


def dsr(
    test_sharpe: float, sharpe_std: float, n: int, t: int, skew: float, kurtosis: float
) -> float:
    return psr(test_sharpe, t, skew, kurtosis, sharpe_std * expected_max(n))


def population_from_bias_corrected(skew: float, kurt: float, t: int) -> tuple[float, float]:
    """Invert the adjusted estimators: G1 = g1 sqrt(t(t-1))/(t-2) and
    G2 = ((t+1) g2 + 6)(t-1)/((t-2)(t-3)) with g2, G2 excess; kurtosis returned not excess."""
    g1 = skew * (t - 2) / math.sqrt(t * (t - 1))
    big_g2 = kurt - 3.0
    g2 = (big_g2 * (t - 2) * (t - 3) / (t - 1) - 6.0) / (t + 1)
    return g1, g2 + 3.0
