"""The trainer's job leases and cancellation against the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.trainer.repository import TrainingRepository, init_connection

from .flows import training_request


@pytest.fixture
async def repo(database: str) -> AsyncIterator[TrainingRepository]:
    pool = await create_pool(database, init=init_connection)
    await apply_migrations(pool, "training", "tradepulse.trainer.migrations")
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
