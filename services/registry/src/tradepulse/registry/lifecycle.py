"""The lifecycle rules of a configuration: pure functions of metrics and settings, no I/O.

A configuration is born DISCOVERY (too few trades to judge it) or CANDIDATE. Later rules
move it along `TRANSITIONS`, the one table of allowed status changes: a rule computes a target
status and a reason, and `decide` refuses any change the table lacks. The walk-forward gates
(validation spec section 5) are the one automatic rule after birth: a CANDIDATE whose gates
all hold goes to PAPER. PAPER -> LIVE is never automatic: only an operator asks for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

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


# Changes only an operator may ask for; `decide` refuses them to every automatic rule.
OPERATOR_ONLY: Final[frozenset[tuple[ConfigStatus, ConfigStatus]]] = frozenset({("PAPER", "LIVE")})

Comparison = Literal[">=", ">", "<="]


@dataclass(frozen=True)
class GateThresholds:
    """Validation spec section 5's defaults; each is a registry setting."""

    oos_min_trades: int = 30
    oos_min_sharpe: float = 0.0
    oos_min_psr: float = 0.95
    min_wfe: float = 0.5
    max_pbo: float = 0.5
    min_dsr: float = 0.95


@dataclass(frozen=True)
class Rules:
    """The thresholds of the lifecycle, from the service settings."""

    min_trades_candidate: int = 30
    gates: GateThresholds = GateThresholds()


@dataclass(frozen=True)
class Evidence:
    """What a walk-forward job says about its configuration (None: the figure is null).

    `oos_trades` and `oos_sharpe` are the stitched out-of-sample `total_trades` and
    `sharpe_ratio`; `pbo` and `dsr` are the final optimization's, i.e. the configuration's.
    """

    oos_trades: float | None
    oos_sharpe: float | None
    oos_psr: float | None
    wfe: float | None
    pbo: float | None
    dsr: float | None


@dataclass(frozen=True)
class Gate:
    """One gate's figure, threshold and verdict: `value <comparison> threshold`."""

    name: str
    value: float | None
    comparison: Comparison
    threshold: float
    passed: bool


# The spec's table, in its order: (gate name, Evidence field, comparison, GateThresholds field).
GATES: Final[tuple[tuple[str, str, Comparison, str], ...]] = (
    ("oos_total_trades", "oos_trades", ">=", "oos_min_trades"),
    ("oos_sharpe_ratio", "oos_sharpe", ">", "oos_min_sharpe"),
    ("oos_psr", "oos_psr", ">=", "oos_min_psr"),
    ("wfe", "wfe", ">=", "min_wfe"),
    ("pbo", "pbo", "<=", "max_pbo"),
    ("dsr", "dsr", ">=", "min_dsr"),
)


def _holds(value: float | None, comparison: Comparison, threshold: float) -> bool:
    # A null figure, and a NaN one (no number at all), fail their gate.
    if value is None or (not math.isfinite(value) and not math.isinf(value)):
        return False
    if comparison == ">=":
        return value >= threshold
    if comparison == ">":
        return value > threshold
    return value <= threshold


def gates(evidence: Evidence, thresholds: GateThresholds) -> tuple[Gate, ...]:
    """Every gate of the spec's table with its value, threshold and verdict; null fails."""
    out = []
    for name, figure, comparison, limit in GATES:
        value = getattr(evidence, figure)
        threshold = float(getattr(thresholds, limit))
        out.append(Gate(name, value, comparison, threshold, _holds(value, comparison, threshold)))
    return tuple(out)


def after_gates(current: ConfigStatus, verdicts: Sequence[Gate] | None) -> Decision | None:
    """The automatic change a walk-forward job's gates ask for, or None (the status stays).

    Only a CANDIDATE moves, to PAPER, and only when every gate of the table is present and
    holds; a DISCOVERY configuration stays DISCOVERY with its gates recorded. `verdicts` is
    None for a plain (non-walk-forward) job, whose configuration never reaches PAPER this way.
    """
    if verdicts is None or current != "CANDIDATE":
        return None
    if {g.name for g in verdicts} != {name for name, *_ in GATES}:
        raise ValueError(
            f"gates {sorted(g.name for g in verdicts)} are not the table's "
            f"{sorted(name for name, *_ in GATES)}"
        )
    if not all(g.passed for g in verdicts):
        return None
    return decide("CANDIDATE", "PAPER", "every walk-forward gate holds: " + describe(verdicts))


def describe(verdicts: Sequence[Gate]) -> str:
    """`name value op threshold` for each gate, e.g. `wfe 0.62 >= 0.5`."""
    return ", ".join(
        f"{g.name} {'null' if g.value is None else f'{g.value:g}'} {g.comparison} {g.threshold:g}"
        for g in verdicts
    )


@dataclass(frozen=True)
class Decision:
    """A status change the table allows, with the reason recorded in the history."""

    from_status: ConfigStatus | None
    to_status: ConfigStatus
    reason: str


def allowed_targets(current: ConfigStatus | None) -> tuple[ConfigStatus, ...]:
    """The statuses the table lets `current` go to, sorted."""
    return tuple(sorted(TRANSITIONS[current]))


def decide(
    current: ConfigStatus | None, target: ConfigStatus, reason: str, *, operator: bool = False
) -> Decision:
    """The change from `current` to `target`, or IllegalTransitionError if the table forbids it
    (or if it is an operator's change, such as PAPER -> LIVE, and `operator` is False)."""
    if target not in TRANSITIONS[current]:
        options = ", ".join(allowed_targets(current)) or "none (terminal)"
        raise IllegalTransitionError(
            f"a configuration cannot go from {current or 'nothing'} to {target}; allowed: {options}"
        )
    if not operator and current is not None and (current, target) in OPERATOR_ONLY:
        raise IllegalTransitionError(
            f"{current} -> {target} is an operator's decision, never automatic"
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
