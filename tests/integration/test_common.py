"""libs/common against the real servers: migrations and stream set-up."""

from __future__ import annotations

import asyncio

import pytest

from tradepulse.common.bus import connect, ensure_streams, publish
from tradepulse.common.contracts.market import CoverageQuery
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.db import apply_migrations, create_pool

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
