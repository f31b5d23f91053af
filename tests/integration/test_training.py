"""Training driven over NATS with the real ingest, trainer and registry processes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.support.bus import wait_drained
from tradepulse.common.contracts.training import CancelJob, CancelReply

from .conftest import Env, SharedWithCandles, SystemWithCandles
from .flows import Client, excerpt, outcome, running_system
from .flows import training_request as request

TRADEPULSE = Path(sys.executable).parent / "tradepulse"


pytestmark = pytest.mark.usefixtures("quick_redelivery")


async def test_a_job_on_the_shared_btc_data_matches_the_cli_backtest(
    shared_with_candles: SharedWithCandles, shared_candles_path: Path
) -> None:
    async with shared_with_candles(rows=None) as running:
        client, ingested = running.client, running.ingested
        assert ingested.coverage.rows == 315_632
        job = request(
            dataset=running.dataset, n_iterations=24, lookback_candles=10_000, min_trades=5
        )
        await client.submit(job)
        view = await client.wait_job(job.job_id)
        assert view.status == "completed", view.error
        assert view.progress == 100.0
        config = await client.config_for_job(job.job_id)

    assert config.params == view.best_params
    assert config.window.content_hash == ingested.coverage.content_hash
    trades = config.metrics["total_trades"]
    assert isinstance(trades, int)
    assert config.status == ("CANDIDATE" if trades >= 30 else "DISCOVERY")
    cli = await asyncio.create_subprocess_exec(
        str(TRADEPULSE),
        "backtest",
        "--data",
        str(shared_candles_path),
        "--params",
        json.dumps(config.params),
        "--last",
        "10000",
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await cli.communicate()
    assert cli.returncode == 0
    backtest = json.loads(stdout)
    assert backtest["fingerprint"] == config.fingerprint
    assert backtest["metrics"] == config.metrics


async def test_same_seed_same_trials_other_seed_other_trials_any_replica_count(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 12_000, tmp_path / "btc.csv")
    runs: dict[str, list[tuple[object, ...]]] = {}
    configs = {}
    reports = {}
    # a, b and c on one trainer, one after the other (b after a in the same process: nothing a
    # left behind changes b); d on three fresh replicas, which must give a's trials.
    for trainers, jobs in ((1, (("a", 12345), ("b", 12345), ("c", 123))), (3, (("d", 12345),))):
        async with (
            running_system(
                tmp_path,
                env.names,
                trainers=trainers,
                nats_url=env.nats_url,
                database_url=env.database_url,
            ),
            Client.connect(env.nats_url, env.names) as client,
        ):
            for label, seed in jobs:
                if label == "a":
                    await client.ingest_file(data)
                job = request(optimizer="bayesian", n_iterations=32, seed=seed)
                await client.submit(job)
                view = await client.wait_job(job.job_id)
                assert view.status == "completed", view.error
                runs[label] = outcome(await client.trials(job.job_id))
                configs[label] = await client.config_for_job(job.job_id)
                reports[label] = view.validation
                if label == "d":
                    replicas = {t.replica for t in await client.trials(job.job_id)}
                    assert len(replicas) >= 2, f"3 replicas should share the trials: {replicas}"
                if label in ("a", "d"):
                    # The other optimizers, on 1 replica and on 3.
                    for optimizer in ("random", "grid", "cmaes"):
                        other = request(optimizer=optimizer, n_iterations=32, seed=seed)
                        await client.submit(other)
                        done = await client.wait_job(other.job_id)
                        assert done.status == "completed", (optimizer, done.error)
                        runs[f"{label}-{optimizer}"] = outcome(await client.trials(other.job_id))
    for optimizer in ("random", "grid", "cmaes"):
        assert runs[f"a-{optimizer}"] == runs[f"d-{optimizer}"], optimizer
    assert len(runs["a"]) == 32
    assert runs["a"] == runs["b"]
    assert runs["a"] == runs["d"], "3 replicas must give the trials of 1"
    assert runs["a"] != runs["c"]
    assert configs["a"].params == configs["b"].params == configs["d"].params
    assert configs["a"].fingerprint == configs["d"].fingerprint
    assert configs["a"].config_id != configs["b"].config_id
    # The overfitting statistics: the whole report, whatever the replica count, and the same
    # in the configuration as in the job.
    assert reports["a"] is not None
    assert reports["a"].n_trials == 32
    assert reports["a"] == reports["b"] == reports["d"], "3 replicas must give the report of 1"
    assert reports["a"] != reports["c"]
    assert configs["a"].validation == reports["a"]
    assert configs["d"].validation == reports["d"]


async def test_a_job_that_cannot_run_fails_with_a_reason(
    shared_with_candles: SharedWithCandles,
) -> None:
    async with shared_with_candles(rows=3_000) as running:
        client, dataset = running.client, running.dataset
        no_data = request(dataset={"exchange": "kraken", "symbol": "ETH/USD", "timeframe": "1h"})
        await client.submit(no_data)
        failed = await client.wait_job(no_data.job_id)
        assert failed.status == "failed"
        assert failed.error == "no candles for kraken ETH/USD 1h: ingest them first"

        too_long = request(dataset=dataset, lookback_candles=50_000)
        await client.submit(too_long)
        failed = await client.wait_job(too_long.job_id)
        assert failed.status == "failed"
        assert failed.error == (
            f"binance {dataset.symbol} 5m: asked for the last 50000 candles but the history has "
            "only 3000"
        )

        nothing = request(dataset=dataset, n_iterations=8, lookback_candles=2000, min_trades=10**6)
        await client.submit(nothing)
        failed = await client.wait_job(nothing.job_id)
        assert failed.status == "failed"
        assert "none of the 8 trials produced a usable sharpe_ratio" in (failed.error or "")
        assert len(await client.trials(nothing.job_id)) == 8


async def test_cancel_stops_a_running_job_within_a_second(
    shared_with_candles: SharedWithCandles,
) -> None:
    async with shared_with_candles(rows=8_000) as running:
        client = running.client
        job = request(dataset=running.dataset, n_iterations=100_000, batch_size=16)
        await client.submit(job)
        await client.wait_job(job.job_id, statuses=("running",))
        await client.wait_trials_done(job.job_id, 32)
        sent = asyncio.get_running_loop().time()
        reply = await client.nc.request(
            client.names.cancel_job, CancelJob(job_id=job.job_id).to_bytes(), timeout=5
        )
        assert CancelReply.from_bytes(reply.data).found
        view = await client.wait_job(job.job_id, within=5)
        took = asyncio.get_running_loop().time() - sent
        assert view.status == "cancelled"
        assert took < 1.5, f"cancel took {took:.2f} s"
        stored = len(await client.trials(job.job_id))
        # Once the trials queue is drained every item sent before the cancel has been either
        # dropped or stored: the count is final.
        n = client.names
        await wait_drained(client.js, [(n.trials_stream, n.trainer_trials_durable)])
        assert len(await client.trials(job.job_id)) <= stored + 16, "trials must stop"


async def test_a_submitted_job_is_queued_at_once_even_when_every_slot_is_busy(
    system_with_candles: SystemWithCandles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINER_MAX_JOBS", "1")
    async with system_with_candles(rows=8_000, trainers=1) as running:
        client = running.client
        busy = request(n_iterations=100_000, batch_size=16)
        await client.submit(busy)
        await client.wait_job(busy.job_id, statuses=("running",))
        waiting = request()
        await client.submit(waiting)
        view = await client.wait_job(waiting.job_id, statuses=("queued",), within=5)
        assert view.trials_done == 0
        await client.nc.request(
            client.names.cancel_job, CancelJob(job_id=busy.job_id).to_bytes(), timeout=5
        )
        done = await client.wait_job(waiting.job_id, within=60)
        assert done.status == "completed", done.error
