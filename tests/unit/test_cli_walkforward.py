"""`tradepulse train --walk-forward`: the request it sends and the report it prints."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tradepulse.cli import render
from tradepulse.cli.errors import UserError
from tradepulse.cli.main import build_parser
from tradepulse.cli.training import training_payload

BASE = ["train", "--symbol", "BTC/USDT", "--exchange", "binance", "--n-iterations", "200"]


def payload(*extra: str) -> dict[str, Any]:
    return training_payload(build_parser().parse_args([*BASE, *extra]))


def test_walk_forward_options_become_the_requests_walk_forward() -> None:
    assert "walk_forward" not in payload()
    assert payload("--walk-forward", "5")["walk_forward"] == {"folds": 5}
    assert payload("--walk-forward", "3", "--anchored", "--is-oos-ratio", "2")["walk_forward"] == {
        "folds": 3,
        "mode": "anchored",
        "is_oos_ratio": 2,
    }


@pytest.mark.parametrize("extra", [["--anchored"], ["--is-oos-ratio", "3"]])
def test_layout_options_without_walk_forward_are_refused(extra: list[str]) -> None:
    with pytest.raises(UserError, match="need --walk-forward"):
        payload(*extra)


SPAN = {"first_bar": 100, "last_bar": 199, "bars": 100, "first_ms": 0, "last_ms": 1}
REPORT: dict[str, Any] = {
    "folds": 2,
    "mode": "rolling",
    "is_oos_ratio": 4,
    "train_bars": 400,
    "test_bars": 100,
    "fold_results": [
        {
            "fold": 0,
            "train": SPAN,
            "test": {**SPAN, "first_bar": 500, "last_bar": 599},
            "best_trial": 7,
            "train_metrics": {"sharpe_ratio": 1.5, "net_profit": 120.0},
            "test_metrics": {"sharpe_ratio": -0.25, "net_profit": -10.0},
            "test_trades": 4,
            "efficiency": 0.125,
        },
        {
            "fold": 1,
            "train": SPAN,
            "test": SPAN,
            "best_trial": None,
            "train_metrics": None,
            "test_metrics": {"sharpe_ratio": None, "net_profit": 0.0},
            "test_trades": 0,
            "efficiency": None,
        },
    ],
    "final": {"fold": 2, "span": SPAN, "best_trial": 411},
    "oos": {"span": SPAN, "metrics": {"sharpe_ratio": 0.5, "total_trades": 4}, "psr": 0.61},
    "wfe": None,
    "dispersion": {"key_level_lookback": None},
}
GATES: list[dict[str, Any]] = [
    {
        "name": "oos_total_trades",
        "value": 4,
        "comparison": ">=",
        "threshold": 30.0,
        "passed": False,
    },
    {"name": "wfe", "value": None, "comparison": ">=", "threshold": 0.5, "passed": False},
    {"name": "dsr", "value": 0.99, "comparison": ">=", "threshold": 0.95, "passed": True},
]


def test_the_report_shows_every_fold_the_stitched_record_and_the_gates() -> None:
    out = io.StringIO()
    render.walk_forward_report(REPORT, {"status": "CANDIDATE", "gates": GATES}, out)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].startswith("walk-forward: 2 folds, rolling")
    assert lines[1].split() == [
        "fold", "train", "bars", "test", "bars", "best", "IS", "sharpe", "IS", "net", "OOS",
        "sharpe", "OOS", "net", "OOS", "trades", "efficiency",
    ]  # fmt: skip
    fold_zero = ["0", "100..199", "500..599", "7", "1.50", "120.00", "-0.25", "-10.00", "4"]
    assert lines[2].split() == [*fold_zero, "0.12"]
    assert lines[3].split()[:4] == ["1", "100..199", "100..199", "none"]
    assert "best trial 411" in text
    assert "PSR 0.610" in text
    assert "WFE -" in text
    assert "oos_total_trades  4" in text
    assert "wfe               null" in text
    assert text.rstrip().endswith("status CANDIDATE")
    assert [line.split()[-1] for line in lines if line.startswith(("oos_", "wfe ", "dsr"))] == [
        "FAIL",
        "FAIL",
        "pass",
    ]


def test_the_verdict_in_plain_words() -> None:
    assert render.walk_forward_verdict({"status": "CANDIDATE", "gates": GATES}) == (
        "it did not survive out-of-sample: oos_total_trades, wfe failed, so it stays CANDIDATE"
    )
    passed = [{**g, "passed": True} for g in GATES]
    assert "moved to PAPER" in render.walk_forward_verdict({"status": "PAPER", "gates": passed})
    assert "stays DISCOVERY" in render.walk_forward_verdict(
        {"status": "DISCOVERY", "gates": passed}
    )
    assert "not been registered" in render.walk_forward_verdict(None)


def test_a_jobs_details_include_its_walk_forward_report() -> None:
    out = io.StringIO()
    render.job_details({"job_id": "job_1", "status": "completed", "walk_forward": REPORT}, out)
    assert "walk-forward: 2 folds, rolling" in out.getvalue()
    plain = io.StringIO()
    render.job_details({"job_id": "job_2", "status": "completed"}, plain)
    assert "walk-forward" not in plain.getvalue()
