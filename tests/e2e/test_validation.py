"""The overfitting statistics and seed ensembles end to end, over HTTP: the report a job and
its configuration carry agrees with the trials the API lists and with the core's own
backtest of the selected trial; ensembles report convergence; bad ensembles change nothing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.flows import excerpt
from tests.support.polling import wait_until
from tradepulse.quant import BacktestSettings, get_strategy, last_window, load_candles, run_backtest
from tradepulse.quant.metrics import periods_per_year
from tradepulse.quant.validation import deflated_sharpe, result_returns

from .conftest import SharedSystem, all_trials, wait_job
from .test_api import config_of
from .test_bad_requests import jetstream_counts

ENSEMBLE = "/api/v2/training/ensemble"


async def wait_ensemble(client: httpx.AsyncClient, ensemble_id: str) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        reply = await client.get(f"{ENSEMBLE}/{ensemble_id}")
        assert reply.status_code == 200, reply.text
        view: dict[str, Any] = reply.json()
        return view

    return await wait_until(
        poll,
        within=120,
        message=f"ensemble {ensemble_id} to end",
        interval=0.2,
        until=lambda view: view["status"] == "ended",
    )


def selected_returns(data: Path, job: dict[str, Any], params: dict[str, Any]) -> Any:
    """The selected trial's backtest, run by the core on the uploaded file (the job's window:
    its last `lookback_candles` candles, with the strategy's warm-up before them)."""
    strategy = get_strategy(job["strategy"])
    candles = load_candles(data)
    window = last_window(
        candles, job["lookback_candles"], strategy.warmup_bars(candles.timeframe_seconds)
    )
    result = run_backtest(
        window.candles,
        strategy,
        params,
        BacktestSettings(**job["settings"]),
        regime=job["regime"],
        trade_from=window.trade_from,
    )
    return result, result_returns(result)


async def test_the_report_agrees_with_the_listed_trials_and_the_core(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 6_000, tmp_path / "btc_5m.csv")
    async with shared_system.gateway.client() as client:
        await shared_system.upload(client, data)
        payload = shared_system.payload(
            regime="any", n_iterations=60, lookback_candles=4_000, min_trades=3, pbo_blocks=8
        )
        reply = await client.post("/api/v2/training/start", json=payload)
        assert reply.status_code == 202, reply.text
        job = await wait_job(client, reply.json()["job_id"])
        assert job["status"] == "completed", job["error"]
        report = job["validation"]
        assert report is not None
        trials = await all_trials(client, job["job_id"])
        config = await config_of(client, job["job_id"])

    # N: every trial whose Sharpe is not null, those below min_trades included.
    evaluated = [t for t in trials if t["metrics"].get("sharpe_ratio") is not None]
    assert report["n_trials"] == len(evaluated)
    assert any(t["state"] == "failed" for t in evaluated), "expected trials below min_trades"
    selected = report["selected"]
    assert selected["trial"] == job["best"]["trial"]
    ppy = periods_per_year(300)
    best = next(t for t in trials if t["number"] == selected["trial"])
    assert selected["sharpe_per_bar"] == best["metrics"]["sharpe_ratio"] / math.sqrt(ppy)

    # The selected trial's own backtest, by the core, and the DSR recomputed from the listed
    # trials' Sharpes: the same figures.
    result, returns = selected_returns(data, job, best["params"])
    assert result.fingerprint == best["fingerprint"]
    assert selected["returns"] == len(returns)
    sharpes = [t["metrics"]["sharpe_ratio"] / math.sqrt(ppy) for t in evaluated]
    again = deflated_sharpe(
        returns, sharpes, sharpe_per_bar_override=best["metrics"]["sharpe_ratio"] / math.sqrt(ppy)
    )
    assert report["dsr"] == again.dsr
    assert report["psr"] == again.psr
    assert report["sharpe_variance"] == again.sharpe_variance
    assert report["expected_max_sharpe_per_bar"] == again.expected_max_sharpe_per_bar
    assert report["expected_max_sharpe"] == pytest.approx(
        again.expected_max_sharpe_per_bar * math.sqrt(ppy), rel=1e-12
    )
    # Without the trial's own Sharpe, from its returns alone: equal but for the last bits.
    assert report["dsr"] == pytest.approx(deflated_sharpe(returns, sharpes).dsr, abs=1e-9)
    pbo = report["pbo"]
    assert pbo is not None
    assert (pbo["blocks"], pbo["sets"], sum(pbo["logit_histogram"])) == (8, 70, 70)
    assert list(pbo["logit_quantiles"]) == ["5", "25", "50", "75", "95"]
    # The configuration carries the job's report.
    assert config["validation"] == report


