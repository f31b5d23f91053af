"""Benchmark of training through the whole system: jobs, throughput, scaling, loading, memory.
A script, not a test.

    .venv/bin/python tests/benchmarks/bench_training.py [--embedded] [--repeat N] [--long N]

Runs the real ingest, registry and trainer processes (`running_system` of
tests/integration/flows.py), first with one trainer replica, then with two, on the machine's
NATS and PostgreSQL (NATS_URL, DATABASE_ADMIN_URL; default 127.0.0.1) in a namespace and a
database of their own, both removed afterwards. With --embedded the system starts its own
servers instead, as `tradepulse up` does.

Every job is timed from publishing TrainingRequested to the registry answering GetConfig with
the job's configuration (polled every 20 ms once the job's end event has passed, every second
before); nothing is subtracted. Short jobs run --repeat times (median, min, max), long ones
once; a second long job right after the first, with the dataset cached in every replica, gives
the steady state. Loading is timed in this process doing what a trainer does (get_object +
Candles.from_bytes). CPU time per process comes from /proc. Prints the figures as it goes and
a table for the README at the end; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from nats.aio.msg import Msg

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from the repo root: `tests` is importable

from tests.integration.flows import BTC, Client, excerpt, outcome, running_system  # noqa: E402
from tradepulse.cli.embedded import relocated_root  # noqa: E402
from tradepulse.cli.supervisor import System  # noqa: E402
from tradepulse.common.bus import connect, get_object, stream_configs  # noqa: E402
from tradepulse.common.contracts.market import CandlesIngested, DatasetKey  # noqa: E402
from tradepulse.common.contracts.registry import ConfigReply, ConfigView, GetConfig  # noqa: E402
from tradepulse.common.contracts.subjects import Names  # noqa: E402
from tradepulse.common.contracts.training import (  # noqa: E402
    JobCompleted,
    JobFailed,
    JobView,
    ListTrials,
    TrainingRequested,
    TrialsReply,
    TrialView,
)
from tradepulse.quant import Candles  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
ADMIN_DSN = os.environ.get("DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BARS = 155_520
FULL = 315_632
EXCERPT = DatasetKey(exchange="bench-excerpt", symbol="BTC/USDT", timeframe="5m")
TICK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.02
TRIALS_PAGE = 250

TARGET_RANDOM_S = 4.0
TARGET_TPE_S = 15.0
TARGET_REPRO_S = 1.0
TARGET_RATIO = 1.7
TARGET_LOAD_MS = 150.0
TARGET_INGEST_S = 5.0


# Processes and CPU time, from /proc ---------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def machine_busy_seconds() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICK


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def listening_pid(port: int) -> int | None:
    """The process listening on TCP `port` (any address), found through socket inodes."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def backends_of(postmaster: int | None, database: str) -> list[int]:
    """PostgreSQL backend processes serving `database` (their title names it)."""
    if postmaster is None:
        return []
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if ppid == postmaster and f" {database} " in title:
                pids.append(int(proc.name))
    return pids


@dataclass
class Usage:
    """CPU seconds per process group over one interval, and the machine's busy seconds."""

    wall: float
    groups: dict[str, float]
    machine: float

    @property
    def outside(self) -> float:
        return max(0.0, self.machine - sum(self.groups.values()))

    def describe(self) -> str:
        parts = [f"{k} {v:.2f} s ({100 * v / self.wall:.0f}%)" for k, v in self.groups.items()]
        others = self.outside
        return (
            f"CPU over {self.wall:.1f} s (% of one core): {', '.join(parts)}; "
            f"machine busy {self.machine:.1f} s of {os.cpu_count()} cores × {self.wall:.1f} s, "
            f"of which outside this system {others:.1f} s"
        )


