"""The gateway's side of issue 8: pbo_blocks, ensemble requests, the report's HTTP shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tradepulse.common.contracts.training import EnsembleMember, EnsembleView, ValidationReport
from tradepulse.gateway.schemas.training import EnsembleBody, TrainingBody
from tradepulse.gateway.schemas.validation import (
    EnsembleJobOut,
    ValidationOut,
    ensemble_out,
    validation_out,
)

BODY: dict[str, Any] = {
    "symbol": "BTC/USDT",
    "exchange": "binanceus",
    "timeframe": "5m",
    "n_iterations": 20,
    "lookback_candles": 1000,
}
LISTED = {**BODY, "seeds": [1, 2]}


def fields_of(exc: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]


def test_pbo_blocks_reach_the_request_and_odd_or_out_of_range_ones_name_the_field() -> None:
    assert TrainingBody.model_validate(BODY).to_request("j").pbo_blocks == 16
    assert TrainingBody.model_validate({**BODY, "pbo_blocks": 4}).to_request("j").pbo_blocks == 4
    for bad in (0, 3, 17, 18, "8", 8.0):
        with pytest.raises(ValidationError) as caught:
            TrainingBody.model_validate({**BODY, "pbo_blocks": bad})
        assert fields_of(caught.value) == ["pbo_blocks"], bad


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seeds": [1]}, "seeds"),
        ({"seeds": list(range(101))}, "seeds"),
        ({"seeds": None, "n_seeds": 1, "seed": 5}, "n_seeds"),
        ({"seeds": None, "n_seeds": 101}, "n_seeds"),
        ({"max_dispersion": 0}, "max_dispersion"),
        ({"max_dispersion": 1.5}, "max_dispersion"),
        ({"max_dispersion": float("nan")}, "max_dispersion"),
    ],
)
def test_bad_ensembles_name_the_field(change: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**LISTED, **change}.items() if v is not None}
    with pytest.raises(ValidationError) as caught:
        EnsembleBody.model_validate(body)
    assert field in fields_of(caught.value)


def test_an_ensemble_request_carries_its_id_size_and_max_dispersion() -> None:
    body = EnsembleBody.model_validate({**LISTED, "max_dispersion": 1.0})
    request = body.to_request(
        "j", seed=2, ensemble_id="ens_x", ensemble_size=2, max_dispersion=body.max_dispersion
    )
    assert (request.seed, request.ensemble_id, request.ensemble_size) == (2, "ens_x", 2)
    assert request.max_dispersion == 1.0
    assert EnsembleBody.model_validate(LISTED).max_dispersion == 0.10


def test_the_report_keeps_every_figure_and_null_over_http() -> None:
    report = ValidationReport.model_validate(
        {
            "n_trials": 2,
            "sharpe_variance": 1e-6,
            "expected_max_sharpe": 0.5,
            "expected_max_sharpe_per_bar": 0.001,
            "selected": {
                "trial": 1,
                "sharpe_per_bar": 0.01,
                "returns": 100,
                "skew": None,
                "kurtosis": None,
            },
            "psr": 0.6,
            "dsr": 0.4,
            "pbo": None,
        }
    )
    out = validation_out(report)
    assert isinstance(out, ValidationOut)
    assert out.model_dump() == report.model_dump()
    assert validation_out(None) is None


def test_an_ensemble_view_adds_the_jobs_not_recorded_yet_in_seed_order() -> None:
    view = EnsembleView(
        ensemble_id="e",
        size=3,
        max_dispersion=0.1,
        ended=False,
        jobs=[
            EnsembleMember(
                job_id="b",
                seed=9,
                status="running",
                best_value=1.0,
                best_trial=2,
                best_params={"x": 1},
            )
        ],
        convergence=None,
    )
    queued = [
        EnsembleJobOut(
            job_id=job_id, seed=seed, status="queued", best_value=None, best_trial=None, params=None
        )
        for job_id, seed in (("a", 3), ("b", 9), ("c", 5))
    ]
    out = ensemble_out(view, queued)
    assert [(j.job_id, j.status) for j in out.jobs] == [
        ("a", "queued"),
        ("c", "queued"),
        ("b", "running"),
    ]
    assert (out.status, out.size, out.convergence) == ("running", 3, None)
