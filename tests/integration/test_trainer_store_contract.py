"""The `JobStore` and `Bus` contract suites, each run against the real implementation
(PostgreSQL, NATS) and the in-memory one the unit tests use: what the fake promises, the real
one does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg

from tradepulse.common.bus import connect
from tradepulse.common.contracts.market import CoverageReply
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import TrialCompleted
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.trainer.nats_bus import NatsBus
from tradepulse.trainer.repository import TrainingRepository, init_connection

from ..unit.trainer_bus_contract import BusBackend, BusContract, memory_bus_backend
from ..unit.trainer_fakes import eventually
from ..unit.trainer_store_contract import Backend, StoreContract, memory_backend, trial
from .conftest import NATS_URL


@pytest.fixture
async def postgres_backend(database: str) -> AsyncIterator[Backend]:
    pool = await create_pool(database, init=init_connection)
    await apply_migrations(pool, "training", "tradepulse.trainer.migrations")

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


@pytest.fixture
async def nats_bus_backend(names: Names) -> AsyncIterator[BusBackend]:
    nc = await connect(NATS_URL, "test-bus-contract")
    js = nc.jetstream()
    heard: list[str] = []

    async def on_cancel(msg: Msg) -> None:
        heard.append(msg.subject.rsplit(".", 1)[-1])

    await nc.subscribe(names.cancel_broadcast("*"), cb=on_cancel)
    await nc.flush()

    async def stored_ids() -> list[str]:
        last = (await js.stream_info(names.events_stream)).state.last_seq
        ids = []
        for seq in range(1, last + 1):
            msg = await js.get_msg(names.events_stream, seq)
            if (msg.subject or "").startswith(f"{names.prefix}.evt.training.job_"):
                ids.append((msg.headers or {})["Nats-Msg-Id"])
        return ids

    async def serve(reply: CoverageReply) -> None:
        async def respond(msg: Msg) -> None:
            await msg.respond(reply.to_bytes())

        await nc.subscribe(names.coverage, cb=respond)
        await nc.flush()

    try:
        bus = NatsBus(nc, js, names, coverage_wait=0.2)
        yield BusBackend(bus, stored_ids, serve, lambda: heard)
    finally:
        await nc.close()


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.integration)])
def bus_backend(request: pytest.FixtureRequest) -> BusBackend:
    if request.param == "memory":
        return memory_bus_backend()
    nats: BusBackend = request.getfixturevalue("nats_bus_backend")
    return nats


class TestBusContract(BusContract):
    pass


@pytest.mark.integration
async def test_a_holder_hears_a_trial_announced_alone_by_an_earlier_version(
    nats_bus_backend: BusBackend, names: Names
) -> None:
    """Replicas of an earlier version announce each TrialCompleted alone on the subject; a
    holder of this version, which announces a work item's trials together, reads both."""
    bus = nats_bus_backend.bus
    assert isinstance(bus, NatsBus)
    heard: list[TrialCompleted] = []
    await bus.subscribe_trials("job-a", heard.append)
    alone = trial("job-a", 7, 1.5)
    await bus.nc.publish(names.trial_completed("job-a"), alone.to_bytes())
    await bus.announce_trials([trial("job-a", 8, 2.5)])
    await eventually(lambda: len(heard) == 2)
    assert heard == [alone, trial("job-a", 8, 2.5)]
