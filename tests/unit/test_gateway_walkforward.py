"""The gateway's walk-forward checks: the request's fields, and the layouts the core refuses
(a 422 naming the field, decided from the dataset's coverage before anything is published)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from tradepulse.common.contracts.market import DatasetCoverage, DatasetKey
from tradepulse.gateway.jobs import walk_forward_problem, window_rows
from tradepulse.gateway.schemas.training import TrainingBody
from tradepulse.quant import Candles, range_window

WARMUP = 2316  # LIQUIDITY_SWEEP's at 5m
FIRST_MS = 1_640_995_200_000
STEP = 300_000


def coverage(rows: int, gaps: int = 0) -> DatasetCoverage:
    return DatasetCoverage(
        dataset=DatasetKey(exchange="binance", symbol="BTC/USDT", timeframe="5m"),
        rows=rows,
        first_ms=FIRST_MS,
        last_ms=FIRST_MS + (rows - 1) * STEP,
        expected_rows=rows + gaps,
        gaps=gaps,
        missing_candles=gaps,
        largest_gap=None,
        content_hash="h",
        snapshot="s",
        updated_at="2026-01-01T00:00:00+00:00",
    )


def body(**fields: Any) -> TrainingBody:
    values: dict[str, Any] = {
        "symbol": "BTC/USDT",
        "exchange": "binance",
        "timeframe": "5m",
        "n_iterations": 10,
        "lookback_candles": 3000,
        "walk_forward": {"folds": 2, "is_oos_ratio": 2},
        **fields,
    }
    return TrainingBody.model_validate(values)


@pytest.mark.parametrize(
    ("walk_forward", "field"),
    [
        ({"folds": 1}, "folds"),
        ({"folds": 21}, "folds"),
        ({"folds": "5"}, "folds"),
        ({"is_oos_ratio": 0}, "is_oos_ratio"),
        ({"is_oos_ratio": 21}, "is_oos_ratio"),
        ({"mode": "expanding"}, "mode"),
        ({"extra": 1}, "extra"),
    ],
)
def test_walk_forward_fields_out_of_range_are_named(
    walk_forward: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        body(walk_forward=walk_forward)
    assert [e["loc"][:2] for e in caught.value.errors()] == [("walk_forward", field)]


def test_the_defaults_are_the_specs_and_reach_the_request() -> None:
    request = body(walk_forward={}).to_request("job_1")
    assert request.walk_forward is not None
    assert request.walk_forward.model_dump() == {"folds": 5, "mode": "rolling", "is_oos_ratio": 4}
    assert request.total_trials == 60
    assert body(walk_forward=None).to_request("job_2").total_trials == 10


def test_a_layout_the_window_holds_passes() -> None:
    assert walk_forward_problem(body(), coverage(6000)) is None
    assert walk_forward_problem(body(walk_forward=None, lookback_candles=3), coverage(6000)) is None


def test_test_spans_under_two_bars_name_walk_forward_folds() -> None:
    problem = walk_forward_problem(
        body(lookback_candles=43, walk_forward={"folds": 20, "is_oos_ratio": 2}), coverage(6000)
    )
    assert problem is not None
    assert problem.status_code == 422
    assert [e["field"] for e in problem.errors] == ["walk_forward.folds"]
    # 44 bars: 20 + 2 spans of 2 bars.
    assert (
        walk_forward_problem(
            body(lookback_candles=44, walk_forward={"folds": 20, "is_oos_ratio": 2}), coverage(6000)
        )
        is None
    )


def test_a_first_fold_without_room_for_its_warm_up_names_walk_forward_is_oos_ratio() -> None:
    # The window starts 100 bars into the dataset; fold 0 tests from bar 100 + 1450 < 2316.
    problem = walk_forward_problem(body(lookback_candles=2900), coverage(3000))
    assert problem is not None
    assert [e["field"] for e in problem.errors] == ["walk_forward.is_oos_ratio"]
    # A longer first training span gives it room: 100 + 2900 - 2*161 >= 2316.
    assert (
        walk_forward_problem(
            body(lookback_candles=2900, walk_forward={"folds": 2, "is_oos_ratio": 16}),
            coverage(3000),
        )
        is None
    )


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (FIRST_MS + 2500 * STEP, None),
        (FIRST_MS + 2500 * STEP + 1, FIRST_MS + 5000 * STEP),
        (FIRST_MS + 10 * STEP, FIRST_MS + 4000 * STEP - 1),
    ],
)
def test_a_range_windows_rows_are_those_the_trainer_cuts(start: int, end: int | None) -> None:
    rows = 6000
    flat = np.full(rows, 100.0)
    history = Candles.from_arrays(
        FIRST_MS + np.arange(rows, dtype=np.int64) * STEP,
        flat,
        flat,
        flat,
        flat,
        np.full(rows, 1.0),
        timeframe_seconds=300,
    )
    window = range_window(history, start, end, WARMUP)
    iso = {"start": start / 1000, "end": None if end is None else end / 1000}
    shaped = body(lookback_candles=None, **iso)
    assert window_rows(shaped, coverage(rows), WARMUP) == (
        window.traded_bars,
        window.trade_from,
    )


def test_a_range_over_a_dataset_with_gaps_is_left_to_the_trainer() -> None:
    shaped = body(lookback_candles=None, start=FIRST_MS / 1000 + 3000)
    assert window_rows(shaped, coverage(6000, gaps=3), WARMUP) is None
