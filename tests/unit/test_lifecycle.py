"""The registry's lifecycle rules: pure functions, tested without servers."""

from __future__ import annotations

from typing import get_args

import pytest

from tradepulse.common.contracts.registry import ConfigStatus
from tradepulse.registry.errors import IllegalTransitionError
from tradepulse.registry.lifecycle import TRANSITIONS, Decision, Rules, decide, initial

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
