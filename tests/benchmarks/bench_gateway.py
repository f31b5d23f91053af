"""Load benchmark of the gateway: job reads at a fixed offered rate, and a burst of submissions.
A script, not a test.

    .venv/bin/python tests/benchmarks/bench_gateway.py [--rate 500] [--seconds 30] [--clients 1]
        [--burst 1000] [--concurrency 50] [--trainers 2] [--drain-within 120] [--profile]
        [--gateway-env NAME=VALUE] [--embedded] [--keep]

Runs the real ingest, registry, trainer and gateway processes (`running_system` of
tests/integration/flows.py, the gateway as the supervisor starts it: uvicorn on a free loopback
port) on the machine's NATS and PostgreSQL (NATS_URL, DATABASE_ADMIN_URL; default 127.0.0.1)
in a namespace and a database of their own, both removed afterwards (--embedded: the system
starts its own servers). Everything is called over HTTP on 127.0.0.1 with an API key, as a
user does.

1. Reads. An excerpt of the shared BTC file is uploaded (POST /api/v2/data/upload) and one
   small job run to completion; then GET /api/v2/training/job/{id} of that job is sent at a
   fixed offered rate (--rate, for --seconds after a --warmup not counted) by --clients load
   generator processes of their own (uvloop; a minimal HTTP/1.1 client on asyncio streams, or
   aiohttp with --client aiohttp; keep-alive connections, --connections in all). The schedule
   is open-loop: request i is due at t0 + i/rate whether or not earlier ones were answered, and its latency is measured from when it was due, so time spent queued
   (in the generator waiting for a free connection, in the gateway, in the trainer) counts,
   the coordinated-omission-safe way. The generator's own lag (due → actually sent) is
   reported to show whether it kept up. Errors: non-2xx answers, timeouts (--timeout) and
   connection errors; latency percentiles are over every answered request. Alongside: the
   gateway's own request timing (its Prometheus histogram), the trainer's GetJob round trip
   over NATS sampled from this process, and CPU per process from /proc. --profile samples the
   gateway and one trainer with py-spy for a few seconds in the middle of the run (py-spy
   found on PATH or given with --py-spy) and prints where their time goes; --gateway-env adds
   settings to the gateway process (e.g. LOG_LEVEL=warning, or PYTHONPATH to try a variant).
2. Burst. --burst POST /api/v2/training/start (n_iterations 1, lookback_candles 500, distinct
   seeds), --concurrency at a time: each answer counted as accepted (202 with a job id),
   refused cleanly (4xx or 503 with a JSON `detail`) or other (anything else, connection
   errors). Then, bounded by --drain-within, the terminal totals of GET /api/v2/training/jobs
   are polled until every accepted job is completed, failed or cancelled; the jobs are then
   listed (pages of 1,000) and every accepted id must be there (or answered by GET
   /job/{id}): a missing one is lost. Jobs listed that were never accepted are reported too.

Prints the figures as it goes, and a table for the README with the command at the end; exits
1 if a request failed or fell behind the offered rate by more than 5 %, an answer to a
submission was not clean, an accepted job was lost, or the jobs did not drain in time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from the repo root: `tests` is importable

from tests.benchmarks.bench_training import CpuProbe, Usage, resources  # noqa: E402
from tests.integration.flows import Client, excerpt, running_system  # noqa: E402
from tradepulse.cli.embedded import relocated_root  # noqa: E402
from tradepulse.cli.supervisor import System  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
EXCERPT_ROWS = 6_000
JOB = "/api/v2/training/job/{job_id}"
DATASET = {"exchange": "binanceus", "symbol": "BTC/USDT", "timeframe": "5m"}
# The predecessor's payload (tests/e2e/conftest.py), with the burst's small jobs.
PAYLOAD: dict[str, Any] = {
    "strategy": "LIQUIDITY_SWEEP",
    **DATASET,
    "regime": "sideways",
    "optimizer": "random",
    "n_iterations": 20,
    "lookback_candles": 1000,
    "seed": 12345,
}
BURST_JOB = {"n_iterations": 1, "lookback_candles": 500}
TERMINAL = ("completed", "failed", "cancelled")
ROUTE_METRIC = "tradepulse_gateway_http_request_duration_seconds"
PROBE_EVERY_S = 0.1
WINDOW_S = 3.0
MIN_RATE_FRACTION = 0.95


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds == seconds else "—"


# The load generator: its own processes, forked before anything else runs -----------------------


@dataclass(frozen=True)
class Schedule:
    """One generator's share of the open-loop schedule: requests index, index + clients, ...
    of `rate × (warmup + seconds)`, request i due at t0 + i / rate."""

    url: str
    headers: dict[str, str]
    rate: float
    warmup: float
    seconds: float
    index: int
    clients: int
    connections: int
    timeout: float
    start_epoch: float  # t0, as time.time()
    client: str  # "raw" (asyncio streams) or "aiohttp"


@dataclass
class Outcome:
    """What one generator saw of the measured window (the warm-up is left out)."""

    latencies: list[float] = field(default_factory=list)  # every answered request, seconds
    dues: list[float] = field(default_factory=list)  # when each of them was due, s after t0
    lags: list[float] = field(default_factory=list)  # due → handed to the client, seconds
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # exceptions by kind
    sent: int = 0
    last_done_epoch: float = 0.0
    cpu_s: float = 0.0
    connections_opened: int = 0
    stale: int = 0
    resent: int = 0


def generator_process(conn: multiprocessing.connection.Connection) -> None:
    """Wait for a Schedule, run it, send back an Outcome; None ends the process."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    while True:
        schedule = conn.recv()
        if schedule is None:
            return
        before = resource.getrusage(resource.RUSAGE_SELF)
        outcome = asyncio.run(generate(schedule))
        after = resource.getrusage(resource.RUSAGE_SELF)
        outcome.cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        conn.send(outcome)


