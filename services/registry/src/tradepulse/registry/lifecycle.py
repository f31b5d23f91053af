"""The lifecycle rules of a configuration: pure functions of metrics and settings, no I/O.

A configuration is born DISCOVERY (too few trades to judge it) or CANDIDATE. Later rules
(validation) move it along `TRANSITIONS`, the one table of allowed status changes: a rule
computes a target status and a reason, and `decide` refuses any change the table lacks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from tradepulse.common.contracts.registry import ConfigStatus
from tradepulse.registry.errors import IllegalTransitionError

TRANSITIONS: Final[Mapping[ConfigStatus | None, frozenset[ConfigStatus]]] = MappingProxyType(
    {
        # None: the configuration does not exist yet.
        None: frozenset({"DISCOVERY", "CANDIDATE"}),
        # More data (a longer window, a re-run) can give a small sample enough trades.
        "DISCOVERY": frozenset({"CANDIDATE", "RETIRED"}),
        "CANDIDATE": frozenset({"PAPER", "RETIRED"}),
        # Paper trading either confirms the backtest or sends the configuration back.
        "PAPER": frozenset({"LIVE", "CANDIDATE", "RETIRED"}),
        "LIVE": frozenset({"PAPER", "RETIRED"}),
        "RETIRED": frozenset(),
    }
)


@dataclass(frozen=True)
class Rules:
    """The thresholds of the lifecycle, from the service settings."""

    min_trades_candidate: int = 30


@dataclass(frozen=True)
class Decision:
    """A status change the table allows, with the reason recorded in the history."""

    from_status: ConfigStatus | None
    to_status: ConfigStatus
    reason: str


def decide(current: ConfigStatus | None, target: ConfigStatus, reason: str) -> Decision:
    """The change from `current` to `target`, or IllegalTransitionError if the table forbids it."""
    if target not in TRANSITIONS[current]:
        options = ", ".join(sorted(TRANSITIONS[current])) or "none (terminal)"
        raise IllegalTransitionError(
            f"a configuration cannot go from {current or 'nothing'} to {target}; allowed: {options}"
        )
    return Decision(from_status=current, to_status=target, reason=reason)


def initial(metrics: Mapping[str, float | int | None], rules: Rules) -> Decision:
    """The status of a new configuration: CANDIDATE from `min_trades_candidate` trades on.

    A missing, null or non-finite `total_trades` is a sample nobody can judge: DISCOVERY.
    """
    trades = metrics.get("total_trades")
    threshold = rules.min_trades_candidate
    if trades is None or not math.isfinite(trades):
        return decide(None, "DISCOVERY", "total_trades is missing from the metrics")
    if trades < threshold:
        return decide(
            None, "DISCOVERY", f"total_trades {trades} < {threshold}: too few trades to judge"
        )
    return decide(None, "CANDIDATE", f"total_trades {trades} >= {threshold}")
