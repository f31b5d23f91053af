"""Benchmark of the ingest service: the whole shared BTC file, end to end. A script, not a test.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--data FILE] [--repeat N]

Starts `python -m tradepulse.ingest` on the machine's NATS and PostgreSQL (NATS_URL and
DATABASE_ADMIN_URL, defaults 127.0.0.1) in a namespace and database of its own, removed
afterwards. Each run imports the file as a new dataset and then once more (nothing to add),
timing from publishing IngestRequested to receiving CandlesIngested: parse, validation, COPY,
upsert, read-back, merged validation, snapshot, coverage and publish all included. Prints the
times and the service's own per-stage figures. Target: a new dataset in at most 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from nats.aio.client import Client as NatsClient

from tradepulse.common.bus import connect, ensure_streams, publish, stream_configs
from tradepulse.common.contracts.market import (
    CandlesIngested,
    DatasetKey,
    IngestFailed,
    IngestRequested,
)
from tradepulse.common.contracts.subjects import Names

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
ADMIN_DSN = os.environ.get("DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_S = 5.0


async def _timed_ingest(
    nc: NatsClient, names: Names, request: IngestRequested
) -> tuple[float, CandlesIngested]:
    sub = await nc.subscribe(f"{names.prefix}.evt.market.>")
    try:
        started = time.perf_counter()
        await publish(nc.jetstream(), names.ingest_requested, request)
        while True:
            msg = await sub.next_msg(timeout=120)
            kind = CandlesIngested if msg.subject == names.candles_ingested else IngestFailed
            event = kind.from_bytes(msg.data)
            if event.request_id != request.request_id:
                continue
            elapsed = time.perf_counter() - started
            if isinstance(event, IngestFailed):
                raise SystemExit(f"ingest failed: {event.reason}")
            return elapsed, event
    finally:
        await sub.unsubscribe()


async def _wait_ready(nc: NatsClient, names: Names, proc: asyncio.subprocess.Process) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < 120:
        if proc.returncode is not None:
            raise SystemExit(f"the service exited with {proc.returncode} before it was ready")
        try:
            await nc.request(names.ping("ingest"), b"", timeout=0.5)
            return time.perf_counter() - started
        except Exception:  # not answering yet
            await asyncio.sleep(0.1)
    raise SystemExit("the service did not answer its ping within 120 s")


async def main(data: Path, repeat: int) -> int:
    names = Names(f"bench{uuid.uuid4().hex[:10]}")
    database = f"tp_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = f"{ADMIN_DSN.rpartition('/')[0]}/{database}"
    nc = await connect(NATS_URL, "bench-ingest")
    js = nc.jetstream()
    await ensure_streams(js, names)
    log_path = Path(tempfile.mkdtemp(prefix="bench-ingest-")) / "ingest.log"
    env = {
        **os.environ,
        "NATS_URL": NATS_URL,
        "DATABASE_URL": dsn,
        "TP_NAMESPACE": names.prefix,
        "LOG_JSON": "1",
        # Ingest reads server paths only inside its roots.
        "INGEST_FILE_ROOT": str(data.parent),
    }
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradepulse.ingest", env=env, stdout=log, stderr=log
        )
    try:
        ready_s = await _wait_ready(nc, names, proc)
        print(f"service ready in {ready_s:.2f} s (log: {log_path})")
        fresh: list[float] = []
        again: list[float] = []
        for run in range(repeat):
            # A new dataset per run, in a table that already holds the earlier runs' candles.
            key = DatasetKey(exchange=f"bench{run}", symbol="BTC/USDT", timeframe="5m")
            for label, times in (("new", fresh), ("again", again)):
                request = IngestRequested(
                    request_id=f"{label}-{run}", dataset=key, source="file", path=str(data)
                )
                elapsed, event = await _timed_ingest(nc, names, request)
                times.append(elapsed)
                print(
                    f"run {run + 1} {label:>5}: {elapsed:6.2f} s  rows {event.coverage.rows:,} "
                    f"added {event.rows_added:,}  gaps {event.coverage.gaps} "
                    f"({event.coverage.missing_candles} missing)"
                )
        conn = await asyncpg.connect(dsn)
        try:
            stages = await conn.fetch(
                "SELECT request_id, report->'timings_ms' AS t FROM market.ingests ORDER BY created_at"
            )
        finally:
            await conn.close()
        print("\nin-service stages, ms:")
        for row in stages:
            print(f"  {row['request_id']:>8}: {json.loads(row['t'])}")
        print(
            f"\nimport of the whole file as a new dataset, end to end: median "
            f"{statistics.median(fresh):.2f} s, worst {max(fresh):.2f} s over {repeat} run(s) "
            f"(target <= {TARGET_S:.0f} s)"
        )
        print(f"the same file again (nothing added): median {statistics.median(again):.2f} s")
        return 0 if max(fresh) <= TARGET_S else 1
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        for config in stream_configs(names):
            if config.name:
                await js.delete_stream(config.name)
        await js.delete_object_store(names.candles_bucket)
        await nc.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.data, args.repeat)))
