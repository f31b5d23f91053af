"""Spec validation.md section 4 (and section 3's per-parameter dispersion): do seeds agree?"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tradepulse.quant.errors import ParameterError
from tradepulse.quant.strategies.space import SearchSpace

DEFAULT_MAX_DISPERSION = 0.10


def dispersion(values: Sequence[float], low: float, high: float) -> float | None:
    """`std(values, ddof=0) / (high - low)`: spread of best values as a fraction of the range.

    None with fewer than 2 values. A range with `high == low` admits one value only, which
    cannot scatter: its dispersion is 0.
    """
    if not high >= low:
        raise ParameterError("range", f"high {high!r} is below low {low!r}")
    if len(values) < 2:
        return None
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).all():
        raise ParameterError("values", "must be finite")
    if high == low:
        return 0.0
    std = 0.0 if v.min() == v.max() else float(v.std(ddof=0))
    return std / (high - low)


def seed_convergence(
    best_params: Sequence[Mapping[str, float | int]],
    objectives: Sequence[float],
    space: SearchSpace,
    max_dispersion: float = DEFAULT_MAX_DISPERSION,
) -> dict[str, Any]:
    """The convergence report over the completed seeds' best trials, one entry per seed.

    `{"dispersion": {param: value | None}, "objective": {"mean", "std", "min", "max"},
    "max_dispersion", "converged"}`; `std` has ddof 1 (None with fewer than 2 seeds; the
    others are None with none). `converged`: every dispersion `<= max_dispersion`, false when
    any is None.
    """
    if len(best_params) != len(objectives):
        raise ParameterError(
            "objectives", f"{len(objectives)} objectives for {len(best_params)} parameter sets"
        )
    if not 0.0 < max_dispersion <= 1.0:
        raise ParameterError("max_dispersion", f"must be in (0, 1], got {max_dispersion!r}")
    spread: dict[str, float | None] = {}
    for spec in space:
        try:
            values = [float(p[spec.name]) for p in best_params]
        except KeyError:
            raise ParameterError(spec.name, "missing from a seed's best parameters") from None
        spread[spec.name] = dispersion(values, spec.low, spec.high)
    obj = [float(o) for o in objectives]
    if not all(math.isfinite(o) for o in obj):
        raise ParameterError("objectives", "must be finite (a best trial has an objective)")
    arr = np.asarray(obj)
    return {
        "dispersion": spread,
        "objective": {
            "mean": float(arr.mean()) if obj else None,
            "std": float(arr.std(ddof=1)) if len(obj) >= 2 else None,
            "min": min(obj) if obj else None,
            "max": max(obj) if obj else None,
        },
        "max_dispersion": max_dispersion,
        "converged": all(d is not None and d <= max_dispersion for d in spread.values()),
    }