async def test_configs_filter_and_sort_by_dsr_and_pbo_and_ensembles_converge_or_not(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 4_000, tmp_path / "btc_5m.csv")
    env = shared_system.env
    market = {"symbol": shared_system.symbol}
    unseeded = {k: v for k, v in shared_system.payload().items() if k != "seed"}
    async with shared_system.gateway.client() as client:
        await shared_system.upload(client, data)
        before = await jetstream_counts(env.nats_url, env.names)
        bad = [
            ({**unseeded, "seeds": [1]}, "seeds"),
            (shared_system.payload(n_seeds=1), "n_seeds"),
            ({**unseeded, "seeds": [3, 4, 3]}, "body"),
            ({**unseeded, "seeds": list(range(101))}, "seeds"),
            (shared_system.payload(n_seeds=101), "n_seeds"),
            ({**unseeded, "seeds": [1, 2], "max_dispersion": 0}, "max_dispersion"),
            ({**unseeded, "seeds": [1, 2], "max_dispersion": 1.01}, "max_dispersion"),
            ({**unseeded, "seeds": [1, 2], "pbo_blocks": 5}, "pbo_blocks"),
        ]
        for body, field in bad:
            reply = await client.post(ENSEMBLE, json=body)
            assert reply.status_code == 422, (body, reply.text)
            assert field in [e["field"] for e in reply.json()["errors"]], reply.text
        for blocks in (0, 3, 18):
            reply = await client.post(
                "/api/v2/training/start", json=shared_system.payload(pbo_blocks=blocks)
            )
            assert reply.status_code == 422, reply.text
            assert [e["field"] for e in reply.json()["errors"]] == ["pbo_blocks"]
        assert await jetstream_counts(env.nats_url, env.names) == before, "a 422 published"
        unknown = await client.get(f"{ENSEMBLE}/ens_0123456789abcdef")
        assert unknown.status_code == 404, unknown.text

        reply = await client.post(
            ENSEMBLE,
            json={**unseeded, "seeds": [42, 123, 456], "n_iterations": 24, "max_dispersion": 0.5},
        )
        assert reply.status_code == 202, reply.text
        accepted = reply.json()
        assert accepted["seeds"] == [42, 123, 456]
        ensemble_id = accepted["ensemble_id"]
        first = await client.get(f"{ENSEMBLE}/{ensemble_id}")
        assert first.status_code == 200, first.text
        assert sorted(j["job_id"] for j in first.json()["jobs"]) == sorted(accepted["job_ids"])
        view = await wait_ensemble(client, ensemble_id)
        assert [j["seed"] for j in view["jobs"]] == [42, 123, 456]
        convergence = view["convergence"]
        assert convergence is not None
        assert convergence["completed"] == 3
        assert convergence["max_dispersion"] == 0.5
        space = get_strategy("LIQUIDITY_SWEEP").space
        assert set(convergence["dispersion"]) == {p.name for p in space}
        values = []
        for member in view["jobs"]:
            job = (await client.get(f"/api/v2/training/job/{member['job_id']}")).json()
            assert job["status"] == member["status"] == "completed"
            assert (member["best_value"], member["params"]) == (
                job["best"]["value"],
                job["best"]["params"],
            )
            values.append(job["best"]["value"])
        assert convergence["objective"]["mean"] == pytest.approx(sum(values) / 3)
        assert convergence["objective"]["max"] == max(values)
        expected = all(d is not None and d <= 0.5 for d in convergence["dispersion"].values())
        assert convergence["converged"] == expected

        # The three configurations: filtered and sorted by their DSR and PBO.
        configs = [await config_of(client, j) for j in accepted["job_ids"]]
        dsrs = {c["config_id"]: c["validation"]["dsr"] for c in configs}
        assert all(d is not None for d in dsrs.values()), dsrs
        listed = (await client.get("/api/v2/configs", params={**market, "sort": "dsr"})).json()
        ranked = [c["config_id"] for c in listed["items"]]
        assert ranked == sorted(dsrs, key=lambda c: (-dsrs[c], c))
        low = min(dsrs.values())
        above = (
            await client.get("/api/v2/configs", params={**market, "min_dsr": low, "max_pbo": 1})
        ).json()
        assert {c["config_id"] for c in above["items"]} == set(dsrs)
        none = (await client.get("/api/v2/configs", params={**market, "max_pbo": -0.0})).json()
        pbos = [c["validation"]["pbo"]["pbo"] for c in configs]
        assert none["total"] == sum(1 for p in pbos if p <= 0.0)
        bad_filter = await client.get("/api/v2/configs", params={"min_dsr": 1.5})
        assert bad_filter.status_code == 422, bad_filter.text
