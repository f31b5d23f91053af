"""The registry's lifecycle rules: pure functions, tested without servers."""

from __future__ import annotations

import dataclasses
from typing import get_args

import pytest

from tradepulse.common.contracts.registry import ConfigStatus
from tradepulse.registry.errors import IllegalTransitionError
from tradepulse.registry.lifecycle import (
    GATES,
    TRANSITIONS,
    Decision,
    Evidence,
    Gate,
    GateThresholds,
    Rules,
    after_gates,
    allowed_targets,
    decide,
    gates,
    initial,
)
from tradepulse.registry.settings import RegistrySettings

STATUSES: tuple[ConfigStatus, ...] = get_args(ConfigStatus)


@pytest.mark.parametrize(
    ("trades", "status"),
    [
        (0, "DISCOVERY"),
        (29, "DISCOVERY"),
        (29.0, "DISCOVERY"),
        (30, "CANDIDATE"),
        (31.0, "CANDIDATE"),
        (500, "CANDIDATE"),
    ],
)
def test_default_threshold_is_thirty_trades(trades: float, status: ConfigStatus) -> None:
    decision = initial({"total_trades": trades, "sharpe_ratio": 1.2}, Rules())
    assert decision.from_status is None
    assert decision.to_status == status
    assert str(trades) in decision.reason


def test_threshold_comes_from_the_rules() -> None:
    metrics = {"total_trades": 12}
    assert initial(metrics, Rules(min_trades_candidate=10)).to_status == "CANDIDATE"
    assert initial(metrics, Rules(min_trades_candidate=13)).to_status == "DISCOVERY"
    assert initial({"total_trades": 0}, Rules(min_trades_candidate=0)).to_status == "CANDIDATE"


@pytest.mark.parametrize("metrics", [{}, {"total_trades": None}, {"total_trades": float("nan")}])
def test_unknown_trade_count_is_discovery(metrics: dict[str, float | None]) -> None:
    decision = initial(metrics, Rules())
    assert decision == Decision(None, "DISCOVERY", "total_trades is missing from the metrics")


def test_reasons_name_the_count_and_the_threshold() -> None:
    assert (
        initial({"total_trades": 7}, Rules()).reason
        == "total_trades 7 < 30: too few trades to judge"
    )
    assert initial({"total_trades": 45}, Rules()).reason == "total_trades 45 >= 30"


def test_the_table_covers_every_status_and_names_only_statuses() -> None:
    assert set(TRANSITIONS) == {None, *STATUSES}
    for targets in TRANSITIONS.values():
        assert targets <= set(STATUSES)


def test_a_configuration_is_born_discovery_or_candidate_only() -> None:
    assert TRANSITIONS[None] == {"DISCOVERY", "CANDIDATE"}
    for status in ("PAPER", "LIVE", "RETIRED"):
        with pytest.raises(IllegalTransitionError, match=f"from nothing to {status}"):
            decide(None, status, "skip the queue")


def test_retired_is_terminal_and_reachable_from_every_living_status() -> None:
    assert TRANSITIONS["RETIRED"] == frozenset()
    for status in STATUSES:
        if status != "RETIRED":
            assert decide(status, "RETIRED", "stale").to_status == "RETIRED"
    with pytest.raises(IllegalTransitionError, match="none \\(terminal\\)"):
        decide("RETIRED", "CANDIDATE", "revive")


def test_live_needs_paper_first() -> None:
    sources = {s for s, targets in TRANSITIONS.items() if "LIVE" in targets}
    assert sources == {"PAPER"}
    with pytest.raises(IllegalTransitionError, match="allowed: PAPER, RETIRED"):
        decide("CANDIDATE", "LIVE", "impatient")


def test_no_status_moves_to_itself() -> None:
    for status in STATUSES:
        assert status not in TRANSITIONS[status]


def test_decide_keeps_the_reason() -> None:
    assert decide("CANDIDATE", "PAPER", "walk-forward passed") == Decision(
        "CANDIDATE", "PAPER", "walk-forward passed"
    )


# --- walk-forward gates (validation spec section 5) ---------------------------------------

PASSING = Evidence(oos_trades=30, oos_sharpe=0.01, oos_psr=0.95, wfe=0.5, pbo=0.5, dsr=0.95)


def by_name(evidence: Evidence, thresholds: GateThresholds | None = None) -> dict[str, Gate]:
    return {g.name: g for g in gates(evidence, thresholds or GateThresholds())}