class CpuProbe:
    def __init__(self, system: System) -> None:
        self.system = system
        nats_port = urlsplit(system.nats_url).port or 4222
        db = urlsplit(system.database_url)
        self.nats_pid = listening_pid(nats_port)
        self.postmaster = listening_pid(db.port or 5432)
        self.database = db.path.lstrip("/")

    def _groups(self) -> dict[str, list[int]]:
        groups = {
            proc.name: [proc.pid] for proc in self.system.processes.values() if proc.pid is not None
        }
        groups["nats-server"] = [self.nats_pid] if self.nats_pid else []
        groups["postgres backends"] = backends_of(self.postmaster, self.database)
        groups["this script"] = [os.getpid()]
        return groups

    def sample(self) -> tuple[float, float, dict[str, dict[int, float]]]:
        groups = {
            name: {pid: s for pid in pids if (s := cpu_seconds(pid)) is not None}
            for name, pids in self._groups().items()
        }
        return time.perf_counter(), machine_busy_seconds(), groups

    @staticmethod
    def usage(
        before: tuple[float, float, dict[str, dict[int, float]]],
        after: tuple[float, float, dict[str, dict[int, float]]],
    ) -> Usage:
        groups = {
            name: sum(s - before[2].get(name, {}).get(pid, 0.0) for pid, s in pids.items())
            for name, pids in after[2].items()
        }
        return Usage(after[0] - before[0], groups, after[1] - before[1])


# Jobs ------------------------------------------------------------------------------------------


