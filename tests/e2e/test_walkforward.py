"""Walk-forward jobs end to end, over HTTP: layouts the window cannot hold are a 422 naming
the field with nothing published; a job's report agrees with `tradepulse backtest` of each
fold's best over its span, and its stitched record with the folds' test backtests chained."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from tests.integration.flows import excerpt
from tradepulse.quant import BacktestSettings, get_strategy, load_candles, run_backtest
from tradepulse.quant.metrics import periods_per_year
from tradepulse.quant.walkforward import FoldTest, flat_fold, layout, stitch

from .conftest import SharedSystem, all_trials, wait_job
from .test_api import config_of
from .test_bad_requests import jetstream_counts

TRADEPULSE = Path(sys.executable).parent / "tradepulse"
N = 12


async def cli_backtest(data: Path, params: dict[str, Any], *argv: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        str(TRADEPULSE),
        "backtest",
        "--data",
        str(data),
        "--params",
        json.dumps(params),
        "--json",
        *argv,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    out: dict[str, Any] = json.loads(stdout)
    return out


def span_args(span: dict[str, Any]) -> list[str]:
    return ["--from-bar", str(span["first_bar"]), "--to-bar", str(span["last_bar"] + 1)]


async def test_a_walk_forward_job_over_http_agrees_with_the_cli_and_the_core(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 6_000, tmp_path / "btc_5m.csv")
    env = shared_system.env
    payload = shared_system.payload(
        regime="any",
        n_iterations=N,
        lookback_candles=3_000,
        walk_forward={"folds": 2, "is_oos_ratio": 2},
    )
    async with shared_system.gateway.client() as client:
        await shared_system.upload(client, data)
        before = await jetstream_counts(env.nats_url, env.names)
        refused: list[tuple[dict[str, Any], str]] = [
            ({"lookback_candles": 30, "walk_forward": {"folds": 20}}, "walk_forward.folds"),
            (
                {"lookback_candles": 5_990, "walk_forward": {"folds": 5, "is_oos_ratio": 1}},
                "walk_forward.is_oos_ratio",
            ),
            ({"walk_forward": {"folds": 1}}, "walk_forward.folds"),
        ]
        for change, field in refused:
            reply = await client.post("/api/v2/training/start", json={**payload, **change})
            assert reply.status_code == 422, reply.text
            assert [e["field"] for e in reply.json()["errors"]] == [field]
        assert await jetstream_counts(env.nats_url, env.names) == before, "nothing published"

        reply = await client.post("/api/v2/training/start", json=payload)
        assert reply.status_code == 202, reply.text
        job = await wait_job(client, reply.json()["job_id"])
        assert job["status"] == "completed", job["error"]
        assert (job["trials_done"], job["n_iterations"]) == (3 * N, 3 * N)
        report = job["walk_forward"]
        assert report is not None
        config = await config_of(client, job["job_id"])
        fold_one = await client.get(
            f"/api/v2/training/job/{job['job_id']}/trials", params={"fold": 1}
        )
        assert fold_one.status_code == 200, fold_one.text
        trials = await all_trials(client, job["job_id"])
        listed = await client.get(
            "/api/v2/configs", params={"status": config["status"], "symbol": shared_system.symbol}
        )
        assert listed.status_code == 200, listed.text

    assert config["walk_forward"] == report
    assert [g["name"] for g in config["gates"]] == [
        "oos_total_trades",
        "oos_sharpe_ratio",
        "oos_psr",
        "wfe",
        "pbo",
        "dsr",
    ]
    assert config["config_id"] in {c["config_id"] for c in listed.json()["items"]}
    assert [(t["number"], t["fold"]) for t in fold_one.json()["trials"]] == [
        (k, 1) for k in range(N, 2 * N)
    ]
    assert {t["fold"] for t in trials} == {0, 1, 2}
    assert report["final"]["best_trial"] == job["best"]["trial"]
    assert config["params"] == job["best"]["params"]

    # Each fold's train metrics: `tradepulse backtest` of its best over its span.
    for fold in report["fold_results"]:
        if fold["best_trial"] is None:
            continue
        cli = await cli_backtest(data, fold["params"], *span_args(fold["train"]))
        assert cli["metrics"] == fold["train_metrics"]
        best = next(t for t in trials if t["number"] == fold["best_trial"])
        assert cli["fingerprint"] == best["fingerprint"]
        # Its test: the same over the test span, from the carried capital.
        settings = json.dumps({"initial_capital": fold["initial_capital"]})
        test = await cli_backtest(
            data, fold["params"], *span_args(fold["test"]), "--settings", settings
        )
        assert test["metrics"] == fold["test_metrics"]
        assert len(test["trades"]) == fold["test_trades"]

    # The stitched record: the folds' test backtests chained, capital carried.
    history = load_candles(data)
    strategy = get_strategy("LIQUIDITY_SWEEP")
    warmup = strategy.warmup_bars(300)
    wf = layout(3_000, warmup, folds=2, is_oos_ratio=2)
    loaded = history.slice(len(history) - 3_000 - warmup)
    capital = BacktestSettings().initial_capital
    tests = []
    for i, fold in enumerate(report["fold_results"]):
        span = wf.test_span(i)
        assert fold["initial_capital"] == capital
        if fold["best_trial"] is None:
            tests.append(flat_fold(i, span, capital, "no usable trial", periods_per_year(300)))
        else:
            result = run_backtest(
                loaded.slice(span.start - warmup, span.stop),
                strategy,
                fold["params"],
                dataclasses.replace(BacktestSettings(), initial_capital=capital),
                trade_from=warmup,
            )
            tests.append(FoldTest(i, span, capital, result, None, result.metrics))
        capital = tests[-1].final_capital
        assert fold["final_capital"] == capital
    stitched = stitch(loaded, wf, tests, BacktestSettings().initial_capital)
    assert report["oos"]["metrics"] == stitched.metrics
    assert report["oos"]["fingerprint"] == stitched.fingerprint
    assert stitched.metrics["total_trades"] == sum(f["test_trades"] for f in report["fold_results"])
