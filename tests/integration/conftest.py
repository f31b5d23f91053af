"""Fixtures for tests against the real NATS and PostgreSQL servers.

Each test gets its own NATS namespace (streams, subjects, buckets) and its own database, so
tests never see each other's messages or rows, and both are removed afterwards. Tests that
neither kill nor reconfigure a process may share one running system per pytest worker instead
(`shared_with_candles`): they keep apart by dataset, each under a symbol of its own.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncpg
import pytest

from tests.integration.flows import BTC, Client, excerpt, running_system
from tests.support.polling import wait_until
from tradepulse.cli.supervisor import System
from tradepulse.common.bus import connect, ensure_streams, stream_configs
from tradepulse.common.contracts.market import CandlesIngested, DatasetKey
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import CancelJob, JobsReply, ListJobs

NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
ADMIN_DSN = os.environ.get(
    "TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@dataclass(frozen=True)
class Env:
    """Where a test's services connect: pass `as_environ()` to service processes."""

    names: Names
    nats_url: str
    database_url: str

    def as_environ(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "NATS_URL": self.nats_url,
            "DATABASE_URL": self.database_url,
            "TP_NAMESPACE": self.names.prefix,
            "LOG_JSON": "1",
            **extra,
        }


@asynccontextmanager
async def new_database() -> AsyncIterator[str]:
    """A database of its own for the body, dropped afterwards."""
    name = f"tp_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _dsn_for(name)
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def new_names() -> AsyncIterator[Names]:
    """A NATS namespace of its own (its streams created) for the body, removed afterwards."""
    n = Names(f"t{uuid.uuid4().hex[:10]}")
    nc = await connect(NATS_URL, "test-setup")
    js = nc.jetstream()
    await ensure_streams(js, n)
    try:
        yield n
    finally:
        # Cleanup must not hide the test's own outcome.
        for stream in (config.name for config in stream_configs(n) if config.name is not None):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        for bucket in (n.candles_bucket, n.uploads_bucket):
            with contextlib.suppress(Exception):
                await js.delete_object_store(bucket)
        await nc.close()


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with new_database() as dsn:
        yield dsn


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    async with new_names() as n:
        yield n


@pytest.fixture
def env(names: Names, database: str) -> Env:
    return Env(names=names, nats_url=NATS_URL, database_url=database)


# Short ack waits and leases, so that a job or trial of a dead replica comes back fast.
QUICK_REDELIVERY = {
    "TRAINER_JOB_ACK_WAIT": "3",
    "TRAINER_TRIAL_ACK_WAIT": "3",
    "TRAINER_LEASE_SECONDS": "4",
}


@pytest.fixture
def quick_redelivery(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in QUICK_REDELIVERY.items():
        monkeypatch.setenv(name, value)


@dataclass(frozen=True)
class CandleSystem:
    system: System
    client: Client
    ingested: CandlesIngested


class SystemWithCandles(Protocol):
    def __call__(
        self, *, rows: int | None, trainers: int = 1
    ) -> AbstractAsyncContextManager[CandleSystem]: ...


@pytest.fixture
def system_with_candles(env: Env, tmp_path: Path, shared_candles_path: Path) -> SystemWithCandles:
    """A running system with candles: `async with system_with_candles(rows=8_000, trainers=2)
    as s:` starts ingest, registry and `trainers` trainers in the test's namespace and
    database, and ingests the first `rows` BTC candles of the shared file (all of it when
    `rows` is None) before the body runs. Variables set with monkeypatch before the call
    reach the services."""

    @asynccontextmanager
    async def start(*, rows: int | None, trainers: int = 1) -> AsyncIterator[CandleSystem]:
        data = (
            shared_candles_path
            if rows is None
            else excerpt(shared_candles_path, rows, tmp_path / f"btc-{rows}.csv")
        )
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
            ingested = await client.ingest_file(data)
            yield CandleSystem(system, client, ingested)

    return start


# One system per worker, shared ------------------------------------------------------------------


@dataclass(frozen=True)
class SharedCandles:
    env: Env
    client: Client
    dataset: DatasetKey
    ingested: CandlesIngested


class SharedWithCandles(Protocol):
    def __call__(self, *, rows: int | None) -> AbstractAsyncContextManager[SharedCandles]: ...


async def _active_jobs(client: Client) -> list[str]:
    """The ids of the jobs queued or running."""
    active = []
    for status in ("queued", "running"):
        reply = await client.nc.request(
            client.names.list_jobs, ListJobs(status=status, limit=1000).to_bytes(), timeout=10
        )
        active += [job.job_id for job in JobsReply.from_bytes(reply.data).jobs]
    return active


@pytest.fixture
def shared_with_candles(
    shared_services: Env, tmp_path: Path, shared_candles_path: Path
) -> SharedWithCandles:
    """The worker's shared system (`shared_services`: tests/support/services.py) with candles
    of the test's own: `async with shared_with_candles(rows=8_000) as s:` cancels what an
    earlier test left queued or running and waits until it has stopped, then ingests the first `rows` BTC candles of the shared file (all of it when
    `rows` is None) as `s.dataset`, binance 5m under a symbol no other test uses."""

    @asynccontextmanager
    async def start(*, rows: int | None) -> AsyncIterator[SharedCandles]:
        data = (
            shared_candles_path
            if rows is None
            else excerpt(shared_candles_path, rows, tmp_path / f"btc-{rows}.csv")
        )
        dataset = BTC.model_copy(update={"symbol": f"T{uuid.uuid4().hex[:10].upper()}/USDT"})
        env = shared_services
        async with Client.connect(env.nats_url, env.names) as client:
            # What a failed earlier test left behind is cancelled.
            for job_id in await _active_jobs(client):
                await client.nc.request(
                    client.names.cancel_job, CancelJob(job_id=job_id).to_bytes(), timeout=10
                )
            await wait_until(
                lambda: _active_jobs(client),
                within=120,
                message="the shared system idle (no job of an earlier test queued or running)",
                until=lambda active: not active,
            )
            ingested = await client.ingest_file(data, dataset)
            yield SharedCandles(env, client, dataset, ingested)

    return start
