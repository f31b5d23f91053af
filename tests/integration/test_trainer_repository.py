"""The trainer's job leases, cancellation, stored block sums, validation reports and
ensembles against the real PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tradepulse.common.contracts.training import TrainingRequested, TrialCompleted
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.trainer.repository import TrainingRepository, init_connection

from .flows import training_request


@pytest.fixture
async def repo(database: str) -> AsyncIterator[TrainingRepository]:
    pool = await create_pool(database, init=init_connection)
    await apply_migrations(pool, "training")
    try:
        yield TrainingRepository(pool)
    finally:
        await pool.close()


async def expire(repo: TrainingRepository, job_id: str) -> None:
    await repo.pool.execute(
        "UPDATE training.jobs SET lease_until = now() - interval '1 second' WHERE job_id = $1",
        job_id,
    )


async def test_a_lease_is_held_until_it_runs_out_or_is_released(repo: TrainingRepository) -> None:
    job = training_request()
    await repo.create_job(job)
    assert await repo.take_job(job.job_id, "trainer-1", 15)
    assert not await repo.take_job(job.job_id, "trainer-2", 15)
    assert await repo.held_by_another(job.job_id, "trainer-2")
    assert not await repo.held_by_another(job.job_id, "trainer-1")

    await expire(repo, job.job_id)
    assert not await repo.held_by_another(job.job_id, "trainer-2"), "a dead holder holds nothing"
    assert await repo.take_job(job.job_id, "trainer-2", 15)

    await repo.release_lease(job.job_id, "trainer-1")  # not the holder: changes nothing
    assert await repo.held_by_another(job.job_id, "trainer-1")
    await repo.release_lease(job.job_id, "trainer-2")  # shutting down
    assert not await repo.held_by_another(job.job_id, "trainer-1")
    assert await repo.take_job(job.job_id, "trainer-1", 15), "taken over at once"


async def set_running(repo: TrainingRepository, job_id: str) -> None:
    await repo.pool.execute("UPDATE training.jobs SET status = 'running' WHERE job_id = $1", job_id)


async def test_cancel_ends_a_job_no_live_replica_holds_at_once(repo: TrainingRepository) -> None:
    queued = training_request()
    await repo.create_job(queued)
    row = await repo.request_cancel(queued.job_id)
    assert row is not None
    assert row["status"] == "cancelled"

    held = training_request()
    await repo.create_job(held)
    await set_running(repo, held.job_id)
    assert await repo.take_job(held.job_id, "trainer-1", 15)
    row = await repo.request_cancel(held.job_id)
    assert row is not None
    assert row["status"] == "running", "its holder stops it and ends it"
    assert await repo.cancel_requested(held.job_id)

    orphan = training_request()
    await repo.create_job(orphan)
    await set_running(repo, orphan.job_id)
    assert await repo.take_job(orphan.job_id, "trainer-1", 15)
    await expire(repo, orphan.job_id)
    row = await repo.request_cancel(orphan.job_id)
    assert row is not None
    assert row["status"] == "cancelled", "no holder is alive to stop it"
    assert not await repo.take_job(orphan.job_id, "trainer-2", 15), "an ended job is not taken"

    assert await repo.request_cancel("job-nope") is None


def trial(job_id: str, number: int, sharpe: float | None, sums: list[float] | None) -> Any:
    metrics: dict[str, Any] = {} if sharpe is None and sums is None else {"sharpe_ratio": sharpe}
    return (
        TrialCompleted(
            message_id=f"{job_id}.trial.{number}.done",
            job_id=job_id,
            number=number,
            params={"x": number},
            state="complete" if sharpe else "failed",
            value=sharpe,
            metrics=metrics,
            fingerprint="",
            duration_ms=0.0,
            replica="r",
            block_sums=sums,
        ),
        {},
    )


async def test_evaluated_trials_keep_their_sharpes_and_block_sums_bit_for_bit(
    repo: TrainingRepository,
) -> None:
    job = training_request()
    await repo.create_job(job)
    awkward = [-0.0, 5e-324, 1 / 3, 1e16]
    await repo.insert_trials(
        [
            trial(job.job_id, 2, 0.1 + 0.2, awkward),
            trial(job.job_id, 0, 0.0, [0.0] * 4),  # never traded: a Sharpe of exactly 0
            trial(job.job_id, 1, None, None),  # its evaluation crashed: not evaluated
            trial(job.job_id, 3, -1 / 7, [1.5, -2.5, 0.25, 0.125]),
        ]
    )
    got = await repo.evaluated_trials(job.job_id)
    assert [(t.number, t.sharpe_ratio) for t in got] == [(0, 0.0), (2, 0.1 + 0.2), (3, -1 / 7)]
    assert got[1].block_sums == awkward
    assert math.copysign(1.0, got[1].block_sums[0]) == -1.0, "-0.0 keeps its sign"


async def test_the_report_is_stored_only_while_the_job_runs(repo: TrainingRepository) -> None:
    job = training_request()
    await repo.create_job(job)
    report = {"n_trials": 3, "dsr": 0.25}
    await repo.store_validation(job.job_id, report)
    assert (await repo.get_job(job.job_id))["validation"] is None  # type: ignore[index]
    await set_running(repo, job.job_id)
    await repo.store_validation(job.job_id, report)
    await repo.finish(job.job_id, "completed")
    await repo.store_validation(job.job_id, {"n_trials": 9})
    assert (await repo.get_job(job.job_id))["validation"] == report  # type: ignore[index]


async def test_an_ensembles_jobs_come_in_seed_order_with_their_best_params(
    repo: TrainingRepository,
) -> None:
    jobs = [training_request(seed=seed, ensemble_id="ens_a", ensemble_size=3) for seed in (9, 1, 5)]
    for job in jobs:
        await repo.create_job(job)
    await repo.create_job(training_request(seed=2))  # not of the ensemble
    await repo.insert_trials([trial(jobs[1].job_id, 0, 1.25, [0.0] * 32)])
    await repo.update_progress(
        jobs[1].job_id, trials_done=1, progress=100.0, best_trial=0, best_value=1.25
    )
    rows = await repo.ensemble_jobs("ens_a")
    assert [TrainingRequested.model_validate(r["request"]).seed for r in rows] == [1, 5, 9]
    assert [r["best_params"] for r in rows] == [None, None, None]
    await set_running(repo, jobs[1].job_id)
    await repo.update_progress(
        jobs[1].job_id, trials_done=1, progress=100.0, best_trial=0, best_value=1.25
    )
    rows = await repo.ensemble_jobs("ens_a")
    assert [(r["best_value"], r["best_params"]) for r in rows] == [
        (1.25, {"x": 0}),
        (None, None),
        (None, None),
    ]
    assert await repo.ensemble_jobs("ens_b") == []
