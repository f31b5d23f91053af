"""libs/common against the real servers: migrations and stream set-up."""

from __future__ import annotations

import asyncio

import pytest

from tradepulse.common.bus import connect, ensure_streams, publish
from tradepulse.common.contracts.market import CoverageQuery
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.common.db.pool import retrying

from .conftest import NATS_URL


async def test_migrations_apply_once_even_when_two_replicas_start_together(database: str) -> None:
    pools = [await create_pool(database), await create_pool(database)]
    try:
        results = await asyncio.gather(*(apply_migrations(p, "training") for p in pools))
        assert sorted(len(r) for r in results)[0] == 0, "the second runner must find nothing to do"
        assert max(len(r) for r in results) >= 1
        again = await apply_migrations(pools[0], "training")
        assert again == []
        versions = await pools[0].fetch("SELECT version FROM training.schema_migrations")
        assert len(versions) == max(len(r) for r in results)
    finally:
        for p in pools:
            await p.close()


async def test_queries_survive_the_server_terminating_every_connection_mid_query(
    database: str,
) -> None:
    """What a PostgreSQL restart does to a busy pool: each backend is killed while queries run
    on it, in whatever protocol state they happen to be. Every query retried must succeed."""
    pool = await create_pool(database, min_size=4, max_size=4)
    admin = await create_pool(database, min_size=1, max_size=1)
    try:

        async def query(i: int) -> int:
            async def op() -> int:
                return int(await pool.fetchval("SELECT $1::int FROM pg_sleep(0.01)", i))

            return await retrying(op, wait=20)

        async def terminate() -> None:
            for _ in range(10):
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                await asyncio.sleep(0.03)

        results = await asyncio.gather(*(query(i) for i in range(200)), terminate())
        assert results[:-1] == list(range(200))
    finally:
        await pool.close()
        await admin.close()


async def test_streams_are_created_idempotently_and_publishes_are_deduplicated(
    names: Names,
) -> None:
    nc = await connect(NATS_URL, "test")
    try:
        js = nc.jetstream()
        await ensure_streams(js, names)  # second time: already there
        message = CoverageQuery(message_id="same-fact")
        first = await publish(js, names.ingest_requested, message)
        second = await publish(js, names.ingest_requested, message)
        assert not first.duplicate
        assert second.duplicate
        info = await js.stream_info(names.ingest_stream)
        assert info.state.messages == 1
    finally:
        await nc.close()


async def test_connect_gives_up_with_a_clear_error_when_nats_is_unreachable() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = asyncio.get_running_loop().time()
    with pytest.raises(
        ConnectionError, match=f"cannot reach NATS at nats://127.0.0.1:{port} within 2 s"
    ):
        await connect(f"nats://127.0.0.1:{port}", "test", connect_timeout=2)
    assert asyncio.get_running_loop().time() - started < 5