class RawPool:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: GET of one URL, up to `limit`
    connections, a request waits for a free one. Far cheaper per request than aiohttp, so the
    generator takes less of the CPU it shares with the system it measures."""

    def __init__(self, url: str, headers: dict[str, str], limit: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        lines = [f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1"]
        lines += [f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        self.request = "\r\n".join(lines).encode("latin-1")
        self.limit = limit
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.open = 0
        self.opened = 0
        self.stale = 0  # idle connections found closed by the server, dropped
        self.resent = 0  # requests sent again: the connection closed as it was reused

    async def _acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """An idle connection, or None with a slot reserved for a new one."""
        while True:
            while self.idle:
                conn = self.idle.pop()  # the most recently used: the others may time out
                if not (conn[0].at_eof() or conn[1].is_closing()):
                    return conn
                conn[1].close()  # closed by the server while idle (uvicorn: after 5 s)
                self.open -= 1
                self.stale += 1
            if self.open < self.limit:
                self.open += 1
                return None
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release_wakeup()  # pass on the wake-up this one will not use
                raise

    def _release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is None:
            self.open -= 1
        else:
            self.idle.append(conn)
        self._release_wakeup()

    def _release_wakeup(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        conn = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return conn

    async def _exchange(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    ) -> tuple[int, bool]:
        """Send the request, read the whole answer: (status, connection still usable)."""
        reader, writer = conn
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        fields = dict(h.lower().split(": ", 1) for h in header_lines if ": " in h)
        if "content-length" in fields:
            await reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            while size := int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        else:
            raise ValueError("a response with neither Content-Length nor chunks")
        return status, fields.get("connection") != "close"

    async def get(self) -> int:
        conn = await self._acquire()
        try:
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                status, keep = await self._exchange(conn)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                if not reused or partial:
                    raise
                # The server closed this keep-alive connection just as it was reused, before
                # reading the request: sent again once on a new one, as HTTP clients do.
                conn[1].close()
                conn = None
                self.resent += 1
                conn = await self._connect()
                status, keep = await self._exchange(conn)
            if not keep:
                conn[1].close()
                conn = None
            return status
        except BaseException:
            if conn is not None:
                conn[1].close()
            conn = None
            raise
        finally:
            self._release(conn)

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def generate(s: Schedule) -> Outcome:
    # Timed with time.monotonic, not loop.time: uvloop's clock has millisecond steps and is
    # read once per loop iteration, which would understate latencies.
    loop = asyncio.get_running_loop()
    now = time.monotonic
    t0 = now() + (s.start_epoch - time.time())
    measured_from = t0 + s.warmup
    total = round(s.rate * (s.warmup + s.seconds))
    out = Outcome()
    latencies, lags, dues = array("d"), array("d"), array("d")
    pending: set[asyncio.Task[None]] = set()
    async with contextlib.AsyncExitStack() as stack:
        if s.client == "raw":
            pool = RawPool(s.url, s.headers, s.connections)
            stack.push_async_callback(pool.close)
            get: Callable[[], Awaitable[int]] = pool.get

            def opened() -> int:
                out.stale, out.resent = pool.stale, pool.resent
                return pool.opened

        else:
            counter = [0]

            async def on_connect(*_: Any) -> None:
                counter[0] += 1

            trace = aiohttp.TraceConfig()
            trace.on_connection_create_end.append(on_connect)
            session = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(
                        limit=s.connections, limit_per_host=s.connections, keepalive_timeout=60
                    ),
                    headers=s.headers,
                    trace_configs=[trace],
                )
            )

            async def get() -> int:
                async with session.get(s.url) as response:
                    await response.read()
                    return response.status

            def opened() -> int:
                return counter[0]

        async def one(due: float) -> None:
            measured = due >= measured_from
            try:
                async with asyncio.timeout(s.timeout):
                    status = await get()
            except Exception as exc:  # every failure is counted, never raised
                if measured:
                    out.failures[type(exc).__name__] += 1
                return
            if measured:
                done = now()
                latencies.append(done - due)
                dues.append(due - measured_from)
                out.statuses[status] += 1
                out.last_done_epoch = max(out.last_done_epoch, done - t0 + s.start_epoch)

        for i in range(s.index, total, s.clients):
            due = t0 + i / s.rate
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if due >= measured_from:
                lags.append(max(0.0, now() - due))  # timers may fire a little early
                out.sent += 1
            task = loop.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=s.timeout + 5)
        out.connections_opened = opened()
    out.latencies = latencies.tolist()
    out.dues = dues.tolist()
    out.lags = lags.tolist()
    return out


class Generators:
    """`n` forked generator processes, started before this process runs any event loop."""

    def __init__(self, n: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=generator_process, args=(child,), name=f"load-{i}")
            proc.daemon = True
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    async def run(self, schedules: list[Schedule]) -> list[Outcome]:
        for conn, schedule in zip(self.conns, schedules, strict=True):
            conn.send(schedule)
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(*(loop.run_in_executor(None, conn.recv) for conn in self.conns))
        )

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


# The gateway over HTTP -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Gateway:
    url: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def session(self, connections: int = 16, timeout: float = 60) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            base_url=self.url,
            headers=self.auth,
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )


async def get_json(http: aiohttp.ClientSession, path: str, **params: Any) -> Any:
    async with http.get(path, params=params or None) as response:
        body = await response.text()
        if response.status != 200:
            raise SystemExit(f"GET {path} {params}: {response.status} {body}")
        return json.loads(body)


async def wait_http_ready(gateway: Gateway, within: float = 60) -> None:
    deadline = time.monotonic() + within
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{gateway.url}/ready") as response:
                    if response.status == 200:
                        return
                    last = await response.text()
            except aiohttp.ClientError as exc:
                last = repr(exc)
            await asyncio.sleep(0.1)
    raise SystemExit(f"the gateway is not ready after {within:g} s: {last}")


async def upload(http: aiohttp.ClientSession, path: Path) -> dict[str, Any]:
    form = aiohttp.FormData()
    for name, value in DATASET.items():
        form.add_field(name, value)
    content = await asyncio.to_thread(path.read_bytes)
    form.add_field("file", content, filename=path.name, content_type="text/csv")
    async with http.post("/api/v2/data/upload", data=form) as response:
        body = await response.text()
        if response.status not in (200, 202):
            raise SystemExit(f"upload: {response.status} {body}")
        outcome: dict[str, Any] = json.loads(body)
    deadline = time.monotonic() + 60
    while outcome["status"] == "pending":
        if time.monotonic() > deadline:
            raise SystemExit(f"upload not imported after 60 s: {outcome}")
        await asyncio.sleep(0.1)
        outcome = await get_json(http, f"/api/v2/data/ingest/{outcome['request_id']}")
    if outcome["status"] != "succeeded":
        raise SystemExit(f"upload refused: {outcome}")
    return outcome


async def start_job(http: aiohttp.ClientSession, payload: dict[str, Any]) -> str:
    async with http.post("/api/v2/training/start", json=payload) as response:
        body = await response.text()
        if response.status != 202:
            raise SystemExit(f"POST /start: {response.status} {body}")
        job_id: str = json.loads(body)["job_id"]
        return job_id


async def wait_done(http: aiohttp.ClientSession, job_id: str, within: float = 60) -> dict[str, Any]:
    """The job once completed and its configuration made (config_id set)."""
    deadline = time.monotonic() + within
    while True:
        job: dict[str, Any] = await get_json(http, JOB.format(job_id=job_id))
        if job["status"] in ("failed", "cancelled"):
            raise SystemExit(f"job {job_id} {job['status']}: {job['error']}")
        if job["status"] == "completed" and job["config_id"]:
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} not done after {within:g} s: {job}")
        await asyncio.sleep(0.1)


async def route_histogram(gateway: Gateway, route: str) -> tuple[float, float, dict[float, float]]:
    """(sum, count, cumulative buckets) of the gateway's request duration for a GET route."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"{gateway.url}/metrics") as response,
    ):
        text = await response.text()
    total = count = 0.0
    buckets: dict[float, float] = {}
    labels = f'method="GET",route="{route}"'
    for line in text.splitlines():
        if not line.startswith(ROUTE_METRIC) or labels not in line:
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith(f"{ROUTE_METRIC}_sum"):
            total = float(value)
        elif name.startswith(f"{ROUTE_METRIC}_count"):
            count = float(value)
        elif name.startswith(f"{ROUTE_METRIC}_bucket"):
            match = re.search(r'le="([^"]+)"', name)
            if match:
                buckets[float(match.group(1))] = float(value)
    return total, count, buckets


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> str:
    """The bucket bound under which a fraction q of the interval's requests fell ("≤ x ms")."""
    delta = sorted((le, after.get(le, 0) - before.get(le, 0)) for le in after)
    if not delta or delta[-1][1] <= 0:
        return "—"
    for le, n in delta:
        if n >= q * delta[-1][1]:
            return "> 10 s" if le == float("inf") else f"≤ {le * 1000:g} ms"
    return "—"


