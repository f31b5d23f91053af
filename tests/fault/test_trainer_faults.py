"""Faults with real processes: a killed job holder, duplicated messages, PostgreSQL and NATS
restarting.

Each test runs the same request twice, once undisturbed and once with the fault, and
requires the same trials and the same configuration.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.support.bus import wait_drained
from tests.support.polling import wait_until
from tradepulse.common.bus import connect, publish
from tradepulse.common.contracts.training import (
    DataWindow,
    JobView,
    TrainingRequested,
    TrialSpec,
    TrialView,
    TrialWork,
)

from ..integration.conftest import Env, SharedWithCandles, SystemWithCandles
from ..integration.flows import Client, excerpt, outcome, running_system, training_request

pytestmark = pytest.mark.usefixtures("quick_redelivery")


def request(**overrides: object) -> TrainingRequested:
    """Long enough (160 TPE trials) for a fault to land mid-job."""
    fields: dict[str, object] = {
        "lookback_candles": 6000,
        "optimizer": "bayesian",
        "n_iterations": 160,
    }
    return training_request(**{**fields, **overrides})


def work_item(job: TrainingRequested, window: DataWindow, trial: TrialSpec) -> TrialWork:
    """A trial work item of `job`, as its holder would publish it, under a fresh message id."""
    return TrialWork(
        message_id=uuid.uuid4().hex,
        job_id=job.job_id,
        strategy=job.strategy,
        trials=[trial],
        window=window,
        regime=job.regime,
        settings=job.settings,
        objective=job.objective,
        min_trades=job.min_trades,
        pbo_blocks=job.pbo_blocks,
    )


async def undisturbed_then_hit(
    client: Client, data: Path, fault: Callable[[JobView], object], what: str
) -> None:
    """Run a request undisturbed, then again with `fault` applied once 40 of its trials are
    in: the second run must end with the same trials, configuration and validation report."""
    await client.ingest_file(data)
    calm = request()
    await client.submit(calm)
    undisturbed = await client.wait_job(calm.job_id)
    assert undisturbed.status == "completed"
    assert undisturbed.validation is not None

    hit = request()
    await client.submit(hit)
    await client.wait_trials_done(hit.job_id, 40)
    view = await client.job(hit.job_id)
    assert view is not None
    assert view.status == "running", f"the job must still be running when {what}"
    fault(view)
    done = await client.wait_job(hit.job_id, within=150)
    assert done.status == "completed", done.error
    assert done.trials_done == hit.n_iterations
    assert outcome(await client.trials(hit.job_id)) == outcome(await client.trials(calm.job_id))
    a = await client.config_for_job(calm.job_id)
    b = await client.config_for_job(hit.job_id, within=60)
    assert (a.params, a.fingerprint, a.metrics) == (b.params, b.fingerprint, b.metrics)
    assert done.validation == undisturbed.validation
    assert b.validation == a.validation == undisturbed.validation


async def test_killing_the_replica_holding_a_job_changes_nothing(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 10_000, tmp_path / "btc.csv")
    async with (
        running_system(
            tmp_path, env.names, trainers=2, nats_url=env.nats_url, database_url=env.database_url
        ) as system,
        Client.connect(env.nats_url, env.names) as client,
    ):

        def kill_holder(view: JobView) -> None:
            # Taken over by the other replica, or by the killed one's replacement (same name).
            assert view.holder is not None
            system.kill(view.holder)

        await undisturbed_then_hit(client, data, kill_holder, "its holder dies")


async def test_duplicated_messages_store_nothing_twice(
    shared_with_candles: SharedWithCandles,
) -> None:
    # Two trainers, which both may meet the duplicates; the worker's shared ones.
    async with shared_with_candles(rows=8_000) as running:
        client, env = running.client, running.env
        job = request(dataset=running.dataset, optimizer="random", n_iterations=48)
        # The same job twice as two distinct messages (not a JetStream duplicate): a client
        # retrying after a lost reply.
        await client.submit(job)
        await client.submit(job.model_copy(update={"message_id": uuid.uuid4().hex}))
        assert (await client.wait_job(job.job_id)).status == "completed"
        first = outcome(await client.trials(job.job_id))
        config = await client.config_for_job(job.job_id)

        # A trial work item delivered again after the job ended.
        view = await client.job(job.job_id)
        assert view is not None
        replay = work_item(job, config.window, TrialSpec(number=3, params=first[3][1]))
        await publish(client.js, client.names.trial_work, replay)
        await client.submit(job.model_copy(update={"message_id": uuid.uuid4().hex}))
        # Both duplicates handled: every consumer that could apply them has acked them all.
        n = client.names
        await wait_drained(
            client.js,
            [
                (n.trials_stream, n.trainer_trials_durable),
                (n.jobs_stream, n.trainer_intake_durable),
                (n.jobs_stream, n.trainer_jobs_durable),
                (n.events_stream, n.registry_jobs_durable),
            ],
        )

        assert outcome(await client.trials(job.job_id)) == first
        assert (await client.config_for_job(job.job_id)).config_id == config.config_id
        conn = await asyncpg.connect(env.database_url)
        try:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM registry.configs WHERE job_id = $1", job.job_id
                )
                == 1
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM registry.status_history h JOIN registry.configs c "
                    "USING (config_id) WHERE c.job_id = $1",
                    job.job_id,
                )
                == 1
            )
        finally:
            await conn.close()


async def test_a_job_resumed_with_every_trial_stored_completes_with_its_best(
    shared_with_candles: SharedWithCandles,
) -> None:
    """The holder died after the workers had stored every trial but before it told the last
    batch: the replica that takes the job over has nothing left to run, and must still record
    the best trial and the count before it completes the job."""
    async with shared_with_candles(rows=8_000) as running:
        client, env = running.client, running.env
        job = request(dataset=running.dataset, optimizer="random", n_iterations=48)
        await client.submit(job)
        done = await client.wait_job(job.job_id)
        assert done.status == "completed", done.error

        # The state a holder killed at that moment leaves behind.
        conn = await asyncpg.connect(env.database_url)
        try:
            await conn.execute(
                """UPDATE training.jobs SET status = 'running', progress = 50, trials_done = 24,
                       best_trial = NULL, best_value = NULL, finished_at = NULL, validation = NULL,
                       holder = 'trainer-dead', lease_until = now() - interval '1 second'
                   WHERE job_id = $1""",
                job.job_id,
            )
        finally:
            await conn.close()
        await client.submit(job.model_copy(update={"message_id": uuid.uuid4().hex}))

        view = await wait_until(
            lambda: client.job(job.job_id),
            within=60,
            interval=0.2,
            message="the job taken over and ended with its best trial",
            until=lambda v: v is not None and v.status != "running" and v.best_trial is not None,
        )
        assert view is not None
        assert view.status == "completed", view.error
        assert (view.best_trial, view.best_value) == (done.best_trial, done.best_value)
        assert (view.trials_done, view.progress) == (48, 100.0)
        assert done.validation is not None
        assert view.validation == done.validation
        assert view.holder in {"trainer-1", "trainer-2"}, "a live replica took it over"


async def test_a_work_item_that_crashes_its_evaluation_fails_its_trials_and_nothing_else(
    system_with_candles: SystemWithCandles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception the trainer does not expect (here an IndexError from a window outside the
    snapshot) must not end the replica's trial loop: the item is retried, then its trials are
    stored as failed with the reason, and the replica goes on with other work."""
    monkeypatch.setenv("TRAINER_TRIAL_MAX_DELIVER", "2")
    async with system_with_candles(rows=8_000, trainers=1) as running:
        client = running.client
        first = request(optimizer="random", n_iterations=16)
        await client.submit(first)
        assert (await client.wait_job(first.job_id)).status == "completed"
        config = await client.config_for_job(first.job_id)

        poisoned = work_item(
            first,
            config.window.model_copy(update={"begin": 5_000, "stop": 10}),
            TrialSpec(number=900, params=config.params),
        )
        await publish(client.js, client.names.trial_work, poisoned)

        async def trial_900() -> list[TrialView]:
            return [t for t in await client.trials(first.job_id) if t.number == 900]

        failed = await wait_until(
            trial_900, within=60, interval=0.3, message="the crashing item given up"
        )
        assert failed[0].state == "failed"
        # At least 2 deliveries: on a slow machine the first can outlast the ack wait and be
        # delivered once more meanwhile.
        given_up = re.match(
            r"gave up after (\d+) attempts: internal error in the trainer \(IndexError\)",
            failed[0].reason or "",
        )
        assert given_up, failed[0].reason
        assert int(given_up[1]) >= 2

        after = request(optimizer="random", n_iterations=16, seed=7)
        await client.submit(after)
        assert (await client.wait_job(after.job_id, within=60)).status == "completed"


