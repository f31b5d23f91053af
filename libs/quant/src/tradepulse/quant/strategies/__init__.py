"""Strategies by name. A new strategy implements `base.Strategy` and registers here."""

from __future__ import annotations

from typing import Any

from tradepulse.quant.errors import ParameterError
from tradepulse.quant.strategies.base import Strategy
from tradepulse.quant.strategies.liquidity_sweep import LiquiditySweep

STRATEGIES: dict[str, type[Any]] = {LiquiditySweep.name: LiquiditySweep}


def get_strategy(name: str) -> Strategy[Any, Any]:
    """A strategy with its default indicator settings, by its registered name."""
    try:
        factory = STRATEGIES[name.upper()]
    except KeyError:
        raise ParameterError(
            "strategy", f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}"
        ) from None
    strategy: Strategy[Any, Any] = factory()
    return strategy