# Where the time goes: py-spy -------------------------------------------------------------------------


def py_spy(path: str | None) -> str | None:
    return path if path and Path(path).is_file() else shutil.which(path or "py-spy")


async def profile(
    tool: str, pid: int, seconds: float, dest: Path
) -> subprocess.CompletedProcess[str]:
    """`py-spy record` of a process for `seconds`, collapsed stacks in `dest`."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                tool,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(round(seconds)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(dest),
                "--nonblocking",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )

    return await asyncio.get_running_loop().run_in_executor(None, run)


# A sample whose innermost frame is one of these is a thread waiting, not working: a worker
# thread waiting for work, or an event loop waiting in epoll (uvloop waits in C code, under
# its Python caller Runner.run).
WAITING = ("Condition.wait", "Queue.get", "select (selectors.py)", "Runner.run (asyncio/")


# Frames nearly every sample passes through, which say nothing of where the time goes.
PLUMBING = re.compile(
    r"<frozen runpy>|__main__\.py|asyncio/(runners|base_events|events)\.py|uvicorn/(server|_compat)"
    r"|^main \(|Middleware|middleware|_exception_handler|(Starlette|FastAPI|Router|APIRouter"
    r"|_IncludedRouter|APIRoute)\.|request_response|get_request_handler|run_asgi|Handle\._run"
)


def summarize_profile(dest: Path, seconds: float, rate: int = 200, top: int = 14) -> list[str]:
    """Working and waiting samples of the event loop thread and of the other threads (FastAPI
    runs sync dependencies in a thread pool), then the functions with the most working samples
    in them (inclusive, leaving out the frames nearly every sample has) and on top (self)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    share: Counter[str] = Counter()
    for line in dest.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [short_frame(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        thread = "other threads" if any("Thread._bootstrap" in f for f in frames) else "loop"
        if any(frames[-1].startswith(w) or w in frames[-1] for w in WAITING):
            share[f"{thread} waiting"] += n
            continue
        share[f"{thread} working"] += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    busy = share["loop working"] + share["other threads working"]
    if not busy:
        return ["  no working samples (py-spy could not read the process?)"]
    per_s = rate * seconds
    lines = [
        f"  {seconds:g} s at {rate} Hz: event loop thread working {share['loop working'] / per_s:.0%}"
        f" / waiting {share['loop waiting'] / per_s:.0%} of the time; other threads working "
        f"{share['other threads working'] / per_s:.0%}, waiting "
        f"{share['other threads waiting'] / per_s:.0%} (summed over threads)",
        "  most working time in (inclusive, % of working samples; start-up, event loop and "
        "ASGI plumbing frames left out):",
    ]
    telling = [(f, n) for f, n in inclusive.most_common() if not PLUMBING.search(f)]
    lines += [f"    {100 * n / busy:5.1f}%  {f}" for f, n in telling[:top]]
    lines.append("  on top of the stack (self):")
    lines += [f"    {100 * n / busy:5.1f}%  {f}" for f, n in own.most_common(top)]
    return lines


def short_frame(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py)`: lines merged, packages shortened."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    func, path = match.groups()
    parts = Path(path).parts
    where = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{func} ({where})"


# The benchmark --------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    offered: float
    seconds: float
    outcomes: list[Outcome]
    window_s: float  # t0 + warmup → last answer
    usage: Usage | None
    server: tuple[float, float, dict[float, float], dict[float, float]] | None
    nats_rtts: list[float]

    @property
    def latencies(self) -> list[float]:
        return sorted(x for o in self.outcomes for x in o.latencies)

    @property
    def sent(self) -> int:
        return sum(o.sent for o in self.outcomes)

    @property
    def statuses(self) -> Counter[int]:
        return sum((o.statuses for o in self.outcomes), Counter())

    @property
    def failures(self) -> Counter[str]:
        return sum((o.failures for o in self.outcomes), Counter())

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def errors(self) -> int:
        return self.sent - self.ok

    @property
    def achieved(self) -> float:
        return self.ok / self.window_s if self.window_s > 0 else 0.0


@dataclass
class BurstResult:
    n: int
    concurrency: int
    wall_s: float
    accepted: list[str]
    refused: Counter[str]
    other: Counter[str]
    latencies: list[float]
    unconfirmed: list[str]
    drain_s: float | None  # first submission → every accepted job terminal
    terminal: dict[str, int]
    listed: int
    found_by_get: int
    lost: list[str]
    extra: list[str]


@dataclass
class Results:
    load: LoadResult | None = None
    burst: BurstResult | None = None
    profiles: dict[str, list[str]] = field(default_factory=dict)


def spec_gateway(port: int, key: str) -> dict[str, str]:
    return {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "TRADEPULSE_API_KEYS": key,
    }


def pids_of(system: System, service: str) -> list[int]:
    return [p.pid for p in system.processes.values() if p.service == service and p.pid is not None]


async def bench_load(
    system: System,
    client: Client,
    gateway: Gateway,
    job_id: str,
    generators: Generators,
    args: argparse.Namespace,
    tmp: Path,
    results: Results,
) -> None:
    clients = len(generators.conns)
    print(
        f"\nGET {JOB} at {args.rate:g} requests/s for {args.seconds:g} s (after a "
        f"{args.warmup:g} s warm-up), open loop, {clients} generator process"
        f"{'es' if clients > 1 else ''}, {args.connections} keep-alive connections in all"
    )
    route = JOB  # the route template is the path with its parameter
    start_epoch = time.time() + 1.0
    schedules = [
        Schedule(
            url=f"{gateway.url}{JOB.format(job_id=job_id)}",
            headers=gateway.auth,
            rate=args.rate,
            warmup=args.warmup,
            seconds=args.seconds,
            index=i,
            clients=clients,
            connections=max(1, args.connections // clients),
            timeout=args.timeout,
            start_epoch=start_epoch,
            client=args.client,
        )
        for i in range(clients)
    ]
    probe = CpuProbe(system)
    running = asyncio.ensure_future(generators.run(schedules))
    measured_at = start_epoch + args.warmup
    await asyncio.sleep(max(0.0, measured_at - time.time()))
    before_cpu = probe.sample()
    before_server = await route_histogram(gateway, route)

    rtts: list[float] = []

    async def sample_nats() -> None:
        while not running.done():
            began = time.perf_counter()
            with contextlib.suppress(Exception):
                await client.job(job_id)
                rtts.append(time.perf_counter() - began)
            await asyncio.sleep(PROBE_EVERY_S)

    sampler = asyncio.ensure_future(sample_nats())
    spies: list[asyncio.Future[Any]] = []
    if args.profile:
        tool = py_spy(args.py_spy)
        if tool is None:
            print("  --profile: py-spy not found (PATH or --py-spy); no profile taken")
        else:
            await asyncio.sleep(min(5.0, args.seconds / 3))
            targets = {"gateway": pids_of(system, "gateway")[0]}
            trainers = pids_of(system, "trainer")
            if trainers:
                targets["trainer (one replica)"] = trainers[0]
            seconds = min(args.profile_seconds, args.seconds / 2)
            for label, pid in targets.items():
                dest = tmp / f"profile-{pid}.txt"

                async def spy(label: str = label, pid: int = pid, dest: Path = dest) -> None:
                    done = await profile(tool, pid, seconds, dest)
                    if done.returncode != 0 or not await asyncio.to_thread(dest.exists):
                        results.profiles[label] = [f"  py-spy failed: {done.stderr.strip()}"]
                    else:
                        results.profiles[label] = summarize_profile(dest, seconds)

                spies.append(asyncio.ensure_future(spy()))
    measured_end = measured_at + args.seconds
    await asyncio.sleep(max(0.0, measured_end - time.time()))
    after_cpu = probe.sample()
    after_server = await route_histogram(gateway, route)
    outcomes = await running
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    if spies:
        await asyncio.gather(*spies)
    usage = CpuProbe.usage(before_cpu, after_cpu)
    last = max((o.last_done_epoch for o in outcomes), default=measured_end)
    load = LoadResult(
        offered=args.rate,
        seconds=args.seconds,
        outcomes=outcomes,
        window_s=max(last, measured_end) - measured_at,
        usage=usage,
        server=(
            after_server[0] - before_server[0],
            after_server[1] - before_server[1],
            before_server[2],
            after_server[2],
        ),
        nats_rtts=sorted(rtts),
    )
    results.load = load
    lat = load.latencies
    lags = sorted(x for o in outcomes for x in o.lags)
    print(
        f"  sent {load.sent:,} in the measured {args.seconds:g} s; answered 2xx {load.ok:,} → "
        f"achieved {load.achieved:.0f}/s (last answer {load.window_s - args.seconds:.2f} s after "
        f"the last was due)"
    )
    print(
        f"  latency from due time: p50 {ms(percentile(lat, 50))}, p90 {ms(percentile(lat, 90))}, "
        f"p99 {ms(percentile(lat, 99))}, max {ms(lat[-1] if lat else float('nan'))}"
    )
    windows: dict[int, list[float]] = {}
    for o in outcomes:
        for due, latency in zip(o.dues, o.latencies, strict=True):
            windows.setdefault(int(due // WINDOW_S), []).append(latency)
    print(
        f"  p99 in each {WINDOW_S:g} s of the run: "
        + " / ".join(f"{percentile(sorted(v), 99) * 1000:.0f}" for _, v in sorted(windows.items()))
        + " ms"
    )
    other = {s: n for s, n in load.statuses.items() if not 200 <= s < 300}
    print(
        f"  errors: {load.errors:,} (non-2xx {dict(other) or 0}, "
        f"connection/timeouts {dict(load.failures) or 0})"
    )
    print(
        f"  generator lag (due → sent): p50 {ms(percentile(lags, 50))}, "
        f"p99 {ms(percentile(lags, 99))}, max {ms(lags[-1] if lags else float('nan'))}; "
        f"connections opened {sum(o.connections_opened for o in outcomes)} (idle ones closed by "
        f"the server: {sum(o.stale for o in outcomes)} dropped, "
        f"{sum(o.resent for o in outcomes)} requests re-sent); generator CPU "
        + ", ".join(f"{o.cpu_s:.1f} s" for o in outcomes)
        + f" over {args.warmup + args.seconds:g} s"
    )
    if load.server and load.server[1]:
        total, count, b0, b1 = load.server
        print(
            f"  in the gateway (its histogram, request in → response start, {count:,.0f} requests): "
            f"mean {ms(total / count)}, p50 {histogram_quantile(0.5, b0, b1)}, "
            f"p99 {histogram_quantile(0.99, b0, b1)}"
        )
    if rtts:
        r = load.nats_rtts
        print(
            f"  trainer GetJob over NATS from this process meanwhile ({len(r)} samples): "
            f"p50 {ms(percentile(r, 50))}, p99 {ms(percentile(r, 99))}, max {ms(r[-1])}"
        )
    if usage is not None:
        gen = sum(o.cpu_s for o in outcomes) * args.seconds / (args.warmup + args.seconds)
        print(f"  {usage.describe()}")
        print(f"  + the load generators ≈ {gen:.1f} s ({100 * gen / usage.wall:.0f}%)")
    for label, lines in results.profiles.items():
        print(f"\n  where the time goes in the {label} (py-spy):")
        print("\n".join(lines))


async def bench_burst(
    gateway: Gateway, setup_job: str, args: argparse.Namespace, results: Results
) -> None:
    n, concurrency = args.burst, args.concurrency
    print(
        f"\n{n:,} × POST /api/v2/training/start (n_iterations {BURST_JOB['n_iterations']}, "
        f"lookback_candles {BURST_JOB['lookback_candles']}), {concurrency} at a time"
    )
    accepted: list[str] = []
    unconfirmed: list[str] = []
    refused: Counter[str] = Counter()
    other: Counter[str] = Counter()
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with gateway.session(connections=concurrency, timeout=args.timeout * 3) as http:

        async def submit(i: int) -> None:
            payload = {**PAYLOAD, **BURST_JOB, "seed": 1000 + i}
            async with gate:
                began = time.perf_counter()
                try:
                    async with http.post("/api/v2/training/start", json=payload) as response:
                        status, text = response.status, await response.text()
                except Exception as exc:
                    other[type(exc).__name__] += 1
                    return
                latencies.append(time.perf_counter() - began)
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            if status == 202 and isinstance(body, dict) and body.get("job_id"):
                accepted.append(body["job_id"])
            elif (
                (status == 503 or 400 <= status < 500)
                and isinstance(body, dict)
                and body.get("detail")
            ):
                refused[str(status)] += 1
                unconfirmed.extend(body.get("unconfirmed_job_ids") or [])
            else:
                other[f"{status} {text[:80]!r}"] += 1

        began = time.perf_counter()
        await asyncio.gather(*(submit(i) for i in range(n)))
        wall = time.perf_counter() - began
        lat = sorted(latencies)
        print(
            f"  {wall:.2f} s → {n / wall:.0f} submissions/s; accepted {len(accepted):,}, refused "
            f"cleanly {sum(refused.values()):,}{f' {dict(refused)}' if refused else ''}, other "
            f"{sum(other.values()):,}{f' {dict(other)}' if other else ''}"
        )
        print(
            f"  answer time p50 {ms(percentile(lat, 50))}, p99 {ms(percentile(lat, 99))}, "
            f"max {ms(lat[-1] if lat else float('nan'))}"
        )

        # Drain: the namespace is this benchmark's own, so the terminal totals are its jobs.
        expected = len(accepted) + 1  # + the job the reads asked for
        terminal: dict[str, int] = {}
        drain_s: float | None = None
        deadline = began + args.drain_within
        shown = 0.0
        while True:
            totals = await asyncio.gather(
                *(get_json(http, "/api/v2/training/jobs", status=s, limit=1) for s in TERMINAL)
            )
            terminal = {s: t["total"] for s, t in zip(TERMINAL, totals, strict=True)}
            now = time.perf_counter()
            if sum(terminal.values()) >= expected:
                drain_s = now - began
                break
            if now > deadline:
                break
            if now - shown >= 10:
                shown = now
                print(f"  … {now - began:.0f} s: terminal {terminal} of {expected:,}")
            await asyncio.sleep(0.25)
        done = sum(terminal.values())
        terminal = {s: v - (1 if s == "completed" else 0) for s, v in terminal.items()}
        if drain_s is not None:
            print(
                f"  all {len(accepted):,} accepted jobs terminal {drain_s:.1f} s after the first "
                f"submission ({drain_s - wall:.1f} s after the last answer, "
                f"{len(accepted) / drain_s:.1f} jobs/s): {terminal}"
            )
        else:
            print(
                f"  NOT drained within {args.drain_within:g} s: {done - 1:,} of {len(accepted):,} "
                f"terminal {terminal}"
            )

        if terminal.get("failed"):
            page = await get_json(http, "/api/v2/training/jobs", status="failed", limit=1000)
            reasons = Counter(str(j["error"])[:160] for j in page["jobs"])
            print("  why jobs failed (GET /jobs?status=failed):")
            for reason, count in reasons.most_common(5):
                print(f"    {count:,} × {reason}")

        # None lost: every accepted id listed (or answered by GET /job/{id}).
        listed_ids: set[str] = set()
        offset = 0
        while True:
            page = await get_json(http, "/api/v2/training/jobs", limit=1000, offset=offset)
            listed_ids.update(j["job_id"] for j in page["jobs"])
            offset += len(page["jobs"])
            if not page["jobs"] or offset >= page["total"]:
                break
        missing = [j for j in accepted if j not in listed_ids]
        lost: list[str] = []
        for job_id in missing:
            async with http.get(JOB.format(job_id=job_id)) as response:
                if response.status != 200:
                    lost.append(job_id)
        known = {*accepted, *unconfirmed, setup_job}
        extra = sorted(listed_ids - known)
        print(
            f"  listed {len(listed_ids):,} jobs; accepted and listed {len(accepted) - len(missing):,}, "
            f"found only by GET /job/{{id}} {len(missing) - len(lost)}, lost {len(lost)}"
            + (f" {lost[:5]}" if lost else "")
            + f"; listed but never accepted {len(extra)}"
            + (f" ({len(set(extra) & set(unconfirmed))} of them unconfirmed)" if extra else "")
        )
    results.burst = BurstResult(
        n=n,
        concurrency=concurrency,
        wall_s=wall,
        accepted=accepted,
        refused=refused,
        other=other,
        latencies=lat,
        unconfirmed=unconfirmed,
        drain_s=drain_s,
        terminal=terminal,
        listed=len(listed_ids),
        found_by_get=len(missing) - len(lost),
        lost=lost,
        extra=extra,
    )


async def measure(args: argparse.Namespace, tmp: Path, generators: Generators) -> Results:
    results = Results()
    port, key = free_port(), secrets.token_urlsafe(24)
    gateway = Gateway(f"http://127.0.0.1:{port}", key)
    async with resources(args.embedded) as (names, nats_url, database_url):
        started = time.perf_counter()
        async with (
            running_system(
                tmp,
                names,
                trainers=args.trainers,
                nats_url=nats_url,
                database_url=database_url,
                services=("ingest", "registry", "trainer", "gateway"),
                environment={"gateway": {**spec_gateway(port, key), **args.gateway_env}},
            ) as system,
            Client.connect(system.nats_url, names) as client,
        ):
            await wait_http_ready(gateway)
            if args.gateway_env:
                print(f"gateway settings added: {args.gateway_env}")
            print(
                f"system ready in {time.perf_counter() - started:.1f} s: gateway {gateway.url}, "
                f"{args.trainers} trainer replicas (logs: {system.logs_dir})"
            )
            async with gateway.session() as http:
                part = excerpt(args.data, EXCERPT_ROWS, tmp / "btc_5m.csv")
                t = time.perf_counter()
                imported = await upload(http, part)
                print(
                    f"uploaded a {imported['dataset']['rows']:,}-candle excerpt in "
                    f"{time.perf_counter() - t:.2f} s"
                )
                t = time.perf_counter()
                job_id = await start_job(http, PAYLOAD)
                job = await wait_done(http, job_id)
                print(
                    f"job {job_id} ({PAYLOAD['n_iterations']} trials, "
                    f"{PAYLOAD['lookback_candles']:,} candles) completed with its configuration "
                    f"in {time.perf_counter() - t:.2f} s; its view is {len(json.dumps(job))} bytes"
                )
            await bench_load(system, client, gateway, job_id, generators, args, tmp, results)
            await bench_burst(gateway, job_id, args, results)
    return results


def table(results: Results, args: argparse.Namespace) -> str:
    rows = [("Figure", "Value")]
    load = results.load
    if load is not None:
        lat = load.latencies
        rows += [
            (
                f"GET /api/v2/training/job/{{id}}: offered {load.offered:g}/s for {load.seconds:g} s "
                f"(open loop, {args.connections} keep-alive connections)",
                f"achieved {load.achieved:.0f}/s",
            ),
            (
                "  latency from due time p50 / p90 / p99 / max",
                " / ".join(f"{percentile(lat, q) * 1000:.1f}" for q in (50, 90, 99))
                + f" / {lat[-1] * 1000:.0f} ms"
                if lat
                else "—",
            ),
            (
                "  errors (non-2xx, timeouts, connection errors)",
                f"{load.errors:,} of {load.sent:,}",
            ),
        ]
        if load.usage is not None:
            busy = {
                k: v / load.usage.wall
                for k, v in load.usage.groups.items()
                if v / load.usage.wall >= 0.05
            }
            gen = sum(o.cpu_s for o in load.outcomes) / (args.warmup + args.seconds)
            rows.append(
                (
                    "  CPU meanwhile (cores)",
                    ", ".join(f"{k} {v:.2f}" for k, v in busy.items())
                    + f", load generators {gen:.2f}, machine {load.usage.machine / load.usage.wall:.2f}"
                    f" of {os.cpu_count()}",
                )
            )
    burst = results.burst
    if burst is not None:
        rows += [
            (
                f"{burst.n:,} × POST /api/v2/training/start in a burst ({burst.concurrency} at a time, "
                f"1 trial, 500 candles)",
                f"{burst.n / burst.wall_s:.0f}/s; accepted {len(burst.accepted):,}, refused cleanly "
                f"{sum(burst.refused.values()):,}, other {sum(burst.other.values()):,}",
            ),
            (
                "  answer time p50 / p99",
                f"{percentile(burst.latencies, 50) * 1000:.0f} / "
                f"{percentile(burst.latencies, 99) * 1000:.0f} ms",
            ),
            ("  accepted jobs lost", f"{len(burst.lost)}"),
            (
                "  drained: accepted jobs terminal (completed), first submission → last done",
                (
                    f"{sum(burst.terminal.values()):,} ({burst.terminal.get('completed', 0):,}) "
                    + (
                        f"in {burst.drain_s:.1f} s"
                        if burst.drain_s is not None
                        else f"not all within {args.drain_within:g} s"
                    )
                ),
            ),
        ]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def passed(results: Results) -> bool:
    load, burst = results.load, results.burst
    return (
        load is not None
        and burst is not None
        and load.errors == 0
        and load.achieved >= MIN_RATE_FRACTION * load.offered
        and not burst.other
        and not burst.lost
        and burst.drain_s is not None
    )


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
    print(f"command: {command}")
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print("servers: " + ("embedded (started by the system)" if args.embedded else "the machine's"))
    # Forked first, while this process has no event loop, threads or connections.
    generators = Generators(args.clients)
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    tmp.chmod(0o755)  # the embedded PostgreSQL's user must be able to enter the data dir
    try:
        results = asyncio.run(measure(args, tmp, generators))
    finally:
        generators.close()
        if args.keep:
            print(f"\nsystem data, logs and profiles kept in {tmp}")
        else:
            for data_dir in tmp.glob("system-*"):
                shutil.rmtree(relocated_root(data_dir), ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal benchmark time {time.perf_counter() - began:.0f} s; command: {command}\n")
    print(table(results, args))
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if passed(results) else 1


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return value

    return parse


def arguments(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rate", type=positive(float), default=500.0, help="requests/s offered")
    parser.add_argument("--seconds", type=positive(float), default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent, not counted")
    parser.add_argument("--clients", type=positive(int), default=1, help="generator processes")
    parser.add_argument(
        "--client", choices=("raw", "aiohttp"), default="raw", help="the generators' HTTP client"
    )
    parser.add_argument("--connections", type=positive(int), default=64, help="in all")
    parser.add_argument("--timeout", type=positive(float), default=10.0, help="per request, s")
    parser.add_argument("--burst", type=positive(int), default=1000, help="jobs submitted")
    parser.add_argument("--concurrency", type=positive(int), default=50)
    parser.add_argument("--trainers", type=positive(int), default=2, help="trainer replicas")
    parser.add_argument("--drain-within", type=positive(float), default=120.0)
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway and a trainer")
    parser.add_argument("--profile-seconds", type=positive(float), default=5.0)
    parser.add_argument("--py-spy", help="the py-spy binary (default: from PATH)")
    parser.add_argument(
        "--gateway-env",
        action="append",
        type=setting,
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the gateway process (repeatable), e.g. LOG_LEVEL=warning",
    )
    parser.add_argument("--embedded", action="store_true", help="let the system start its servers")
    parser.add_argument("--keep", action="store_true", help="keep the system data dir and logs")
    args = parser.parse_args(None if argv is None else list(argv))
    args.gateway_env = dict(args.gateway_env)
    return args


def setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


if __name__ == "__main__":
    raise SystemExit(main(arguments()))
