"""The trainer's side of the overfitting statistics: block sums per trial, the job report
assembled from stored trials, and a seed ensemble's view."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradepulse.common.contracts.training import JobStatus, TrainingRequested
from tradepulse.quant import LiquiditySweep, last_window, load_candles, run_backtest
from tradepulse.quant.metrics import periods_per_year
from tradepulse.quant.validation import EvaluatedTrial as ReportTrial
from tradepulse.quant.validation import block_sums, result_returns, validation_report
from tradepulse.trainer.ports import EnsembleJob, EvaluatedTrial
from tradepulse.trainer.validation import assemble_report, ensemble_view, trial_block_sums

PPY = periods_per_year(300)


def backtests(path: Path, count: int) -> list[Any]:
    """`count` backtests of seeded random parameters on the shared BTC 5m excerpt."""
    rng = np.random.default_rng(7)
    strategy = LiquiditySweep()
    window = last_window(load_candles(path), 5000, strategy.warmup_bars(300))
    prepared = strategy.prepare(window.candles)
    results = []
    for _ in range(count):
        params: dict[str, float | int] = {}
        for p in strategy.space:
            params[p.name] = (
                int(rng.integers(int(p.low), int(p.high) + 1))
                if p.kind == "int"
                else float(rng.uniform(p.low, p.high))
            )
        results.append(
            run_backtest(
                window.candles, strategy, params, trade_from=window.trade_from, prepared=prepared
            )
        )
    return results


@pytest.fixture(scope="module")
def results(candles_excerpt: Path) -> list[Any]:
    return backtests(candles_excerpt, 12)


def stored(results: list[Any], blocks: int) -> list[EvaluatedTrial]:
    return [
        EvaluatedTrial(k, float(r.metrics["sharpe_ratio"]), trial_block_sums(r, blocks))
        for k, r in enumerate(results)
    ]


def test_block_sums_are_s1_then_s2_of_the_trials_returns(results: list[Any]) -> None:
    for result in results:
        sums = trial_block_sums(result, 8)
        assert sums is not None
        assert len(sums) == 16
        s1, s2 = block_sums(result_returns(result), 8)
        np.testing.assert_allclose(sums[:8], s1, rtol=1e-12, atol=1e-18)
        np.testing.assert_allclose(sums[8:], s2, rtol=1e-12, atol=1e-18)


def test_a_trial_with_a_null_sharpe_carries_no_block_sums(results: list[Any]) -> None:
    result = results[0]
    nulled = type(result)(
        trade_ints=result.trade_ints,
        trade_floats=result.trade_floats,
        open_time=result.open_time,
        first_row=result.first_row,
        equity=result.equity,
        metrics={**result.metrics, "sharpe_ratio": None},
        ambiguous_exits=0,
    )
    assert trial_block_sums(nulled, 16) is None


def test_the_report_uses_the_stored_sharpes_per_bar_and_block_sums(results: list[Any]) -> None:
    trials = stored(results, 16)
    best = max(range(len(results)), key=lambda k: (trials[k].sharpe_ratio, -k))
    returns = result_returns(results[best])
    report = assemble_report(trials, best, returns, ppy=PPY, blocks=16)
    expected = validation_report(
        [
            ReportTrial(
                t.number,
                t.sharpe_ratio / math.sqrt(PPY),
                (t.block_sums or [])[:16],
                (t.block_sums or [])[16:],
            )
            for t in trials
        ],
        best,
        returns,
        ppy=PPY,
        blocks=16,
    )
    assert report.model_dump() == expected
    assert report.n_trials == len(results)
    assert report.sharpe_variance is not None
    assert report.sharpe_variance > 0
    assert report.selected is not None
    assert report.selected.trial == best
    assert report.selected.sharpe_per_bar == trials[best].sharpe_ratio / math.sqrt(PPY)
    assert report.selected.returns == len(returns)
    assert report.pbo is not None
    assert report.pbo.sets == 12870
    assert sum(report.pbo.logit_histogram) == 12870


def test_the_report_does_not_depend_on_the_order_trials_are_read(results: list[Any]) -> None:
    trials = stored(results, 4)
    returns = result_returns(results[3])
    forward = assemble_report(trials, 3, returns, ppy=PPY, blocks=4)
    backward = assemble_report(trials[::-1], 3, returns, ppy=PPY, blocks=4)
    assert forward == backward


def test_missing_block_sums_null_the_pbo_but_not_the_deflated_sharpe(results: list[Any]) -> None:
    trials = stored(results, 16)
    returns = result_returns(results[0])
    full = assemble_report(trials, 0, returns, ppy=PPY, blocks=16)
    trials[5] = EvaluatedTrial(5, trials[5].sharpe_ratio, None)
    partial = assemble_report(trials, 0, returns, ppy=PPY, blocks=16)
    assert partial.pbo is None
    assert full.pbo is not None
    assert partial.dsr == full.dsr
    assert partial.psr == full.psr
    assert partial.sharpe_variance == full.sharpe_variance


def test_one_evaluated_trial_has_no_variance_and_no_pbo(results: list[Any]) -> None:
    trials = stored(results[:1], 16)
    report = assemble_report(trials, 0, result_returns(results[0]), ppy=PPY, blocks=16)
    assert report.n_trials == 1
    assert report.sharpe_variance is None
    assert report.expected_max_sharpe == 0.0
    assert report.pbo is None
    assert report.dsr == report.psr


def test_a_selected_trial_without_a_sharpe_nulls_the_statistics(results: list[Any]) -> None:
    trials = stored(results, 16)
    without = [t for t in trials if t.number != 4]
    report = assemble_report(without, 4, result_returns(results[4]), ppy=PPY, blocks=16)
    assert report.n_trials == len(results) - 1
    assert (report.selected, report.psr, report.dsr, report.pbo) == (None, None, None, None)


def row(job_id: str, seed: int, status: JobStatus, value: float | None, params: Any) -> EnsembleJob:
    request = {
        "job_id": job_id,
        "dataset": {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "5m"},
        "lookback_candles": 1000,
        "n_iterations": 10,
        "seed": seed,
        "ensemble_id": "ens_1",
        "ensemble_size": 3,
        "max_dispersion": 0.2,
    }
    return EnsembleJob(
        job_id=job_id,
        request=TrainingRequested.model_validate(request),
        status=status,
        best_value=value,
        best_trial=None if value is None else 0,
        best_params=params,
    )


def test_an_ensemble_reports_convergence_only_once_every_seed_ended() -> None:
    space = LiquiditySweep().space
    a = {p.name: p.low for p in space}
    b = {p.name: p.high for p in space}
    running = [row("j1", 1, "completed", 1.0, a), row("j2", 2, "running", None, None)]
    view = ensemble_view("ens_1", running)
    assert view is not None
    assert (view.size, view.ended, view.convergence) == (3, False, None)
    # Two of three recorded and ended is not the end: the third may still be queued.
    ended_two = [row("j1", 1, "completed", 1.0, a), row("j2", 2, "failed", None, None)]
    partial = ensemble_view("ens_1", ended_two)
    assert partial is not None
    assert partial.ended is False
    done = [*ended_two, row("j3", 3, "completed", 3.0, b)]
    final = ensemble_view("ens_1", done)
    assert final is not None
    assert final.ended
    assert final.convergence is not None
    assert final.convergence.completed == 2
    assert final.convergence.objective.mean == 2.0
    assert final.convergence.objective.std == pytest.approx(math.sqrt(2.0))
    # Two seeds at opposite ends of every range: std 0.5 of the width, far from converged.
    assert all(d == pytest.approx(0.5) for d in final.convergence.dispersion.values())
    assert final.convergence.converged is False
    assert final.max_dispersion == 0.2
    assert ensemble_view("ens_1", []) is None
