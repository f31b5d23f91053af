"""The contract between a strategy and the backtest engine.

A strategy is a frozen parameter type, a search space declared as data, a one-time per-dataset
preparation (everything that does not depend on the parameters) and a pure signal function.
The engine knows nothing else about it: a second strategy plugs in by implementing `Strategy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, get_args, runtime_checkable

import numpy as np
import numpy.typing as npt

from tradepulse.quant.candles import Candles
from tradepulse.quant.strategies.space import SearchSpace

Regime = Literal["any", "bull", "bear", "sideways"]
REGIMES: tuple[Regime, ...] = get_args(Regime)


@dataclass(frozen=True)
class Signals:
    """Counted signals, sparse and in bar order (local bar indices of the prepared candles).

    `direction` is +1 long / -1 short. Stops and targets come from the signal price.
    A trade opened by a signal closes by timeout on its `max_holding_bars`-th bar.
    """

    bar: npt.NDArray[np.int64]
    direction: npt.NDArray[np.int8]
    stop_loss: npt.NDArray[np.float64]
    take_profit: npt.NDArray[np.float64]
    max_holding_bars: int

    def __len__(self) -> int:
        return len(self.bar)


P = TypeVar("P")
Prep = TypeVar("Prep")


@runtime_checkable
class Strategy(Protocol[P, Prep]):
    """What the engine, the optimizers and the API need from a strategy."""

    name: str
    space: SearchSpace

    def parse_params(self, values: Mapping[str, Any]) -> P:
        """Type- and sign-check a mapping (a single backtest accepts any valid value)."""
        ...

    def params_to_dict(self, params: P) -> dict[str, float | int]: ...

    def warmup_bars(self, timeframe_seconds: int) -> int:
        """Bars a window needs before it so that every indicator is defined (spec section 8)."""
        ...

    def prepare(self, candles: Candles, params: Sequence[P] | None = None) -> Prep:
        """Parameter-independent work, done once per dataset and reused by every trial.

        `params`: the parameter sets that will run, when they are known (a single backtest,
        a CLI batch); the strategy may then prepare only what those need. `None`: any set
        of the search space may run. Either way `signals` accepts any parameters.
        """
        ...

    def signals(self, prepared: Prep, params: P, *, regime: Regime, trade_from: int) -> Signals:
        """Counted signals at bars >= trade_from, using bars 0..j only for a signal at j."""
        ...
