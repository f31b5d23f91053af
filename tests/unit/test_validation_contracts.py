"""The contracts of issue 8: pbo_blocks, per-trial block sums, the validation report, ensembles."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.contracts.registry import ListConfigs
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import (
    ConvergenceReport,
    DegradationPoints,
    EnsembleReply,
    EnsembleView,
    GetEnsemble,
    PboReport,
    TrainingRequested,
    TrialCompleted,
    ValidationReport,
)

DATASET = DatasetKey(exchange="binance", symbol="BTC/USDT", timeframe="5m")


def request(**fields: Any) -> TrainingRequested:
    return TrainingRequested(
        job_id="job_1", dataset=DATASET, lookback_candles=1000, n_iterations=10, **fields
    )


def report(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "n_trials": 200,
        "sharpe_variance": 0.0004,
        "expected_max_sharpe": 4.1,
        "expected_max_sharpe_per_bar": 0.0076,
        "selected": {
            "trial": 17,
            "sharpe_per_bar": 0.012,
            "returns": 9999,
            "skew": None,
            "kurtosis": None,
        },
        "psr": 0.93,
        "dsr": 0.31,
        "pbo": {
            "blocks": 16,
            "sets": 12870,
            "pbo": 0.71,
            "prob_oos_loss": 0.4,
            "degradation": {"slope": -0.2, "intercept": 0.001, "r2": None},
            "logit_quantiles": {"5": -2.0, "25": -1.0, "50": -0.5, "75": 0.2, "95": 1.5},
            "logit_histogram": [0] * 23 + [12870],
        },
    }
    body.update(fields)
    return body


def test_pbo_blocks_defaults_to_16() -> None:
    assert request().pbo_blocks == 16


@pytest.mark.parametrize("blocks", [2, 4, 10, 16])
def test_even_pbo_blocks_from_2_to_16_are_accepted(blocks: int) -> None:
    assert request(pbo_blocks=blocks).pbo_blocks == blocks


@pytest.mark.parametrize("blocks", [0, 1, 3, 15, 17, 18])
def test_other_pbo_blocks_are_refused(blocks: int) -> None:
    with pytest.raises(ValidationError, match="pbo_blocks"):
        request(pbo_blocks=blocks)


def test_ensemble_id_and_size_come_together() -> None:
    member = request(ensemble_id="ens_1", ensemble_size=3, max_dispersion=0.2)
    assert (member.ensemble_id, member.ensemble_size, member.max_dispersion) == ("ens_1", 3, 0.2)
    with pytest.raises(ValidationError, match="ensemble_size"):
        request(ensemble_id="ens_1")
    with pytest.raises(ValidationError, match="ensemble_size"):
        request(ensemble_id="ens_1", ensemble_size=1)


@pytest.mark.parametrize("value", [0.0, -0.1, 1.0001, float("nan")])
def test_max_dispersion_lies_in_0_exclusive_to_1(value: float) -> None:
    with pytest.raises(ValidationError, match="max_dispersion"):
        request(max_dispersion=value)
    assert request(max_dispersion=1.0).max_dispersion == 1.0


def test_a_trial_carries_block_sums_or_none() -> None:
    base: dict[str, Any] = {
        "job_id": "j",
        "number": 0,
        "params": {},
        "state": "failed",
        "value": None,
        "metrics": {},
        "fingerprint": "",
        "duration_ms": 0.0,
        "replica": "r",
    }
    assert TrialCompleted(**base).block_sums is None
    sums = [0.5] * 32
    trial = TrialCompleted(**base, block_sums=sums)
    assert TrialCompleted.from_bytes(trial.to_bytes()).block_sums == sums
    with pytest.raises(ValidationError, match="block_sums"):
        TrialCompleted(**base, block_sums=[0.0] * 34)


def test_the_report_round_trips_with_its_nulls() -> None:
    parsed = ValidationReport.model_validate(report())
    assert parsed.selected is not None
    assert parsed.selected.skew is None
    assert parsed.pbo is not None
    assert parsed.pbo.degradation.r2 is None
    again = ValidationReport.model_validate_json(parsed.model_dump_json())
    assert again == parsed
    assert ValidationReport.model_validate(report(pbo=None, dsr=None)).pbo is None


def test_degradation_points_pair_up_and_a_report_stored_without_them_still_reads() -> None:
    old = ValidationReport.model_validate(report())  # stored before the points were kept
    assert old.pbo is not None
    assert old.pbo.degradation.points is None
    assert old.without_points() is old
    points = {"is_performance": [0.01, 0.02], "oos_performance": [-0.01, 0.005]}
    pbo = {**report()["pbo"], "degradation": {"slope": 1.0, "intercept": 0.0, "r2": 0.5}}
    pbo["degradation"]["points"] = points
    new = ValidationReport.model_validate(report(pbo=pbo))
    assert new.pbo is not None
    assert new.pbo.degradation.points is not None
    assert new.pbo.degradation.points.oos_performance == [-0.01, 0.005]
    assert ValidationReport.model_validate_json(new.model_dump_json()) == new
    bare = new.without_points()
    assert bare.pbo is not None
    assert bare.pbo.degradation.points is None
    assert bare.model_copy(update={"pbo": None}) == new.model_copy(update={"pbo": None})
    with pytest.raises(ValidationError, match="pair up"):
        DegradationPoints(is_performance=[0.1], oos_performance=[])
    with pytest.raises(ValidationError, match="is_performance"):
        DegradationPoints(is_performance=[0.0] * 257, oos_performance=[0.0] * 257)


def test_the_report_refuses_probabilities_outside_0_1_and_bad_pbo_shapes() -> None:
    with pytest.raises(ValidationError, match="dsr"):
        ValidationReport.model_validate(report(dsr=1.2))
    pbo = report()["pbo"]
    with pytest.raises(ValidationError, match="logit_histogram"):
        PboReport.model_validate({**pbo, "logit_histogram": [0] * 23})
    with pytest.raises(ValidationError, match="logit_quantiles"):
        PboReport.model_validate({**pbo, "logit_quantiles": {"50": 0.0}})
    with pytest.raises(ValidationError, match="extra"):
        ValidationReport.model_validate({**report(), "surprise": 1})


def test_configs_filter_and_sort_by_dsr_and_pbo() -> None:
    query = ListConfigs(min_dsr=0.95, max_pbo=0.5, sort="dsr")
    assert (query.min_dsr, query.max_pbo, query.sort) == (0.95, 0.5, "dsr")
    assert ListConfigs(sort="pbo").sort == "pbo"
    with pytest.raises(ValidationError, match="min_dsr"):
        ListConfigs(min_dsr=float("inf"))


def test_ensemble_messages() -> None:
    assert Names("x").get_ensemble == "x.rpc.training.ensemble"
    with pytest.raises(ValidationError, match="ensemble_id"):
        GetEnsemble(ensemble_id="a b")
    view = EnsembleView(
        ensemble_id="e",
        size=2,
        max_dispersion=0.1,
        ended=False,
        jobs=[],
        convergence=None,
    )
    reply = EnsembleReply(ensemble=view)
    assert EnsembleReply.from_bytes(reply.to_bytes()) == reply
    report = ConvergenceReport(
        completed=1,
        dispersion={"a": None},
        objective={"mean": 1.0, "std": None, "min": 1.0, "max": 1.0},
        max_dispersion=0.1,
        converged=False,
    )
    assert report.objective.std is None