async def test_postgresql_restarted_mid_job_the_job_completes_the_same(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 10_000, tmp_path / "btc.csv")
    # Its own PostgreSQL server (the supervisor's embedded one), so the restart hurts no
    # other test; NATS is the shared one.
    async with (
        running_system(
            tmp_path, env.names, trainers=2, nats_url=env.nats_url, database_url=None
        ) as system,
        Client.connect(env.nats_url, env.names) as client,
    ):
        await undisturbed_then_hit(
            client, data, lambda _: system.kill("postgres"), "PostgreSQL dies"
        )


async def test_nats_killed_mid_job_the_job_completes_the_same(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 10_000, tmp_path / "btc.csv")
    # Its own NATS server (the supervisor's embedded one, restarted on the same port with the
    # same JetStream store when it dies), so the kill hurts no other test.
    async with running_system(
        tmp_path, env.names, trainers=2, nats_url=None, database_url=env.database_url
    ) as system:
        async with Client.connect(system.nats_url, env.names) as client:
            await undisturbed_then_hit(client, data, lambda _: system.kill("nats"), "NATS dies")

        # Each service said that NATS was gone and that it was back, as a line each, rather
        # than nats-py's traceback for every reconnect attempt (two a second while NATS is
        # down). A client that reached the restarting server too early may say it twice.
        for service in ("ingest-1", "registry-1", "trainer-1", "trainer-2"):
            text = (system.logs_dir / f"{service}.log").read_text()
            lost = text.count('"event": "nats_disconnected"')
            back = text.count('"event": "nats_reconnected"')
            assert 1 <= lost <= 2, (service, lost)
            assert back == lost, (service, lost, back)
            assert "encountered error" not in text, service


async def test_a_trainer_stops_on_sigterm_even_when_its_database_is_gone(
    env: Env, tmp_path: Path
) -> None:
    log = (tmp_path / "trainer.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradepulse.trainer",
        env=env.as_environ(TP_REPLICA="trainer-x"),
        stdout=log,
        stderr=log,
    )
    nc = await connect(env.nats_url, "test")
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            try:
                await nc.request(env.names.ping("trainer"), b"", timeout=0.5)
                break
            except Exception:
                assert asyncio.get_running_loop().time() < deadline, "trainer never got ready"
        name = env.database_url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(env.database_url.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await nc.close()
        log.close()
