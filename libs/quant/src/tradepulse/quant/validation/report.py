"""The `validation` object a job carries: sections 1 and 2 of spec validation.md over one
optimization's evaluated trials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tradepulse.quant.errors import ParameterError
from tradepulse.quant.validation.blocks import block_layout, check_blocks
from tradepulse.quant.validation.pbo import pbo_from_block_sums
from tradepulse.quant.validation.sharpe import deflated_sharpe

REPORT_KEYS = (
    "n_trials",
    "sharpe_variance",
    "expected_max_sharpe",
    "expected_max_sharpe_per_bar",
    "selected",
    "psr",
    "dsr",
    "pbo",
)


@dataclass(frozen=True)
class EvaluatedTrial:
    """What one evaluated trial (spec section 0) carries for the report.

    `sharpe_per_bar` is its `sharpe_ratio / sqrt(ppy)`; `s1`, `s2` are its S block sums
    (`result_block_sums`).
    """

    number: int
    sharpe_per_bar: float
    s1: Sequence[float]
    s2: Sequence[float]


def validation_report(
    trials: Sequence[EvaluatedTrial],
    selected_trial: int | None,
    selected_returns: npt.ArrayLike | None,
    *,
    ppy: float,
    blocks: int = 16,
) -> dict[str, Any]:
    """The report, JSON-ready, with keys REPORT_KEYS; independent of the order of `trials`.

    `trials` are the optimization's evaluated trials (every one has T returns); the selected
    trial is one of them and `selected_returns` its T returns (`result_returns`). Its Sharpe
    is the one it carries, so the report agrees with the trials listed. With no usable trial
    (`selected_trial` None) sections 1-2 are null: every key but `n_trials` is None.
    """
    blocks = check_blocks(blocks)
    if not (math.isfinite(ppy) and ppy > 0):
        raise ParameterError("ppy", f"must be a positive number, got {ppy!r}")
    ordered = sorted(trials, key=lambda t: t.number)
    numbers = [t.number for t in ordered]
    if len(set(numbers)) != len(numbers):
        raise ParameterError("trials", "each trial number may appear once")
    report: dict[str, Any] = dict.fromkeys(REPORT_KEYS)
    report["n_trials"] = len(ordered)
    if selected_trial is None:
        return report
    if selected_trial not in numbers or selected_returns is None:
        raise ParameterError(
            "selected_trial", f"trial {selected_trial} is not among the evaluated trials given"
        )
    selected = ordered[numbers.index(selected_trial)]
    sharpes = [float(t.sharpe_per_bar) for t in ordered]
    ds = deflated_sharpe(selected_returns, sharpes, sharpe_per_bar_override=selected.sharpe_per_bar)
    _, block_len = block_layout(ds.returns, blocks)
    for t in ordered:
        if len(t.s1) != blocks or len(t.s2) != blocks:
            raise ParameterError(
                "trials",
                f"trial {t.number} carries {len(t.s1)}/{len(t.s2)} block sums, not {blocks}",
            )
    s1 = np.array([t.s1 for t in ordered], dtype=np.float64)
    s2 = np.array([t.s2 for t in ordered], dtype=np.float64)
    pbo_report = pbo_from_block_sums(s1, s2, block_len)
    report.update(
        sharpe_variance=ds.sharpe_variance,
        expected_max_sharpe=ds.expected_max_sharpe_per_bar * math.sqrt(ppy),
        expected_max_sharpe_per_bar=ds.expected_max_sharpe_per_bar,
        selected={
            "trial": selected_trial,
            "sharpe_per_bar": ds.sharpe_per_bar,
            "returns": ds.returns,
            "skew": ds.skew,
            "kurtosis": ds.kurt,
        },
        psr=ds.psr,
        dsr=ds.dsr,
        pbo=pbo_report.to_dict() if pbo_report is not None else None,
    )
    return report
