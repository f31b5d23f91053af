"""One `JobStore` contract suite, run against the PostgreSQL repository and the in-memory
store the unit tests use: what the fake promises, PostgreSQL does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.trainer.repository import TrainingRepository, init_connection

from ..unit.trainer_store_contract import Backend, StoreContract, memory_backend


@pytest.fixture
async def postgres_backend(database: str) -> AsyncIterator[Backend]:
    pool = await create_pool(database, init=init_connection)
    await apply_migrations(pool, "training")

    async def expire(job_id: str) -> None:
        await pool.execute(
            "UPDATE training.jobs SET lease_until = now() - interval '1 second' WHERE job_id = $1",
            job_id,
        )

    try:
        # Each statement is its own transaction, so now() differs between two writes.
        yield Backend(store=TrainingRepository(pool), expire=expire, tick=lambda: None)
    finally:
        await pool.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return memory_backend()
    postgres: Backend = request.getfixturevalue("postgres_backend")
    return postgres


class TestJobStoreContract(StoreContract):
    pass
