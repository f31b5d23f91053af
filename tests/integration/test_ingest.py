"""The ingest service against the real NATS and PostgreSQL.

Flow tests run the service as a subprocess and talk to it over NATS only. The exchange path
runs the same service in-process, because no exchange is reachable from here: its ccxt
exchange is a real `ccxt.async_support.binance` whose `load_markets` and `fetch_ohlcv` serve
recorded Binance candles from the shared file, so our paging and retries run unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import os
import signal
import sys
import tempfile
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import asyncpg
import ccxt.async_support as ccxt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import ObjectNotFoundError
from prometheus_client import CollectorRegistry

from tests.support.polling import wait_until
from tradepulse.common.bus import connect, publish
from tradepulse.common.contracts.base import ErrorReply
from tradepulse.common.contracts.market import (
    CandlesIngested,
    CoverageQuery,
    CoverageReply,
    DatasetKey,
    GetIngest,
    IngestFailed,
    IngestRequested,
)
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.ingest import handlers
from tradepulse.ingest.app import run
from tradepulse.ingest.errors import ExchangeUnavailableError
from tradepulse.ingest.exchange import ccxt_factory
from tradepulse.ingest.metrics import IngestMetrics
from tradepulse.ingest.settings import IngestSettings
from tradepulse.ingest.snapshots import NatsSnapshotStore, NatsUploadStore
from tradepulse.quant import Candles, load_candles

from ..conftest import SHARED_DATA
from .conftest import Env

BTC = DatasetKey(exchange="binance", symbol="BTC/USDT", timeframe="5m")
FIVE_MINUTES_MS = 300_000
SHARED_ROWS = 315_632
TEST_SETTINGS = {
    "INGEST_EXCHANGE_BACKOFF_S": "0.01",
    "INGEST_EXCHANGE_ATTEMPTS": "3",
    # The tests' files (pytest's temporary folders) and the shared data.
    "INGEST_FILE_ROOT": os.pathsep.join([tempfile.gettempdir(), str(SHARED_DATA)]),
}


# --- the stand-in exchange --------------------------------------------------------------------


class RecordedBinance(ccxt.binance):  # type: ignore[misc]
    """ccxt's binance with the network replaced by recorded candles.

    `calls` logs the `since` of every fetch_ohlcv call; the calls numbered in `fail_calls`
    (1-based, across every instance sharing `calls`) raise a ccxt network error instead.
    """

    def __init__(
        self, history: Candles, calls: list[int | None], fail_calls: set[int] | None = None
    ) -> None:
        super().__init__({"enableRateLimit": True})
        self.history = history
        self.calls = calls
        self.fail_calls = fail_calls or set()

    async def load_markets(self, reload: bool = False, params: Any = None) -> Any:
        if not self.markets:
            self.set_markets(
                [
                    {
                        "id": "BTCUSDT",
                        "symbol": "BTC/USDT",
                        "base": "BTC",
                        "quote": "USDT",
                        "baseId": "BTC",
                        "quoteId": "USDT",
                        "type": "spot",
                        "spot": True,
                        "swap": False,
                        "future": False,
                        "option": False,
                        "contract": False,
                        "linear": None,
                        "inverse": None,
                        "active": True,
                        "precision": {},
                        "limits": {},
                        "info": {},
                    }
                ]
            )
        return self.markets

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: Any = None,
    ) -> list[list[float]]:
        self.calls.append(since)
        await self.load_markets()
        self.market(symbol)  # raises ccxt.BadSymbol, as the real call does
        if len(self.calls) in self.fail_calls:
            # What binance's HTTP 429 and a timeout surface as: both ccxt.NetworkError.
            if len(self.calls) % 2:
                raise ccxt.RequestTimeout("binance GET /api/v3/klines timed out (recorded)")
            raise ccxt.DDoSProtection("binance 429 Too Many Requests (recorded)")
        if timeframe != "5m":
            raise ccxt.BadRequest(f"only 5m candles are recorded, not {timeframe}")
        h = self.history
        start = 0 if since is None else int(np.searchsorted(h.open_time, since))
        stop = min(len(h), start + min(limit or 500, 1000))  # binance serves at most 1000
        return [
            [int(h.open_time[i]), h.open[i], h.high[i], h.low[i], h.close[i], h.volume[i]]
            for i in range(start, stop)
        ]


# --- fixtures and helpers -----------------------------------------------------------------------


def _settings(env: Env, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> IngestSettings:
    """Settings for an in-process service or handlers, read from the environment as in main()."""
    for name, value in env.as_environ(**{**TEST_SETTINGS, **overrides}).items():
        monkeypatch.setenv(name, value)
    return IngestSettings()


@pytest.fixture
async def bus(env: Env) -> AsyncIterator[NatsClient]:
    nc = await connect(env.nats_url, "test-ingest")
    yield nc
    await nc.close()


@pytest.fixture
async def db(env: Env) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database (tables appear once the service has migrated)."""
    conn = await asyncpg.connect(env.database_url)
    yield conn
    await conn.close()


