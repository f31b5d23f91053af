"""Overfitting statistics of spec validation.md: PSR, DSR, PBO by CSCV, seed convergence.

Pure numpy/numba. Sharpes are per bar unless a name says annualized; returns are LS section
6's `E[k]/E[k-1] - 1`; a returns matrix is T x N (rows bars, columns trials).
"""

from tradepulse.quant.validation.blocks import (
    block_layout,
    block_sums,
    check_blocks,
    result_block_sums,
    result_returns,
)
from tradepulse.quant.validation.ensemble import (
    DEFAULT_MAX_DISPERSION,
    dispersion,
    seed_convergence,
)
from tradepulse.quant.validation.pbo import (
    MAX_DEGRADATION_POINTS,
    Degradation,
    PboReport,
    pbo,
    pbo_from_block_sums,
    sample_sets,
)
from tradepulse.quant.validation.report import REPORT_KEYS, EvaluatedTrial, validation_report
from tradepulse.quant.validation.sharpe import (
    EULER_GAMMA,
    DeflatedSharpe,
    Moments,
    deflated_sharpe,
    expected_max_sharpe,
    moments,
    probabilistic_sharpe,
    psr_from_moments,
    sharpe_per_bar,
)

__all__ = [
    "DEFAULT_MAX_DISPERSION",
    "EULER_GAMMA",
    "MAX_DEGRADATION_POINTS",
    "REPORT_KEYS",
    "DeflatedSharpe",
    "Degradation",
    "EvaluatedTrial",
    "Moments",
    "PboReport",
    "block_layout",
    "block_sums",
    "check_blocks",
    "deflated_sharpe",
    "dispersion",
    "expected_max_sharpe",
    "moments",
    "pbo",
    "pbo_from_block_sums",
    "probabilistic_sharpe",
    "psr_from_moments",
    "result_block_sums",
    "result_returns",
    "sample_sets",
    "seed_convergence",
    "sharpe_per_bar",
    "validation_report",
]
