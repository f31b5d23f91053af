"""libs/common against the real servers: migrations and stream set-up."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tradepulse.common.bus import connect, ensure_streams, publish
from tradepulse.common.contracts.market import CoverageQuery
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.common.db.pool import retrying

from .conftest import NATS_URL


@pytest.fixture
def migrations_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A package of two migrations of schema `demo`, importable for this test only."""
    name = f"tp_migrations_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "0001_things.sql").write_text("CREATE TABLE demo.things (id int PRIMARY KEY);")
    (folder / "0002_more.sql").write_text("ALTER TABLE demo.things ADD COLUMN label text;")
    (folder / "notes.txt").write_text("not a migration: ignored")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, folder


async def test_migrations_apply_once_even_when_two_replicas_start_together(
    database: str, migrations_package: tuple[str, Path]
) -> None:
    package, folder = migrations_package
    pools = [await create_pool(database), await create_pool(database)]
    try:
        results = await asyncio.gather(*(apply_migrations(p, "demo", package) for p in pools))
        assert sorted(results) == [[], ["0001_things.sql", "0002_more.sql"]], (
            "the second runner must find nothing to do"
        )
        assert await apply_migrations(pools[0], "demo", package) == []
        versions = await pools[0].fetch("SELECT version FROM demo.schema_migrations")
        assert sorted(r["version"] for r in versions) == [1, 2]
        await pools[0].execute("INSERT INTO demo.things (id, label) VALUES (1, 'x')")

        (folder / "0003_index.sql").write_text("CREATE INDEX ON demo.things (label);")
        assert await apply_migrations(pools[1], "demo", package) == ["0003_index.sql"]
        (folder / "0001_things.sql").write_text("CREATE TABLE demo.things (id bigint);")
        with pytest.raises(RuntimeError, match=r"0001_things\.sql changed after it was applied"):
            await apply_migrations(pools[0], "demo", package)
    finally:
        for p in pools:
            await p.close()


async def test_each_service_ships_its_own_migrations(database: str) -> None:
    pool = await create_pool(database)
    try:
        for schema, package in (
            ("market", "tradepulse.ingest.migrations"),
            ("registry", "tradepulse.registry.migrations"),
            ("training", "tradepulse.trainer.migrations"),
        ):
            applied = await apply_migrations(pool, schema, package)
            assert applied, f"{package} holds no migration"
            assert all(name.endswith(".sql") for name in applied)
        with pytest.raises(FileNotFoundError, match=r"no NNNN_name\.sql migrations"):
            await apply_migrations(pool, "market", "tradepulse.common.db")
    finally:
        await pool.close()


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