async def _wait_ready(nc: NatsClient, names: Names, replica: str, within_s: float = 60.0) -> None:
    """Until the replica answers its ping with its name."""

    async def answer() -> bytes | None:
        try:
            return (await nc.request(names.ping("ingest"), b"", timeout=0.5)).data
        except Exception:  # no responder yet, or a timeout: the service is still starting
            return None

    assert (
        await wait_until(answer, within=within_s, message="ingest to answer ping")
        == replica.encode()
    )


@pytest.fixture
async def service(env: Env, bus: NatsClient, tmp_path: Path) -> AsyncIterator[Path]:
    """`python -m tradepulse.ingest` as a subprocess, ready; yields its log file."""
    log_path = tmp_path / "ingest.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tradepulse.ingest",
            env=env.as_environ(**TEST_SETTINGS, TP_REPLICA="ingest-1"),
            stdout=log,
            stderr=log,
        )
        try:
            await _wait_ready(bus, env.names, "ingest-1")
            yield log_path
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0, log_path.read_text()[-3000:]
    for line in log_path.read_text().splitlines():
        entry = json.loads(line)
        assert entry["level"] in ("info", "warning"), line
        assert "exception" not in entry, line


@pytest.fixture
async def deps(
    env: Env, bus: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[handlers.Deps]:
    """What the service gives its handlers, on the test's database and namespace."""
    settings = _settings(env, monkeypatch)
    pool = await create_pool(env.database_url)
    await apply_migrations(pool, "market", "tradepulse.ingest.migrations")
    store = await bus.jetstream().object_store(env.names.candles_bucket)
    yield handlers.Deps(
        pool=pool,
        snapshots=NatsSnapshotStore(store),
        uploads=NatsUploadStore(bus.jetstream(), env.names.uploads_bucket),
        exchange_factory=_no_exchange,
        settings=settings,
        metrics=IngestMetrics.register(CollectorRegistry()),
    )
    await pool.close()


def _no_exchange(exchange_id: str) -> Any:
    raise AssertionError(f"this test must not reach an exchange ({exchange_id})")


async def _ingest(
    nc: NatsClient, names: Names, request: IngestRequested, within_s: float = 30.0
) -> CandlesIngested | IngestFailed:
    """Send the request over the work queue and wait for the event that answers it."""
    sub = await nc.subscribe(f"{names.prefix}.evt.market.>")
    try:
        await publish(nc.jetstream(), names.ingest_requested, request)
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            msg = await sub.next_msg(timeout=deadline - asyncio.get_running_loop().time())
            kind = CandlesIngested if msg.subject == names.candles_ingested else IngestFailed
            event = kind.from_bytes(msg.data)
            if event.request_id == request.request_id:
                return event
    finally:
        await sub.unsubscribe()


async def _stored(conn: asyncpg.Connection, key: DatasetKey = BTC) -> Candles:
    rows = await conn.fetch(
        """SELECT open_time, open, high, low, close, volume FROM market.candles
           WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 ORDER BY open_time""",
        key.exchange,
        key.symbol,
        key.timeframe,
    )
    values = np.array(rows, dtype=np.float64).reshape(-1, 6)  # open times < 2**53: exact
    return Candles.from_arrays(
        values[:, 0].astype(np.int64), *values[:, 1:].T, timeframe_seconds=300
    )


async def _snapshot(nc: NatsClient, names: Names, name: str) -> Candles:
    store = await nc.jetstream().object_store(names.candles_bucket)
    data = (await store.get(name)).data
    assert data is not None
    return Candles.from_bytes(data)


async def _count(conn: asyncpg.Connection, table: str) -> int:
    value: int = await conn.fetchval(f"SELECT count(*) FROM market.{table}")
    return value


def _write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), newline="")
    return path


