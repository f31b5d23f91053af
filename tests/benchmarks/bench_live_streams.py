"""What opening a job's live stream costs: N streams opened at once on one running job.
A script, not a test.

    .venv/bin/python tests/benchmarks/bench_live_streams.py [--streams 500] [--rounds 3]
        [--trainers 1] [--gateway-env NAME=VALUE] [--profile] [--embedded]

Runs the real ingest, registry, trainer and gateway processes (`running_system`, the gateway as
the supervisor starts it: uvicorn on a free loopback port) on the machine's NATS and PostgreSQL
in a namespace and a database of their own (--embedded: the system's own servers), uploads an
excerpt of the shared BTC file and starts one long job. While it runs, each round sends, all at
once from this process on raw asyncio sockets (so the client's own cost stays small), in turn:

- `GET /health` --streams times: the bare cost of a connection and a request (no key, no read);
- `GET /api/v2/training/job/{id}/events` --streams times: what the issue measures, up to each
  stream's first event (`state`); the streams are then closed.

After the rounds, `GET /api/v2/training/job/{id}` --streams times: the key, then one job read
each, unshared (last, since the trainer's backlog of them would slow what follows).

For each it prints the distribution of the time from the burst's start to the answer (for a
stream: its first event): median, p99 and max, and the ratio of each to the `/health` peer of the
same round, so that a loaded machine shows in both. Before each burst it waits until the
gateway holds no stream any more (its `tradepulse_gateway_live_streams` gauge). --profile samples
the gateway with py-spy (on PATH) during the last round's stream burst and prints where its time
goes. It ends by cancelling the job. Exits 1 if any answer was not 200 or a stream did not open.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from the repo root: `tests` is importable

from tests.benchmarks.bench_gateway import (  # noqa: E402
    DEFAULT_DATA,
    PAYLOAD,
    Gateway,
    free_port,
    percentile,
    pids_of,
    profile,
    py_spy,
    spec_gateway,
    start_job,
    summarize_profile,
    upload,
    wait_http_ready,
)
from tests.benchmarks.bench_training import resources  # noqa: E402
from tests.integration.flows import excerpt, running_system  # noqa: E402

EXCERPT_ROWS = 6_000
# Long enough to outlast every round on a busy machine; cancelled at the end.
JOB = {**PAYLOAD, "n_iterations": 100_000, "lookback_candles": 3_000}
ANSWER_WITHIN_S = 60.0
PROFILE_S = 3.0
STREAMS_GAUGE = "tradepulse_gateway_live_streams"


@dataclass
class Answer:
    status: int
    seconds: float  # from the burst's start to the answer (a stream: its first event)


async def ask(
    host: str, port: int, path: str, key: str | None, t0: float, *, stream: bool
) -> Answer:
    """One request on its own connection; for a stream, read up to its first event only."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Connection: close\r\n\r\n".encode()
        )
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        if stream and status == 200:
            seen = b""
            while b"\ndata: " not in seen and b"\r\ndata: " not in seen:
                chunk = await reader.read(65536)
                if not chunk:
                    return Answer(0, time.perf_counter() - t0)  # ended before its first event
                seen += chunk
        else:
            await reader.read()
        return Answer(status, time.perf_counter() - t0)
    finally:
        writer.close()


async def burst(
    gateway: Gateway, path: str, n: int, *, key: bool, stream: bool = False
) -> list[Answer]:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    t0 = time.perf_counter()
    async with asyncio.timeout(ANSWER_WITHIN_S):
        return await asyncio.gather(
            *(
                ask(host, int(port), path, gateway.key if key else None, t0, stream=stream)
                for _ in range(n)
            )
        )


def spread(answers: list[Answer]) -> tuple[float, float, float]:
    times = sorted(a.seconds for a in answers)
    return percentile(times, 50), percentile(times, 99), times[-1]