def iso_seconds(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


@dataclass
class JobRun:
    request: TrainingRequested
    wall: float  # publish → configuration answered by the registry
    view: JobView
    config: ConfigView
    trials: list[TrialView]
    published_at: float
    usage: Usage | None = None

    @property
    def n(self) -> int:
        return self.request.n_iterations

    def breakdown(self) -> str:
        started = iso_seconds(self.view.started_at)
        finished = iso_seconds(self.view.finished_at)
        stored = iso_seconds(self.config.created_at)
        if started is None or finished is None or stored is None:
            return ""
        return (
            f"queue+window {started - self.published_at:.2f} s, trials {finished - started:.2f} s, "
            f"registry {stored - finished:.2f} s"
        )

    def replicas(self) -> str:
        per: dict[str, list[float]] = {}
        for t in self.trials:
            per.setdefault(t.replica, []).append(t.duration_ms)
        return ", ".join(
            f"{r}: {len(d)} trials, backtests {sum(d) / 1000:.2f} s "
            f"(median {statistics.median(d):.2f} ms)"
            for r, d in sorted(per.items())
        )


async def wait_config(
    client: Client, job_id: str, ended: asyncio.Event, within: float
) -> ConfigView:
    """Poll GetConfig until the registry has the job's configuration.

    Polling every 20 ms for the whole of a long job would take CPU from the system being
    measured (about a tenth of a core for the registry alone), so it polls that fast only once
    the job's end event has passed, and once a second before, in case the event is missed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    polls = 0
    while True:
        reply = await client.nc.request(
            client.names.get_config, GetConfig(job_id=job_id).to_bytes(), timeout=10
        )
        config = ConfigReply.from_bytes(reply.data).config
        if config is not None:
            return config
        polls += 1
        if polls % 50 == 0:
            view = await client.job(job_id)
            if view is not None and view.status in ("failed", "cancelled"):
                raise SystemExit(f"job {job_id} {view.status}: {view.error}")
        if loop.time() > deadline:
            raise SystemExit(f"no configuration for job {job_id} after {within:.0f} s")
        if ended.is_set():
            await asyncio.sleep(POLL_S)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), 1.0)


async def list_trials(client: Client, job_id: str) -> list[TrialView]:
    """All trials of a job, in pages small enough for NATS: a page of 1,000 trials is about
    1.2 MB, over the server's 1 MiB max_payload, so the trainer cannot send it."""
    out: list[TrialView] = []
    while True:
        reply = await client.nc.request(
            client.names.list_trials,
            ListTrials(job_id=job_id, limit=TRIALS_PAGE, offset=len(out)).to_bytes(),
            timeout=10,
        )
        page = TrialsReply.from_bytes(reply.data)
        out.extend(page.trials)
        if len(out) >= page.total or not page.trials:
            return out


def training(
    optimizer: str, n: int, lookback: int, seed: int, dataset: DatasetKey = BTC
) -> TrainingRequested:
    return TrainingRequested.model_validate(
        {
            "job_id": f"bench-{uuid.uuid4().hex[:12]}",
            "dataset": dataset,
            "lookback_candles": lookback,
            "optimizer": optimizer,
            "n_iterations": n,
            "seed": seed,
        }
    )


async def run_job(
    client: Client, request: TrainingRequested, probe: CpuProbe | None = None
) -> JobRun:
    ended = asyncio.Event()

    async def on_end(msg: Msg) -> None:
        model = JobCompleted if msg.subject == client.names.job_completed else JobFailed
        if model.from_bytes(msg.data).job_id == request.job_id:
            ended.set()

    subs = [
        await client.nc.subscribe(subject, cb=on_end)
        for subject in (client.names.job_completed, client.names.job_failed)
    ]
    try:
        before = probe.sample() if probe else None
        published_at = time.time()
        started = time.perf_counter()
        await client.submit(request)
        within = 60 + request.n_iterations * 0.1
        config = await wait_config(client, request.job_id, ended, within)
        wall = time.perf_counter() - started
    finally:
        for sub in subs:
            await sub.unsubscribe()
    usage = CpuProbe.usage(before, probe.sample()) if probe and before else None
    view = await client.job(request.job_id)
    assert view is not None, request.job_id
    assert view.status == "completed", view
    trials = await list_trials(client, request.job_id)
    return JobRun(request, wall, view, config, trials, published_at, usage)


def spread(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    v = [x * scale for x in values]
    if len(v) == 1:
        return f"{v[0]:.2f} {unit}"
    return f"median {statistics.median(v):.2f} {unit} (min {min(v):.2f}, max {max(v):.2f})"


# The benchmark ---------------------------------------------------------------------------------


@dataclass
class Results:
    ingest: dict[str, float] = field(default_factory=dict)
    load_ms: dict[int, list[float]] = field(default_factory=dict)
    first_random: dict[int, float] = field(default_factory=dict)
    random: dict[int, list[float]] = field(default_factory=dict)
    tpe: dict[int, list[float]] = field(default_factory=dict)
    repro: dict[int, list[float]] = field(default_factory=dict)
    repro_identical: dict[int, bool] = field(default_factory=dict)
    whole_tps: dict[tuple[int, int], float] = field(default_factory=dict)
    steady_tps: dict[tuple[int, int], float] = field(default_factory=dict)
    rss_mb: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    outside_cores: list[float] = field(default_factory=list)


@contextlib.asynccontextmanager
async def resources(embedded: bool) -> AsyncIterator[tuple[Names, str | None, str | None]]:
    """A fresh namespace and database on the machine's servers (removed after), or nothing
    to create when the system brings its own servers."""
    names = Names(f"bench{uuid.uuid4().hex[:10]}")
    if embedded:
        yield names, None, None
        return
    database = f"tp_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    try:
        yield names, NATS_URL, f"{ADMIN_DSN.rpartition('/')[0]}/{database}"
    finally:
        nc = await connect(NATS_URL, "bench-training-cleanup")
        js = nc.jetstream()
        for config in stream_configs(names):
            if config.name:
                with contextlib.suppress(Exception):
                    await js.delete_stream(config.name)
        for bucket in (names.candles_bucket, names.uploads_bucket):
            with contextlib.suppress(Exception):
                await js.delete_object_store(bucket)
        await nc.close()
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


async def timed_ingest(
    client: Client, path: Path, dataset: DatasetKey
) -> tuple[float, CandlesIngested]:
    started = time.perf_counter()
    event = await client.ingest_file(path, dataset)
    return time.perf_counter() - started, event


async def bench_loading(
    url: str, names: Names, snapshots: dict[int, str], repeat: int, results: Results
) -> None:
    print("\nloading a dataset into a trainer (in this process: get_object + Candles.from_bytes)")
    nc = await connect(url, "bench-training-load")
    js = nc.jetstream()
    try:
        for rows, snapshot in snapshots.items():
            fetch, parse, total = [], [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                data = await get_object(js, names.candles_bucket, snapshot)
                t1 = time.perf_counter()
                candles = Candles.from_bytes(data, source=snapshot)
                t2 = time.perf_counter()
                assert len(candles) == rows, (len(candles), rows)
                fetch.append(t1 - t0)
                parse.append(t2 - t1)
                total.append(t2 - t0)
            results.load_ms[rows] = [t * 1000 for t in total]
            print(
                f"  {rows:>7,} candles ({len(data) / 1e6:.1f} MB snapshot): "
                f"{spread(total, 'ms', 1000)}; get_object {spread(fetch, 'ms', 1000)}, "
                f"from_bytes {spread(parse, 'ms', 1000)}"
            )
    finally:
        await nc.close()


async def bench_system(
    trainers: int,
    tmp: Path,
    names: Names,
    nats_url: str | None,
    database_url: str | None,
    args: argparse.Namespace,
    results: Results,
) -> None:
    print(f"\n=== {trainers} trainer replica{'s' if trainers > 1 else ''} ===")
    started = time.perf_counter()
    async with (
        running_system(
            tmp, names, trainers=trainers, nats_url=nats_url, database_url=database_url
        ) as system,
        Client.connect(system.nats_url, names) as client,
    ):
        print(f"system ready in {time.perf_counter() - started:.1f} s (logs: {system.logs_dir})")
        if not results.ingest or nats_url is None:
            # A new embedded system has empty servers; the machine's keep the first import.
            seconds, full = await timed_ingest(client, args.data, BTC)
            assert full.coverage.rows == FULL, full.coverage.rows
            print(f"import of the {FULL:,}-candle BTC file (new dataset): {seconds:.2f} s")
            results.ingest.setdefault("full", seconds)
            part = excerpt(args.data, BARS, tmp / "excerpt.csv")
            seconds, cut = await timed_ingest(client, part, EXCERPT)
            assert cut.coverage.rows == BARS, cut.coverage.rows
            print(f"import of a {BARS:,}-candle excerpt (new dataset): {seconds:.2f} s")
            results.ingest.setdefault("excerpt", seconds)
            if trainers == 1:
                snapshots = {BARS: cut.coverage.snapshot, FULL: full.coverage.snapshot}
                await bench_loading(system.nats_url, names, snapshots, args.repeat, results)
        probe = CpuProbe(system)

        print(f"\n{args.repeat + 1} × 200 random trials on {BARS:,} bars (default batch size)")
        runs = [
            await run_job(client, training("random", 200, BARS, 7)) for _ in range(args.repeat + 1)
        ]
        for i, run in enumerate(runs):
            label = "first job after start (dataset not cached yet)" if i == 0 else f"run {i}"
            print(f"  {label}: {run.wall:.2f} s  [{run.breakdown()}; batch {run.view.batch_size}]")
        results.first_random[trainers] = runs[0].wall
        results.random[trainers] = [r.wall for r in runs[1:]]
        print(f"  → {spread(results.random[trainers])} (target <= {TARGET_RANDOM_S:g} s)")

        print(f"\n{args.repeat} × 200 TPE (bayesian) trials on {BARS:,} bars")
        runs = [
            await run_job(client, training("bayesian", 200, BARS, 7)) for _ in range(args.repeat)
        ]
        for i, run in enumerate(runs, 1):
            print(f"  run {i}: {run.wall:.2f} s  [{run.breakdown()}; batch {run.view.batch_size}]")
        results.tpe[trainers] = [r.wall for r in runs]
        print(f"  → {spread(results.tpe[trainers])} (target <= {TARGET_TPE_S:g} s)")

        print(
            f"\n{args.repeat} × the reproducibility test: bayesian, 10 trials, 10,000 bars, seed 12345"
        )
        runs = [
            await run_job(client, training("bayesian", 10, 10_000, 12345))
            for _ in range(args.repeat)
        ]
        for i, run in enumerate(runs, 1):
            print(f"  run {i}: {run.wall:.2f} s  [{run.breakdown()}]")
        same = all(outcome(r.trials) == outcome(runs[0].trials) for r in runs)
        results.repro[trainers] = [r.wall for r in runs]
        results.repro_identical[trainers] = same
        print(
            f"  → {spread(results.repro[trainers])} (target <= {TARGET_REPRO_S:g} s); "
            f"identical trials in every run: {'yes' if same else 'NO'}"
        )

        for bars in (FULL, BARS):
            print(f"\n2 × {args.long:,} random trials on {bars:,} bars, back to back")
            for label in ("whole job", "steady state (second job)"):
                run = await run_job(client, training("random", args.long, bars, 11), probe)
                tps = run.n / run.wall
                target = results.whole_tps if label == "whole job" else results.steady_tps
                target[(trainers, bars)] = tps
                print(f"  {label}: {run.wall:.2f} s → {tps:.0f} trials/s  [{run.breakdown()}]")
                print(f"    {run.replicas()}")
                if run.usage is not None:
                    print(f"    {run.usage.describe()}")
                    results.outside_cores.append(run.usage.outside / run.usage.wall)
            if bars == FULL:
                rss = []
                for proc in system.processes.values():
                    if proc.service == "trainer" and proc.pid is not None:
                        mem = memory_kb(proc.pid)
                        rss.append((mem["VmRSS"] / 1024, mem["VmHWM"] / 1024))
                        print(
                            f"  {proc.name} (pid {proc.pid}) with the full file cached: "
                            f"VmRSS {mem['VmRSS'] / 1024:.0f} MB, peak {mem['VmHWM'] / 1024:.0f} MB"
                        )
                results.rss_mb[trainers] = rss


def table(results: Results, args: argparse.Namespace) -> str:
    def med(values: list[float] | None, fmt: str = "{:.2f} s") -> str:
        return fmt.format(statistics.median(values)) if values else "—"

    def one(value: float | None, fmt: str) -> str:
        return fmt.format(value) if value is not None else "—"

    def ratio(d: dict[tuple[int, int], float], bars: int) -> str:
        a, b = d.get((1, bars)), d.get((2, bars))
        return f" ({b / a:.2f}×)" if a and b else ""

    rows = [
        ("Figure", "Target", "1 trainer", "2 trainers"),
        (
            f"200 random trials, {BARS:,} bars, request → config stored (median of {args.repeat})",
            f"≤ {TARGET_RANDOM_S:g} s",
            med(results.random.get(1)),
            med(results.random.get(2)),
        ),
        (
            "the same, first job after start (dataset not yet cached)",
            "",
            one(results.first_random.get(1), "{:.2f} s"),
            one(results.first_random.get(2), "{:.2f} s"),
        ),
        (
            f"200 TPE trials, {BARS:,} bars (median of {args.repeat})",
            f"≤ {TARGET_TPE_S:g} s",
            med(results.tpe.get(1)),
            med(results.tpe.get(2)),
        ),
        (
            f"reproducibility test: TPE, 10 trials, 10,000 bars (median of {args.repeat})",
            f"≤ {TARGET_REPRO_S:g} s",
            med(results.repro.get(1)),
            med(results.repro.get(2)),
        ),
    ]
    for bars in (FULL, BARS):
        for label, d in (("whole job", results.whole_tps), ("steady state", results.steady_tps)):
            rows.append(
                (
                    f"trials/s, {args.long:,} random trials, {bars:,} bars, {label}",
                    f"≥ {TARGET_RATIO:g}× with 2",
                    one(d.get((1, bars)), "{:.0f}"),
                    one(d.get((2, bars)), "{:.0f}") + ratio(d, bars),
                )
            )
    rows += [
        (
            f"load {BARS:,} candles into a trainer (median of {args.repeat})",
            f"≤ {TARGET_LOAD_MS:g} ms",
            med(results.load_ms.get(BARS), "{:.0f} ms"),
            "",
        ),
        (
            f"load {FULL:,} candles into a trainer (median of {args.repeat})",
            "",
            med(results.load_ms.get(FULL), "{:.0f} ms"),
            "",
        ),
        (
            "trainer RSS with the full BTC file cached (each replica)",
            "",
            ", ".join(f"{r:.0f} MB" for r, _ in results.rss_mb.get(1, [])) or "—",
            ", ".join(f"{r:.0f} MB" for r, _ in results.rss_mb.get(2, [])) or "—",
        ),
        (
            f"import of the {FULL:,}-candle BTC file, new dataset (once)",
            f"≤ {TARGET_INGEST_S:g} s",
            one(results.ingest.get("full"), "{:.2f} s"),
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def targets_met(results: Results) -> bool:
    checks = [
        max((statistics.median(v) for v in results.random.values()), default=0) <= TARGET_RANDOM_S,
        max((statistics.median(v) for v in results.tpe.values()), default=0) <= TARGET_TPE_S,
        max((statistics.median(v) for v in results.repro.values()), default=0) <= TARGET_REPRO_S,
        statistics.median(results.load_ms.get(BARS, [0])) <= TARGET_LOAD_MS,
        results.ingest.get("full", 0) <= TARGET_INGEST_S,
        all(results.repro_identical.values()),
    ]
    for bars in (FULL, BARS):
        one, two = results.steady_tps.get((1, bars)), results.steady_tps.get((2, bars))
        if one and two:
            checks.append(two / one >= TARGET_RATIO)
    return all(checks)


async def measure(args: argparse.Namespace, tmp: Path) -> Results:
    results = Results()
    async with resources(args.embedded) as (names, nats_url, database_url):
        for trainers in (1, 2):
            await bench_system(trainers, tmp, names, nats_url, database_url, args, results)
    return results


def main(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    command = f"{os.path.relpath(sys.executable)} {shlex.join(sys.argv)}"
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    servers = "embedded (started by the system)" if args.embedded else f"{NATS_URL}, {ADMIN_DSN}"
    print(f"command: {command}")
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"servers: {servers}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    # User postgres must be able to enter the data dir, or the embedded cluster is placed
    # under /var/lib/tradepulse instead.
    tmp.chmod(0o755)
    try:
        results = asyncio.run(measure(args, tmp))
    finally:
        if args.keep:
            print(f"\nsystem data and logs kept in {tmp}")
        else:
            for data_dir in tmp.glob("system-*"):
                shutil.rmtree(relocated_root(data_dir), ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal benchmark time {time.perf_counter() - began:.0f} s; command: {command}\n")
    print(table(results, args))
    if results.outside_cores:
        print(
            f"\nDuring the long jobs, processes outside this system kept on average "
            f"{statistics.mean(results.outside_cores):.2f} of the {os.cpu_count()} cores busy "
            f"(load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())})."
        )
        if statistics.mean(results.outside_cores) > 0.5:
            print("The machine was busy with other work: these figures understate the system.")
    return 0 if targets_met(results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embedded", action="store_true", help="let the system start its servers")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each short measurement")
    parser.add_argument("--long", type=int, default=2000, help="trials of each long job")
    parser.add_argument("--keep", action="store_true", help="keep the system data dir and logs")
    raise SystemExit(main(parser.parse_args()))