def _excerpt_lines(excerpt: Path) -> list[str]:
    return excerpt.read_text().splitlines(keepends=True)


# --- flows through the service process ---------------------------------------------------------


async def test_the_shared_file_imported_twice_is_stored_once(
    env: Env, service: Path, bus: NatsClient, db: asyncpg.Connection, shared_candles_path: Path
) -> None:
    names = env.names
    first = await _ingest(
        bus,
        names,
        IngestRequested(
            request_id="full-1", dataset=BTC, source="file", path=str(shared_candles_path)
        ),
    )
    assert isinstance(first, CandlesIngested), first
    assert (first.rows_received, first.rows_added) == (SHARED_ROWS, SHARED_ROWS)
    coverage = first.coverage
    assert (coverage.rows, coverage.expected_rows) == (SHARED_ROWS, 315_648)
    assert (coverage.gaps, coverage.missing_candles) == (1, 16)
    assert coverage.largest_gap is not None
    assert (coverage.largest_gap.after_time, coverage.largest_gap.next_time) == (
        1_679_661_300_000,
        1_679_666_400_000,
    )
    assert (coverage.first_ms, coverage.last_ms) == (1_640_995_200_000, 1_735_689_300_000)

    second = await _ingest(
        bus,
        names,
        IngestRequested(
            request_id="full-2", dataset=BTC, source="file", path=str(shared_candles_path)
        ),
    )
    assert isinstance(second, CandlesIngested), second
    assert (second.rows_received, second.rows_added) == (SHARED_ROWS, 0)
    assert second.coverage.content_hash == coverage.content_hash
    assert second.coverage.snapshot == coverage.snapshot
    assert await _count(db, "candles") == SHARED_ROWS
    assert await _count(db, "datasets") == 1

    stored = await _stored(db)
    snapshot = await _snapshot(bus, names, coverage.snapshot)
    assert snapshot.content_hash() == stored.content_hash() == coverage.content_hash
    assert load_candles(shared_candles_path).content_hash() == coverage.content_hash

    reply = await bus.request(
        names.coverage, CoverageQuery(symbol="BTC/USDT").to_bytes(), timeout=5
    )
    assert CoverageReply.from_bytes(reply.data).datasets == [second.coverage]
    reply = await bus.request(
        names.coverage, CoverageQuery(exchange="kraken").to_bytes(), timeout=5
    )
    assert CoverageReply.from_bytes(reply.data).datasets == []


async def test_a_file_with_one_bad_row_is_refused_naming_the_line_and_nothing_is_stored(
    env: Env,
    service: Path,
    bus: NatsClient,
    db: asyncpg.Connection,
    candles_excerpt: Path,
    tmp_path: Path,
) -> None:
    lines = _excerpt_lines(candles_excerpt)
    t, o, _h, lo, c, v = lines[3000].rstrip("\n").split(",")
    lines[3000] = f"{t},{o},{float(lo) - 1},{lo},{c},{v}\n"  # line 3001: high below low
    path = _write_csv(tmp_path / "bad.csv", lines)

    event = await _ingest(
        bus,
        env.names,
        IngestRequested(request_id="bad-1", dataset=BTC, source="file", path=str(path)),
    )
    assert isinstance(event, IngestFailed), event
    assert "line 3001" in event.reason
    assert "high is below open or close" in event.reason
    assert await _count(db, "candles") == 0
    assert await _count(db, "datasets") == 0
    record = await db.fetchrow(
        "SELECT status, report FROM market.ingests WHERE request_id = 'bad-1'"
    )
    assert record["status"] == "failed"
    assert "line 3001" in record["report"]
    reply = await bus.request(env.names.coverage, CoverageQuery().to_bytes(), timeout=5)
    assert CoverageReply.from_bytes(reply.data).datasets == []
    reply = await bus.request(env.names.coverage, b'{"symbol": 7}', timeout=5)
    assert "not a CoverageQuery" in ErrorReply.from_bytes(reply.data).error


# --- the exchange path, with the service in-process ---------------------------------------------


