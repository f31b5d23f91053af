"""One vocabulary: the core declares what it decides (settings and their bounds, objectives,
regimes), the contracts declare the wire's words (optimizers, job statuses, names), and every
other layer agrees with them. Each test here fails as soon as two layers disagree."""

from __future__ import annotations

import argparse
import math
from dataclasses import fields
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tradepulse.cli.client import TERMINAL
from tradepulse.cli.main import build_parser
from tradepulse.cli.status import REASON_MAX_CHARS, REASON_MIN_CHARS, STATUSES
from tradepulse.cli.up import NAMESPACE
from tradepulse.common.contracts import registry
from tradepulse.common.contracts.base import ERROR_CODES, INVALID_REQUEST, NOT_FOUND, UNAVAILABLE
from tradepulse.common.contracts.subjects import NAMESPACE_PATTERN
from tradepulse.common.contracts.training import (
    JOB_STATUSES,
    OPTIMIZERS,
    PREDECESSOR_PAYLOAD,
    TERMINAL_STATUSES,
    BacktestSettingsModel,
    TrainingRequested,
)
from tradepulse.common.settings import CommonSettings
from tradepulse.gateway.schemas.training import BacktestSettingsBody, JobOut, TrainingBody
from tradepulse.quant import (
    OBJECTIVES,
    REGIMES,
    SETTING_BOUNDS,
    BacktestSettings,
    ParameterError,
)

SETTING_NAMES = tuple(f.name for f in fields(BacktestSettings))


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


def _enum(model: type[BaseModel], name: str) -> tuple[str, ...]:
    return tuple(_schema(model)["properties"][name]["enum"])


@pytest.mark.parametrize("model", [BacktestSettingsBody, BacktestSettingsModel])
def test_every_layer_has_the_cores_settings_defaults_and_bounds(model: type[BaseModel]) -> None:
    properties = _schema(model)["properties"]
    defaults = BacktestSettings()
    assert tuple(properties) == SETTING_NAMES
    assert set(SETTING_BOUNDS) == set(SETTING_NAMES)
    for name in SETTING_NAMES:
        bound = SETTING_BOUNDS[name]
        low = "exclusiveMinimum" if bound.low_open else "minimum"
        high = "exclusiveMaximum" if bound.high_open else "maximum"
        shown = {
            k: v
            for k, v in properties[name].items()
            if k in ("minimum", "maximum") or k.startswith("exclusive")
        }
        assert shown == {low: bound.low, high: bound.high}, name
        assert properties[name]["default"] == getattr(defaults, name)


@pytest.mark.parametrize("model", [TrainingBody, TrainingRequested])
def test_every_layer_names_the_cores_objectives_and_regimes(model: type[BaseModel]) -> None:
    assert _enum(model, "objective") == OBJECTIVES
    assert _enum(model, "regime") == REGIMES
    assert _enum(model, "optimizer") == OPTIMIZERS


def test_job_statuses_and_error_codes_are_declared_once() -> None:
    assert _enum(JobOut, "status") == JOB_STATUSES
    assert set(JOB_STATUSES) > TERMINAL_STATUSES
    assert set(ERROR_CODES) == {INVALID_REQUEST, NOT_FOUND, UNAVAILABLE}


def test_the_cli_which_imports_no_contracts_at_startup_agrees_with_them() -> None:
    # The CLI keeps its own copies so that `tradepulse --help` loads neither pydantic nor the
    # core; these checks stand in for the import.
    assert frozenset(TERMINAL) == TERMINAL_STATUSES
    assert NAMESPACE.pattern == NAMESPACE_PATTERN
    assert get_args(registry.ConfigStatus) == STATUSES
    assert (REASON_MIN_CHARS, REASON_MAX_CHARS) == (
        registry.REASON_MIN_CHARS,
        registry.REASON_MAX_CHARS,
    )
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    backtest = commands.choices["backtest"]
    [regime] = [a for a in backtest._actions if a.dest == "regime"]
    assert tuple(regime.choices or ()) == REGIMES
    namespace = CommonSettings.model_fields["namespace"].metadata
    assert [m.pattern for m in namespace if hasattr(m, "pattern")] == [NAMESPACE_PATTERN]


def test_the_predecessors_payload_is_a_valid_request() -> None:
    body = TrainingBody.model_validate(PREDECESSOR_PAYLOAD)
    assert body.to_request("job_1").n_iterations == PREDECESSOR_PAYLOAD["n_iterations"]


def _edges() -> list[float]:
    out: list[float] = []
    for bound in SETTING_BOUNDS.values():
        for end in (bound.low, bound.high):
            out += [end, math.nextafter(end, -math.inf), math.nextafter(end, math.inf)]
    return out


setting_value = st.one_of(
    st.sampled_from(_edges()),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2.0, 2.0),
    st.integers(-(10**14), 10**14),
    st.booleans(),
    st.sampled_from(["0.5", None]),
)
settings_dicts = st.dictionaries(st.sampled_from(SETTING_NAMES), setting_value, max_size=5)


def _accepted_by_core(values: dict[str, Any]) -> bool:
    try:
        BacktestSettings.from_mapping(values)
    except ParameterError:
        return False
    return True


def _accepted_by(model: type[BaseModel], values: dict[str, Any]) -> bool:
    try:
        model.model_validate(values)
    except ValidationError:
        return False
    return True


@given(values=settings_dicts)
def test_the_gateway_and_the_contract_accept_exactly_what_the_core_accepts(
    values: dict[str, Any],
) -> None:
    core = _accepted_by_core(values)
    assert _accepted_by(BacktestSettingsBody, values) == core, values
    assert _accepted_by(BacktestSettingsModel, values) == core, values
    if core:
        # What crosses the bus is what the core runs, value for value.
        wire = BacktestSettingsModel.model_validate(
            BacktestSettingsBody.model_validate(values).model_dump()
        )
        assert BacktestSettings(**wire.model_dump()) == BacktestSettings.from_mapping(values)


def test_the_bounds_name_themselves_in_the_cores_message() -> None:
    with pytest.raises(
        ParameterError,
        match=r"initial_capital: must be a number between 0 and 1e\+12 \(0 excluded\), got 10000000000000\.0",
    ):
        BacktestSettings(initial_capital=1e13)
