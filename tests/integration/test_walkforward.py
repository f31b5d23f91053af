"""Walk-forward jobs over NATS with the real ingest, trainer and registry processes.

One request (2 folds and the final optimization, TPE, 30 trials each, on 6,000 bars) run with
1 trainer, with 3, and with 3 again whose job holder is killed mid-fold (the same 3 replicas,
as starting a system costs more than the job): the trials of every fold,
the walk-forward report, the configuration and its gates are the same each time. A cancelled
walk-forward job leaves no fold running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.bus import wait_drained
from tradepulse.common.contracts.training import CancelJob, CancelReply, TrainingRequested

from .conftest import Env
from .flows import Client, excerpt, outcome, running_system, training_request

pytestmark = pytest.mark.usefixtures("quick_redelivery")

N = 30


def request(**fields: Any) -> TrainingRequested:
    values: dict[str, Any] = {
        "lookback_candles": 6000,
        "optimizer": "bayesian",
        "n_iterations": N,
        "walk_forward": {"folds": 2, "is_oos_ratio": 2},
        **fields,
    }
    return training_request(**values)


async def test_one_three_trainers_and_a_killed_holder_give_the_same_walk_forward(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 10_000, tmp_path / "btc.csv")
    outcomes: dict[str, Any] = {}
    for trainers, labels in ((1, ("one",)), (3, ("three", "killed"))):
        async with (
            running_system(
                tmp_path,
                env.names,
                trainers=trainers,
                nats_url=env.nats_url,
                database_url=env.database_url,
            ) as system,
            Client.connect(env.nats_url, env.names) as client,
        ):
            for label in labels:
                if label == "one":
                    await client.ingest_file(data)
                job = request()
                await client.submit(job)
                if label == "killed":
                    await client.wait_trials_done(job.job_id, N)
                    view = await client.job(job.job_id)
                    assert view is not None
                    assert view.status == "running", "the holder must die mid-job"
                    assert view.holder is not None
                    system.kill(view.holder)
                done = await client.wait_job(job.job_id, within=240)
                assert done.status == "completed", done.error
                assert (done.trials_done, done.n_iterations, done.progress) == (
                    3 * N,
                    3 * N,
                    100.0,
                )
                trials = await client.trials(job.job_id)
                config = await client.config_for_job(job.job_id, within=60)
                if label == "three":
                    assert len({t.replica for t in trials}) >= 2, "3 replicas share the folds"
                outcomes[label] = (done, outcome(trials), config)

    one, three, killed = (outcomes[k] for k in ("one", "three", "killed"))
    report = one[0].walk_forward
    assert report is not None
    assert [f.fold for f in report.fold_results] == [0, 1]
    assert report.final.fold == 2
    assert len(one[1]) == 3 * N
    for other in (three, killed):
        assert other[1] == one[1], "the same trials in every fold"
        assert other[0].walk_forward == report
        assert other[0].validation == one[0].validation
        config, first = other[2], one[2]
        assert (config.params, config.fingerprint, config.metrics, config.status) == (
            first.params,
            first.fingerprint,
            first.metrics,
            first.status,
        )
        assert config.walk_forward == first.walk_forward == report
        assert config.gates == first.gates
    assert one[2].gates is not None
    assert [g.name for g in one[2].gates] == [
        "oos_total_trades",
        "oos_sharpe_ratio",
        "oos_psr",
        "wfe",
        "pbo",
        "dsr",
    ]
    assert one[0].best_trial == report.final.best_trial
    assert one[0].best_trial is not None
    assert one[0].best_trial // N == 2, "the configuration is the final optimization's best"


async def test_a_cancelled_walk_forward_job_leaves_no_fold_running(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 10_000, tmp_path / "btc.csv")
    async with (
        running_system(
            tmp_path, env.names, trainers=2, nats_url=env.nats_url, database_url=env.database_url
        ),
        Client.connect(env.nats_url, env.names) as client,
    ):
        await client.ingest_file(data)
        job = request(optimizer="random", n_iterations=20_000, batch_size=16)
        await client.submit(job)
        await client.wait_trials_done(job.job_id, 96)
        reply = await client.nc.request(
            client.names.cancel_job, CancelJob(job_id=job.job_id).to_bytes(), timeout=5
        )
        assert CancelReply.from_bytes(reply.data).found
        view = await client.wait_job(job.job_id, within=10)
        assert view.status == "cancelled"
        n = client.names
        await wait_drained(client.js, [(n.trials_stream, n.trainer_trials_durable)])
        trials = await client.trials(job.job_id)
        folds = {t.number // job.n_iterations for t in trials}
        assert folds == {0, 1, 2}, "every fold had started"
        await wait_drained(client.js, [(n.trials_stream, n.trainer_trials_durable)])
        # Nothing is stored once the job is cancelled, and beyond the trials it counted, each
        # of its 3 optimizations had at most 2 batches of 16 in flight when it stopped.
        assert len(await client.trials(job.job_id)) == len(trials)
        assert len(trials) <= view.trials_done + 3 * 2 * 16