async def test_exchange_pull_pages_retries_and_resumes_from_the_last_stored_candle(
    env: Env,
    bus: NatsClient,
    db: asyncpg.Connection,
    candles_excerpt: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = load_candles(candles_excerpt)
    calls: list[int | None] = []
    built: list[str] = []

    def factory(exchange_id: str) -> RecordedBinance:
        built.append(exchange_id)
        return RecordedBinance(history, calls, fail_calls={2, 3})

    settings = _settings(env, monkeypatch)
    stop = asyncio.Event()
    server = asyncio.create_task(run(settings, stop, exchange_factory=factory))
    try:
        await _wait_ready(bus, env.names, settings.replica)
        t0 = int(history.open_time[0])
        first = await _ingest(
            bus,
            env.names,
            IngestRequested(
                request_id="pull-1",
                dataset=BTC,
                source="exchange",
                since_ms=t0,
                until_ms=t0 + 3000 * FIVE_MINUTES_MS,
            ),
        )
        assert isinstance(first, CandlesIngested), first
        assert (first.rows_received, first.rows_added, first.coverage.rows) == (3000, 3000, 3000)
        page = 1000 * FIVE_MINUTES_MS
        # call 2 met a 429, call 3 a timeout: both retried with the same `since`
        assert calls == [t0, t0 + page, t0 + page, t0 + page, t0 + 2 * page]

        calls.clear()
        second = await _ingest(
            bus,
            env.names,
            IngestRequested(
                request_id="pull-2",
                dataset=BTC,
                source="exchange",
                until_ms=t0 + 4500 * FIVE_MINUTES_MS,
            ),
        )
        assert isinstance(second, CandlesIngested), second
        assert calls[0] == t0 + 3000 * FIVE_MINUTES_MS, "must resume after the last stored candle"
        assert (second.rows_received, second.rows_added, second.coverage.rows) == (1500, 1500, 4500)

        calls.clear()
        again = await _ingest(
            bus,
            env.names,
            IngestRequested(
                request_id="pull-3",
                dataset=BTC,
                source="exchange",
                since_ms=t0,
                until_ms=t0 + 4500 * FIVE_MINUTES_MS,
            ),
        )
        assert isinstance(again, CandlesIngested), again
        assert calls == [], "everything asked for is stored: no exchange call"
        assert (again.rows_added, again.coverage.content_hash) == (0, second.coverage.content_hash)
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)

    assert built == ["binance", "binance"]
    expected = history.slice(0, 4500).content_hash()
    assert second.coverage.content_hash == expected
    assert (await _stored(db)).content_hash() == expected
    assert (await _snapshot(bus, env.names, second.coverage.snapshot)).content_hash() == expected


async def test_a_request_that_keeps_failing_is_redelivered_then_refused_and_removed(
    env: Env,
    bus: NatsClient,
    db: asyncpg.Connection,
    candles_excerpt: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = load_candles(candles_excerpt)
    calls: list[int | None] = []
    settings = _settings(
        env, monkeypatch, INGEST_EXCHANGE_ATTEMPTS="1", INGEST_REDELIVERY_DELAY_S="0.05"
    )
    assert settings.exchange_attempts == 1

    def factory(exchange_id: str) -> RecordedBinance:
        return RecordedBinance(history, calls, fail_calls=set(range(1, 100)))

    stop = asyncio.Event()
    server = asyncio.create_task(run(settings, stop, exchange_factory=factory))
    try:
        await _wait_ready(bus, env.names, settings.replica)
        t0 = int(history.open_time[0])
        event = await _ingest(
            bus,
            env.names,
            IngestRequested(
                request_id="down",
                dataset=BTC,
                source="exchange",
                since_ms=t0,
                until_ms=t0 + 10 * FIVE_MINUTES_MS,
            ),
        )

        async def queue_length() -> int:
            return int((await bus.jetstream().stream_info(env.names.ingest_stream)).state.messages)

        # The refusal is published before the request is acked: the sync point is the ack.
        await wait_until(
            queue_length,
            within=10.0,
            message="the request to leave the work queue",
            until=lambda n: n == 0,
        )
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)
    assert isinstance(event, IngestFailed), event
    assert event.reason == (
        "gave up after 5 attempts: the exchange kept failing with network errors (timeouts, "
        "rate limits or maintenance); import again later"
    )
    assert len(calls) == 5, "one exchange call per delivery"
    assert await _count(db, "candles") == 0
    assert await db.fetchval("SELECT status FROM market.ingests") == "failed"


