"""The CLI's overfitting figures in plain words, the ensemble command and its report."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from tradepulse.cli import render
from tradepulse.cli.client import Gateway
from tradepulse.cli.errors import UserError
from tradepulse.cli.main import build_parser
from tradepulse.cli.training import follow_ensemble, parse_seeds, training_payload

VALIDATION: dict[str, Any] = {
    "n_trials": 200,
    "sharpe_variance": 0.0004,
    "expected_max_sharpe": 4.1234,
    "expected_max_sharpe_per_bar": 0.0127,
    "selected": {
        "trial": 17,
        "sharpe_per_bar": 0.0204,
        "returns": 9999,
        "skew": 0.1,
        "kurtosis": 9.0,
    },
    "psr": 0.9876,
    "dsr": 0.3111,
    "pbo": {
        "blocks": 16,
        "sets": 12870,
        "pbo": 0.7104,
        "prob_oos_loss": 0.42,
        "degradation": {"slope": -0.3, "intercept": 0.0, "r2": 0.2},
        "logit_quantiles": {"5": -2.0, "25": -1.0, "50": -0.5, "75": 0.2, "95": 1.5},
        "logit_histogram": [0] * 23 + [12870],
    },
}


def test_the_deflated_sharpe_and_pbo_each_get_one_plain_line() -> None:
    lines = render.validation_lines(VALIDATION, sharpe=6.6)
    assert lines[0] == (
        "the best of 200 skill-less tries would show a Sharpe of 4.1 by luck alone; this one "
        "has 6.6 → deflated Sharpe 0.31 (probability that the edge is real)"
    )
    assert (
        "in 71 % of the 12,870 splits the in-sample winner ranked below the median out of "
        "sample (PBO 0.71)"
    ) in lines
    assert "and in 42 % of them it lost money out of sample" in lines
    assert any("PSR" in line and "0.99" in line and "9,999 returns" in line for line in lines)


def test_without_the_metrics_the_sharpe_is_scaled_like_the_expected_maximum() -> None:
    line = render.validation_lines(VALIDATION)[0]
    # 0.0204 * 4.1234 / 0.0127 = 6.62
    assert "this one has 6.6 →" in line


def test_the_spec_nulls_say_what_is_missing() -> None:
    nulls = {**VALIDATION, "n_trials": 1, "dsr": None, "psr": None, "pbo": None}
    lines = render.validation_lines(nulls)
    assert lines == [
        "deflated Sharpe: not available for these 1 tries (it needs a best trial whose "
        "returns vary)",
        "PBO: not available (it needs at least 2 evaluated tries and 2 returns per block)",
    ]
    assert render.validation_lines(None) == []


def test_job_and_configuration_pages_show_the_figures() -> None:
    job = {
        "job_id": "j",
        "status": "completed",
        "best": {"value": 6.6, "trial": 17, "params": {"a": 1}, "metrics": {"sharpe_ratio": 6.6}},
        "validation": VALIDATION,
    }
    out = io.StringIO()
    render.job_details(job, out)
    text = out.getvalue()
    assert "overfitting\n  the best of 200 skill-less tries" in text
    assert "this one has 6.6 → deflated Sharpe 0.31" in text
    out = io.StringIO()
    render.best_configuration(job, {"config_id": "c", "metrics": {"sharpe_ratio": 6.6}}, out)
    assert "(PBO 0.71)" in out.getvalue()
    out = io.StringIO()
    render.job_details({"job_id": "j", "status": "running"}, out)
    assert "overfitting" not in out.getvalue()


def test_seeds_are_a_list_of_at_least_two_distinct_integers() -> None:
    assert parse_seeds("42,123, 456") == [42, 123, 456]
    for bad, reason in (("42", "at least 2"), ("1,1", "repeat"), ("1,x", "integers")):
        with pytest.raises(UserError, match=reason):
            parse_seeds(bad)


def test_the_ensemble_command_takes_the_train_options_but_not_one_seed() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "ensemble",
            "--seeds",
            "1,2",
            "--symbol",
            "BTC/USDT",
            "--exchange",
            "binance",
            "--n-iterations",
            "20",
            "--lookback",
            "1000",
            "--pbo-blocks",
            "8",
            "--max-dispersion",
            "0.2",
        ]
    )
    payload = training_payload(args)
    assert payload["pbo_blocks"] == 8
    assert "seed" not in payload
    assert args.max_dispersion == 0.2
    with pytest.raises(SystemExit):
        parser.parse_args(["ensemble", "--seeds", "1,2", "--seed", "3"])


async def test_following_an_ensemble_sums_its_jobs_trials_until_it_ended() -> None:
    views = iter(
        [
            {
                "ensemble_id": "e",
                "status": "running",
                "size": 2,
                "jobs": [
                    {"job_id": "a", "seed": 1, "status": "completed"},
                    {"job_id": "b", "seed": 2, "status": "running"},
                ],
            },
            {
                "ensemble_id": "e",
                "status": "ended",
                "size": 2,
                "jobs": [
                    {"job_id": "a", "seed": 1, "status": "completed"},
                    {"job_id": "b", "seed": 2, "status": "completed"},
                ],
                "convergence": None,
            },
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if "/ensemble/" in request.url.path:
            return httpx.Response(200, json=next(views))
        return httpx.Response(200, json={"job_id": "b", "trials_done": 5})

    out = io.StringIO()
    async with Gateway("http://gw.test", "k", transport=httpx.MockTransport(handler)) as gw:
        final = await follow_ensemble(gw, "e", 10, out)
    assert final["status"] == "ended"
    lines = out.getvalue().splitlines()
    assert "15/20 trials" in lines[0]
    assert "20/20 trials" in lines[-1]


def test_the_ensemble_report_says_whether_the_seeds_converged() -> None:
    view = {
        "ensemble_id": "e",
        "status": "ended",
        "size": 3,
        "jobs": [
            {"job_id": "a", "seed": 1, "status": "completed", "best_value": 1.5, "best_trial": 3},
            {"job_id": "b", "seed": 2, "status": "completed", "best_value": 2.5, "best_trial": 0},
            {"job_id": "c", "seed": 3, "status": "failed", "best_value": None, "best_trial": None},
        ],
        "convergence": {
            "completed": 2,
            "dispersion": {"x": 0.34, "y": 0.02},
            "objective": {"mean": 2.0, "std": 0.7071, "min": 1.5, "max": 2.5},
            "max_dispersion": 0.1,
            "converged": False,
        },
    }
    out = io.StringIO()
    render.ensemble_report(view, out)
    text = out.getvalue()
    assert "ensemble e: 3 seeds, ended" in text
    assert (
        "the seeds' best parameters scatter by up to 34 % of their ranges (limit 10 %): the "
        "search is likely fitting noise"
    ) in text
    assert "objective  mean 2.0000, std 0.7071, min 1.5000, max 2.5000" in text
    converged = {
        **view["convergence"],  # type: ignore[dict-item]
        "dispersion": {"x": 0.05, "y": 0.02},
        "converged": True,
    }
    assert "agree on one region" in render.convergence_line(converged)
    unknown = {**converged, "completed": 1, "dispersion": {"x": None}, "converged": False}
    assert "needs at least 2" in render.convergence_line(unknown)