def test_the_defaults_are_the_spec_table() -> None:
    verdicts = gates(PASSING, GateThresholds())
    assert [(g.name, g.comparison, g.threshold) for g in verdicts] == [
        ("oos_total_trades", ">=", 30.0),
        ("oos_sharpe_ratio", ">", 0.0),
        ("oos_psr", ">=", 0.95),
        ("wfe", ">=", 0.5),
        ("pbo", "<=", 0.5),
        ("dsr", ">=", 0.95),
    ]
    # Every figure exactly at its threshold passes, except the strict Sharpe (0.01 > 0 here).
    assert all(g.passed for g in verdicts)
    assert [g.value for g in verdicts] == [30, 0.01, 0.95, 0.5, 0.5, 0.95]


@pytest.mark.parametrize(
    ("field", "gate", "failing"),
    [
        ("oos_trades", "oos_total_trades", 29),
        ("oos_sharpe", "oos_sharpe_ratio", 0.0),
        ("oos_sharpe", "oos_sharpe_ratio", -0.3),
        ("oos_psr", "oos_psr", 0.9499),
        ("wfe", "wfe", 0.4999),
        ("wfe", "wfe", -2.0),
        ("pbo", "pbo", 0.5001),
        ("dsr", "dsr", 0.9),
    ],
)
def test_each_gate_fails_on_its_own_side_of_the_threshold(
    field: str, gate: str, failing: float
) -> None:
    verdicts = by_name(dataclasses.replace(PASSING, **{field: failing}))
    assert not verdicts[gate].passed
    assert verdicts[gate].value == failing
    assert all(g.passed for name, g in verdicts.items() if name != gate)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Evidence)])
@pytest.mark.parametrize("null", [None, float("nan")])
def test_a_null_figure_fails_its_gate(field: str, null: float | None) -> None:
    evidence = dataclasses.replace(PASSING, **{field: null})
    verdicts = gates(evidence, GateThresholds())
    [failed] = [g for g in verdicts if not g.passed]
    assert failed.name == next(name for name, f, _, _ in GATES if f == field)
    assert after_gates("CANDIDATE", verdicts) is None


def test_thresholds_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RegistrySettings().rules.gates == GateThresholds()
    for name, value in {
        "REGISTRY_GATE_OOS_MIN_TRADES": "100",
        "REGISTRY_GATE_OOS_MIN_SHARPE": "0.5",
        "REGISTRY_GATE_OOS_MIN_PSR": "0.99",
        "REGISTRY_GATE_MIN_WFE": "0.75",
        "REGISTRY_GATE_MAX_PBO": "0.25",
        "REGISTRY_GATE_MIN_DSR": "0.9",
    }.items():
        monkeypatch.setenv(name, value)
    thresholds = RegistrySettings().rules.gates
    assert thresholds == GateThresholds(100, 0.5, 0.99, 0.75, 0.25, 0.9)
    verdicts = by_name(PASSING, thresholds)
    assert [n for n, g in verdicts.items() if g.passed] == ["dsr"]  # 0.95 >= 0.9


def test_a_candidate_whose_gates_all_hold_goes_to_paper() -> None:
    decision = after_gates("CANDIDATE", gates(PASSING, GateThresholds()))
    assert decision is not None
    assert (decision.from_status, decision.to_status) == ("CANDIDATE", "PAPER")
    assert decision.reason.startswith("every walk-forward gate holds: oos_total_trades 30 >= 30")
    assert "oos_sharpe_ratio 0.01 > 0" in decision.reason


def test_one_failing_gate_keeps_a_candidate() -> None:
    verdicts = gates(dataclasses.replace(PASSING, pbo=0.8), GateThresholds())
    assert after_gates("CANDIDATE", verdicts) is None


def test_discovery_stays_discovery_even_when_every_gate_holds() -> None:
    assert after_gates("DISCOVERY", gates(PASSING, GateThresholds())) is None


def test_a_plain_job_never_reaches_paper_by_itself() -> None:
    assert after_gates("CANDIDATE", None) is None


def test_an_incomplete_set_of_gates_is_an_error_not_a_pass() -> None:
    verdicts = gates(PASSING, GateThresholds())
    with pytest.raises(ValueError, match="not the table"):
        after_gates("CANDIDATE", verdicts[:-1])
    with pytest.raises(ValueError, match="not the table"):
        after_gates("CANDIDATE", ())


def test_paper_to_live_is_only_an_operators_change() -> None:
    with pytest.raises(IllegalTransitionError, match="operator"):
        decide("PAPER", "LIVE", "looks good")
    assert decide("PAPER", "LIVE", "approved", operator=True).to_status == "LIVE"
    # The operator cannot break the table either.
    with pytest.raises(IllegalTransitionError, match="allowed: PAPER, RETIRED"):
        decide("CANDIDATE", "LIVE", "rush", operator=True)


def test_allowed_targets_are_sorted_table_entries() -> None:
    assert allowed_targets("PAPER") == ("CANDIDATE", "LIVE", "RETIRED")
    assert allowed_targets("RETIRED") == ()