# --- handlers on the real database and object store ------------------------------------------------


async def test_network_errors_are_retried_then_left_for_redelivery_but_exchange_errors_are_final(
    deps: handlers.Deps, db: asyncpg.Connection, candles_excerpt: Path
) -> None:
    history = load_candles(candles_excerpt)
    calls: list[int | None] = []
    t0 = int(history.open_time[0])
    always_down = dataclasses.replace(
        deps,
        exchange_factory=lambda _: RecordedBinance(history, calls, fail_calls=set(range(1, 10))),
    )
    request = IngestRequested(
        request_id="down-1",
        dataset=BTC,
        source="exchange",
        since_ms=t0,
        until_ms=t0 + 10 * FIVE_MINUTES_MS,
    )
    with pytest.raises(ExchangeUnavailableError, match="after 3 attempts"):
        await handlers.ingest(request, always_down)
    assert len(calls) == 3
    assert await _count(db, "ingests") == 0, "a transient failure is not a verdict on the request"

    calls.clear()
    working = dataclasses.replace(deps, exchange_factory=lambda _: RecordedBinance(history, calls))
    unknown = IngestRequested(
        request_id="eth-1",
        dataset=DatasetKey(exchange="binance", symbol="ETH/USDT", timeframe="5m"),
        source="exchange",
        since_ms=t0,
        until_ms=t0 + 10 * FIVE_MINUTES_MS,
    )
    event = await handlers.ingest(unknown, working)
    assert isinstance(event, IngestFailed)
    assert "BadSymbol" in event.reason
    assert len(calls) == 1, "an ExchangeError is not retried"

    real = dataclasses.replace(deps, exchange_factory=ccxt_factory(1000))
    nowhere = IngestRequested(
        request_id="nowhere-1",
        dataset=DatasetKey(exchange="nosuchexchange", symbol="BTC/USDT", timeframe="5m"),
        source="exchange",
        since_ms=t0,
        until_ms=t0 + 10 * FIVE_MINUTES_MS,
    )
    event = await handlers.ingest(nowhere, real)
    assert isinstance(event, IngestFailed)
    assert "unknown exchange 'nosuchexchange'" in event.reason
    assert await _count(db, "candles") == 0


async def test_the_merged_dataset_is_validated_and_a_refusal_changes_nothing(
    deps: handlers.Deps, db: asyncpg.Connection, candles_excerpt: Path, tmp_path: Path
) -> None:
    lines = _excerpt_lines(candles_excerpt)
    first = _write_csv(tmp_path / "first.csv", lines[:101])
    ok = await handlers.ingest(
        IngestRequested(request_id="a", dataset=BTC, source="file", path=str(first)), deps
    )
    assert isinstance(ok, CandlesIngested)
    assert ok.rows_added == 100

    # The next 100 candles, one minute late: a valid 5m series alone, off the stored grid.
    shifted = [lines[0]] + [
        f"{int(line.split(',', 1)[0]) + 60_000},{line.split(',', 1)[1]}" for line in lines[101:201]
    ]
    event = await handlers.ingest(
        IngestRequested(
            request_id="b",
            dataset=BTC,
            source="file",
            path=str(_write_csv(tmp_path / "late.csv", shifted)),
        ),
        deps,
    )
    assert isinstance(event, IngestFailed)
    assert "not on the 5m grid" in event.reason
    assert await _count(db, "candles") == 100
    stored = await db.fetchval("SELECT content_hash FROM market.datasets")
    assert stored == ok.coverage.content_hash

    # 10m candles declared as 5m would otherwise pass as 5m ones with a gap after every row.
    ten_minutes = [lines[0], *lines[201:401:2]]
    event = await handlers.ingest(
        IngestRequested(
            request_id="c",
            dataset=BTC,
            source="file",
            path=str(_write_csv(tmp_path / "10m.csv", ten_minutes)),
        ),
        deps,
    )
    assert isinstance(event, IngestFailed)
    assert "they are not 5m candles" in event.reason

    event = await handlers.ingest(
        IngestRequested(request_id="d", dataset=BTC, source="file", path="data/btc.csv"), deps
    )
    assert isinstance(event, IngestFailed)
    assert event.reason == "no candle file 'data/btc.csv' in the folders imports may read"
    assert await _count(db, "candles") == 100