def line(name: str, answers: list[Answer], peer: tuple[float, float, float] | None) -> str:
    median, p99, top = spread(answers)
    bad = sum(a.status != 200 for a in answers)
    text = f"  {name:<34} median {median * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  max {top * 1000:7.1f} ms"
    if peer is not None:
        text += f"  (x{median / peer[0]:.1f} / x{p99 / peer[1]:.1f} / x{top / peer[2]:.1f} /health)"
    if bad:
        text += f"  {bad} not 200: {sorted({a.status for a in answers if a.status != 200})}"
    return text


async def measure(args: argparse.Namespace, tmp: Path) -> bool:
    port, key = free_port(), secrets.token_urlsafe(24)
    gateway = Gateway(f"http://127.0.0.1:{port}", key)
    ok = True
    tool = py_spy(None) if args.profile else None
    if args.profile and tool is None:
        raise SystemExit("--profile: py-spy is not on PATH")
    async with (
        resources(args.embedded) as (names, nats_url, database_url),
        running_system(
            tmp,
            names,
            trainers=args.trainers,
            nats_url=nats_url,
            database_url=database_url,
            services=("ingest", "registry", "trainer", "gateway"),
            environment={"gateway": {**spec_gateway(port, key), **args.gateway_env}},
        ) as system,
    ):
        await wait_http_ready(gateway)
        async with gateway.session() as http:
            await upload(http, excerpt(args.data, EXCERPT_ROWS, tmp / "btc_5m.csv"))
            job_id = await start_job(http, JOB)
            print(f"job {job_id}: {JOB['n_iterations']:,} trials, running during the rounds")
            for round_no in range(1, args.rounds + 1):
                print(f"round {round_no}: {args.streams} at once ({uptime()})")
                health = await burst(gateway, "/health", args.streams, key=False)
                peer = spread(health)
                print(line("GET /health", health, None))
                sampling = None
                if tool is not None and round_no == args.rounds:
                    sampling = asyncio.create_task(
                        profile(tool, pids_of(system, "gateway")[0], PROFILE_S, tmp / "spy")
                    )
                    await asyncio.sleep(0.5)  # py-spy attached
                streams = await burst(
                    gateway,
                    f"/api/v2/training/job/{job_id}/events",
                    args.streams,
                    key=True,
                    stream=True,
                )
                print(line("GET /job/{id}/events, first event", streams, peer))
                if sampling is not None:
                    done = await sampling
                    if done.returncode != 0:
                        print(f"  py-spy failed: {done.stderr.strip()[-300:]}")
                    else:
                        print("\n".join(summarize_profile(tmp / "spy", PROFILE_S)))
                await streams_closed(http)
                ok &= all(a.status == 200 for a in (*health, *streams))
            # Last: the trainer answers every unshared read, and a backlog of them would delay
            # the shared reads of a burst after them.
            reads = await burst(gateway, f"/api/v2/training/job/{job_id}", args.streams, key=True)
            print(f"unshared job reads, once ({uptime()})")
            print(line("GET /job/{id}", reads, spread(health)))
            async with http.post(f"/api/v2/training/job/{job_id}/cancel") as response:
                await response.read()
    return ok


async def streams_closed(http: aiohttp.ClientSession) -> None:
    """Until the gateway has let go of every stream of the last burst."""
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while time.monotonic() < deadline:
        async with http.get("/metrics") as response:
            text = await response.text()
        gauge = [ln for ln in text.splitlines() if ln.startswith(STREAMS_GAUGE + " ")]
        if gauge and float(gauge[0].split()[1]) == 0:
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the gateway kept streams open after their clients left")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trainers", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting added to the gateway process (repeatable)",
    )
    args = parser.parse_args()
    args.gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
    print(
        f"{args.streams} concurrent requests per burst, {args.rounds} rounds, "
        f"{args.trainers} trainer(s), {os.cpu_count()} cores"
    )
    with TemporaryDirectory(prefix="bench-live-") as folder:
        ok = asyncio.run(measure(args, Path(folder)))
    print(
        "command: .venv/bin/python tests/benchmarks/bench_live_streams.py " + " ".join(sys.argv[1:])
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