async def test_a_parquet_file_extends_the_dataset_and_a_repeated_request_is_not_reapplied(
    deps: handlers.Deps, db: asyncpg.Connection, candles_excerpt: Path, tmp_path: Path
) -> None:
    history = load_candles(candles_excerpt)
    head = _write_csv(tmp_path / "head.csv", _excerpt_lines(candles_excerpt)[:1001])
    part = history.slice(500, 1500)
    parquet = tmp_path / "part.parquet"
    pq.write_table(
        pa.table(
            {
                name: getattr(part, name if name != "timestamp" else "open_time")
                for name in ("timestamp", "open", "high", "low", "close", "volume")
            }
        ),
        parquet,
    )
    await handlers.ingest(
        IngestRequested(request_id="head", dataset=BTC, source="file", path=str(head)), deps
    )

    request = IngestRequested(request_id="parquet", dataset=BTC, source="file", path=str(parquet))
    first = await handlers.ingest(request, deps)
    assert isinstance(first, CandlesIngested), first
    assert (first.rows_received, first.rows_added, first.coverage.rows) == (1000, 500, 1500)
    assert first.coverage.content_hash == history.slice(0, 1500).content_hash()

    repeated = await handlers.ingest(request, deps)
    assert repeated == first, "a redelivered request is answered from its record"
    assert await _count(db, "candles") == 1500
    assert await _count(db, "ingests") == 2


async def test_an_uploaded_file_is_ingested_like_a_file(
    deps: handlers.Deps, bus: NatsClient, env: Env, candles_excerpt: Path
) -> None:
    store = await bus.jetstream().object_store(env.names.uploads_bucket)
    await store.put("u1/btc_excerpt.csv", await asyncio.to_thread(candles_excerpt.read_bytes))
    ok = await handlers.ingest(
        IngestRequested(request_id="up", dataset=BTC, source="upload", path="u1/btc_excerpt.csv"),
        deps,
    )
    assert isinstance(ok, CandlesIngested)
    assert ok.rows_added == 6_000
    with pytest.raises(ObjectNotFoundError):
        await store.get_info("u1/btc_excerpt.csv")
    again = await handlers.ingest(
        IngestRequested(request_id="up", dataset=BTC, source="upload", path="u1/btc_excerpt.csv"),
        deps,
    )
    assert again == ok, "a redelivered upload is answered from its record, file gone or not"
    missing = await handlers.ingest(
        IngestRequested(request_id="up2", dataset=BTC, source="upload", path="nope/x.csv"), deps
    )
    assert isinstance(missing, IngestFailed)
    assert missing.reason == "no uploaded file named 'nope/x.csv'"
    await store.put("u2/bad.csv", b"timestamp,open,high,low,close\n1,2,3,1,2\n")
    bad = await handlers.ingest(
        IngestRequested(request_id="up3", dataset=BTC, source="upload", path="u2/bad.csv"), deps
    )
    assert isinstance(bad, IngestFailed)
    # The client's file name, not the object it was stored as.
    assert bad.reason.startswith("bad.csv, line 1: header lacks column(s) volume")
    with pytest.raises(ObjectNotFoundError):
        await store.get_info("u2/bad.csv")
    redelivered = await handlers.ingest(
        IngestRequested(request_id="up3", dataset=BTC, source="upload", path="u2/bad.csv"), deps
    )
    assert redelivered == bad

    # What any gateway replica is told when it asks about these imports later.
    status = await handlers.ingest_status(GetIngest(request_id="up"), deps)
    assert (status.succeeded, status.failed) == (ok, None)
    status = await handlers.ingest_status(GetIngest(request_id="up3"), deps)
    assert (status.succeeded, status.failed) == (None, bad)
    status = await handlers.ingest_status(GetIngest(request_id="never-sent"), deps)
    assert (status.succeeded, status.failed) == (None, None)


class _RecordingSink(io.RawIOBase):
    """A file-like sink that keeps only what a test checks: sizes and a digest."""

    def __init__(self) -> None:
        self.largest = 0
        self.size = 0
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self.largest = max(self.largest, n)
        self.size += n
        self.digest.update(data)
        return n


async def test_an_upload_is_read_chunk_by_chunk_never_held_whole(bus: NatsClient, env: Env) -> None:
    """Ingest copies an upload to disk one object chunk at a time: the Python heap it uses
    while doing so stays far below the file's size (the whole-object read held it twice)."""
    data = np.random.default_rng(7).bytes(16 * 1024 * 1024)  # incompressible, like gzip
    store = await bus.jetstream().object_store(env.names.uploads_bucket)
    await store.put("big/btc.csv.gz", data)  # nats-py's default 128 KiB chunks, as the gateway
    uploads = NatsUploadStore(bus.jetstream(), env.names.uploads_bucket)
    sink = _RecordingSink()
    tracemalloc.start()
    try:
        size = await uploads.copy_to("big/btc.csv.gz", cast(BinaryIO, sink))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == sink.size == len(data)
    assert sink.digest.digest() == hashlib.sha256(data).digest()
    assert sink.largest <= 128 * 1024
    assert peak < len(data) // 8, f"{peak} bytes of heap to copy a {len(data)}-byte upload"


async def test_server_paths_outside_the_root_missing_or_impossible_are_refused_alike(
    deps: handlers.Deps, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "imports"
    root.mkdir()
    (tmp_path / "secret.csv").write_text("timestamp,open,high,low,close,volume\nhunter2\n")
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    monkeypatch.setenv("INGEST_FILE_ROOT", str(root))
    confined = dataclasses.replace(deps, settings=IngestSettings())
    reasons = {}
    for i, path in enumerate(
        ["/etc/shadow", "/etc/passwd", "/nonexistent/x.csv", "../secret.csv", "link.csv"]
    ):
        event = await handlers.ingest(
            IngestRequested(request_id=f"p{i}", dataset=BTC, source="file", path=path), confined
        )
        assert isinstance(event, IngestFailed)
        reasons[path] = event.reason
    # Existing, missing, outside or a link leading out: one answer, nothing of the file.
    assert reasons == {p: f"no candle file {p!r} in the folders imports may read" for p in reasons}
    for i, path in enumerate(["bad\x00.csv", "a" * 4096 + ".csv", "x/" * 2100 + "y.csv"]):
        # Refused at once (a refusal, not an exception that would be delivered again).
        event = await handlers.ingest(
            IngestRequested(request_id=f"i{i}", dataset=BTC, source="file", path=path), confined
        )
        assert isinstance(event, IngestFailed)
        assert event.reason.startswith("path is not a possible file name"), event.reason
    monkeypatch.delenv("INGEST_FILE_ROOT")
    closed = dataclasses.replace(deps, settings=IngestSettings())
    event = await handlers.ingest(
        IngestRequested(request_id="nr", dataset=BTC, source="file", path="/etc/passwd"), closed
    )
    assert isinstance(event, IngestFailed)
    assert event.reason.startswith("imports by server path are off")
    assert await _count(db, "candles") == 0


async def test_an_uploaded_bomb_is_refused_naming_the_limit_and_its_setting(
    deps: handlers.Deps,
    bus: NatsClient,
    env: Env,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INGEST_MAX_DECOMPRESSED_BYTES", str(8 * 1024 * 1024))
    limited = dataclasses.replace(deps, settings=IngestSettings())
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    rows = "".join(f"{1640995200000 + i * 300_000},1,1,1,1,1\n" for i in range(400_000))
    bomb = packer.compress(b"timestamp,open,high,low,close,volume\n" + rows.encode())
    bomb += packer.flush()
    store = await bus.jetstream().object_store(env.names.uploads_bucket)
    await store.put("0a1b2c/btc.csv.gz", bomb)
    event = await handlers.ingest(
        IngestRequested(request_id="bomb", dataset=BTC, source="upload", path="0a1b2c/btc.csv.gz"),
        limited,
    )
    assert isinstance(event, IngestFailed)
    assert event.reason == (
        "btc.csv.gz: the file holds more than 8388608 bytes of text once decompressed, more "
        "than one import may read; split it (limit: INGEST_MAX_DECOMPRESSED_BYTES)"
    )
    assert "tradepulse-upload-" not in event.reason
    assert "/tmp" not in event.reason
    assert await _count(db, "candles") == 0
