"""The `market` schema, through asyncpg, with parameterized SQL only.

Candles travel in PostgreSQL's binary COPY format, built and read with numpy: one buffer per
dataset instead of a Python object per candle, which is what makes a 300k-candle file take
seconds rather than minutes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np

from tradepulse.common.contracts.market import (
    DatasetCoverage,
    DatasetKey,
    GapInfo,
    IngestRequested,
)
from tradepulse.quant import Candles

COLUMNS = ("open_time", "open", "high", "low", "close", "volume")

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = _SIGNATURE + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
# One tuple: field count, then (length, big-endian value) per column; no column is NULL.
_ROW = np.dtype(
    [("fields", ">i2")]
    + [
        field
        for name in COLUMNS
        for field in ((f"{name}_len", ">i4"), (name, ">i8" if name == "open_time" else ">f8"))
    ]
)
_CHUNK = 1 << 20

_SELECT_DATASET = """
    SELECT open_time, open, high, low, close, volume FROM market.candles
    WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 ORDER BY open_time"""

_SELECT_RANGE = """
    SELECT open_time, open, high, low, close, volume FROM market.candles
    WHERE exchange = $1 AND symbol = $2 AND timeframe = $3
      AND ($4::bigint IS NULL OR open_time >= $4) AND ($5::bigint IS NULL OR open_time < $5)
    ORDER BY open_time LIMIT $6"""

# The anti-join skips the candles already stored before the insert sees them; the conflict
# clause still guards the key, and the command tag counts only the rows really added.
_INSERT_STAGED = """
    INSERT INTO market.candles (exchange, symbol, timeframe, open_time, open, high, low, close, volume)
    SELECT $1::text, $2::text, $3::text, s.open_time, s.open, s.high, s.low, s.close, s.volume
    FROM ingest_stage s
    WHERE NOT EXISTS (
        SELECT 1 FROM market.candles c
        WHERE c.exchange = $1 AND c.symbol = $2 AND c.timeframe = $3 AND c.open_time = s.open_time)
    ON CONFLICT DO NOTHING"""


@dataclass(frozen=True)
class IngestRecord:
    status: str
    dataset: DatasetKey
    rows_received: int
    rows_added: int
    report: dict[str, Any]


def _key(key: DatasetKey) -> tuple[str, str, str]:
    return key.exchange, key.symbol, key.timeframe


def encode_copy(candles: Candles) -> bytes:
    rows = np.empty(len(candles), _ROW)
    rows["fields"] = len(COLUMNS)
    for name in COLUMNS:
        rows[f"{name}_len"] = 8
        rows[name] = getattr(candles, name)
    return _HEADER + rows.tobytes() + _TRAILER


def decode_copy(data: bytes) -> list[np.ndarray]:
    """The columns of a binary COPY of `COLUMNS` (big-endian views, in row order)."""
    if not data.startswith(_SIGNATURE) or not data.endswith(_TRAILER):
        raise ValueError("not a PostgreSQL binary COPY stream")
    start = len(_HEADER) + int.from_bytes(data[len(_SIGNATURE) + 4 : len(_HEADER)], "big")
    count, rest = divmod(len(data) - start - len(_TRAILER), _ROW.itemsize)
    rows = np.frombuffer(data, _ROW, count=count, offset=start)
    if rest or (rows["fields"] != len(COLUMNS)).any():
        raise ValueError("unexpected binary COPY layout for the candle columns")
    return [rows[name] for name in COLUMNS]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), _CHUNK):
        yield bytes(view[start : start + _CHUNK])


def _lock_id(key: DatasetKey) -> int:
    digest = hashlib.sha256("\x1f".join(("market", *_key(key))).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_dataset(conn: asyncpg.Connection, key: DatasetKey) -> None:
    """Serialize writers of one dataset until the transaction ends (replicas, redeliveries)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_id(key))


async def last_open_time(db: asyncpg.Pool | asyncpg.Connection, key: DatasetKey) -> int | None:
    value: int | None = await db.fetchval(
        "SELECT max(open_time) FROM market.candles WHERE exchange = $1 AND symbol = $2 AND timeframe = $3",
        *_key(key),
    )
    return value


async def insert_candles(conn: asyncpg.Connection, key: DatasetKey, candles: Candles) -> int:
    """Add the candles not stored yet; returns how many were added. Inside a transaction."""
    await conn.execute(
        """CREATE TEMP TABLE ingest_stage (
               open_time bigint, open float8, high float8, low float8, close float8, volume float8
           ) ON COMMIT DROP"""
    )
    await conn.copy_to_table("ingest_stage", source=_chunks(encode_copy(candles)), format="binary")
    status: str = await conn.execute(_INSERT_STAGED, *_key(key))
    return int(status.rsplit(" ", 1)[1])


async def read_candles(conn: asyncpg.Connection, key: DatasetKey) -> list[np.ndarray]:
    """Every stored candle of the dataset in time order, as the columns of `COLUMNS`."""
    parts: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        parts.append(chunk)

    await conn.copy_from_query(_SELECT_DATASET, *_key(key), output=sink, format="binary")
    return decode_copy(b"".join(parts))


async def read_candle_range(
    pool: asyncpg.Pool,
    key: DatasetKey,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
) -> list[np.ndarray] | None:
    """Up to `limit` candles with start_ms <= open_time < end_ms in time order, as the
    columns of `COLUMNS`; None when the dataset is not known."""
    async with pool.acquire() as conn:
        known = await conn.fetchval(
            "SELECT 1 FROM market.datasets WHERE exchange = $1 AND symbol = $2 AND timeframe = $3",
            *_key(key),
        )
        if known is None:
            return None
        parts: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            parts.append(chunk)

        await conn.copy_from_query(
            _SELECT_RANGE, *_key(key), start_ms, end_ms, limit, output=sink, format="binary"
        )
    return decode_copy(b"".join(parts))


async def read_gaps(pool: asyncpg.Pool, key: DatasetKey) -> list[GapInfo] | None:
    """The dataset's gaps as its last import recorded them; None when it is not known."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT gap_report FROM market.datasets
               WHERE exchange = $1 AND symbol = $2 AND timeframe = $3""",
            *_key(key),
        )
    if row is None:
        return None
    report = row["gap_report"]
    items = json.loads(report) if isinstance(report, str) else report
    return [GapInfo.model_validate(g) for g in items or []]


async def save_dataset(
    conn: asyncpg.Connection, coverage: DatasetCoverage, gaps: list[GapInfo]
) -> None:
    largest = None if coverage.largest_gap is None else coverage.largest_gap.model_dump_json()
    await conn.execute(
        """INSERT INTO market.datasets (exchange, symbol, timeframe, rows, first_ms, last_ms,
               expected_rows, gaps, missing_candles, largest_gap, gap_report, content_hash,
               snapshot, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12, $13, $14)
           ON CONFLICT (exchange, symbol, timeframe) DO UPDATE SET
               rows = EXCLUDED.rows, first_ms = EXCLUDED.first_ms, last_ms = EXCLUDED.last_ms,
               expected_rows = EXCLUDED.expected_rows, gaps = EXCLUDED.gaps,
               missing_candles = EXCLUDED.missing_candles, largest_gap = EXCLUDED.largest_gap,
               gap_report = EXCLUDED.gap_report, content_hash = EXCLUDED.content_hash,
               snapshot = EXCLUDED.snapshot, updated_at = EXCLUDED.updated_at""",
        *_key(coverage.dataset),
        coverage.rows,
        coverage.first_ms,
        coverage.last_ms,
        coverage.expected_rows,
        coverage.gaps,
        coverage.missing_candles,
        largest,
        json.dumps([g.model_dump() for g in gaps]),
        coverage.content_hash,
        coverage.snapshot,
        datetime.fromisoformat(coverage.updated_at),
    )


async def list_datasets(
    db: asyncpg.Pool | asyncpg.Connection,
    exchange: str | None,
    symbol: str | None,
    timeframe: str | None,
) -> list[DatasetCoverage]:
    rows = await db.fetch(
        """SELECT exchange, symbol, timeframe, rows, first_ms, last_ms, expected_rows, gaps,
                  missing_candles, largest_gap, content_hash, snapshot, updated_at
           FROM market.datasets
           WHERE ($1::text IS NULL OR exchange = $1)
             AND ($2::text IS NULL OR symbol = $2)
             AND ($3::text IS NULL OR timeframe = $3)
           ORDER BY exchange, symbol, timeframe""",
        exchange,
        symbol,
        timeframe,
    )
    return [
        DatasetCoverage(
            dataset=DatasetKey(
                exchange=r["exchange"], symbol=r["symbol"], timeframe=r["timeframe"]
            ),
            rows=r["rows"],
            first_ms=r["first_ms"],
            last_ms=r["last_ms"],
            expected_rows=r["expected_rows"],
            gaps=r["gaps"],
            missing_candles=r["missing_candles"],
            largest_gap=None
            if r["largest_gap"] is None
            else GapInfo.model_validate_json(r["largest_gap"]),
            content_hash=r["content_hash"],
            snapshot=r["snapshot"],
            updated_at=r["updated_at"].isoformat(),
        )
        for r in rows
    ]


async def find_ingest(
    db: asyncpg.Pool | asyncpg.Connection, request_id: str
) -> IngestRecord | None:
    row = await db.fetchrow(
        """SELECT status, exchange, symbol, timeframe, rows_received, rows_added, report
           FROM market.ingests WHERE request_id = $1""",
        request_id,
    )
    if row is None:
        return None
    return IngestRecord(
        status=row["status"],
        dataset=DatasetKey(
            exchange=row["exchange"], symbol=row["symbol"], timeframe=row["timeframe"]
        ),
        rows_received=row["rows_received"],
        rows_added=row["rows_added"],
        report=json.loads(row["report"]),
    )


async def record_success(
    conn: asyncpg.Connection,
    request: IngestRequested,
    rows_received: int,
    rows_added: int,
    report: dict[str, Any],
) -> None:
    await conn.execute(
        """INSERT INTO market.ingests (request_id, exchange, symbol, timeframe, source, status,
               rows_received, rows_added, report)
           VALUES ($1, $2, $3, $4, $5, 'succeeded', $6, $7, $8::jsonb)
           ON CONFLICT (request_id) DO UPDATE SET
               status = 'succeeded', rows_received = EXCLUDED.rows_received,
               rows_added = EXCLUDED.rows_added, report = EXCLUDED.report, updated_at = now()""",
        request.request_id,
        *_key(request.dataset),
        request.source,
        rows_received,
        rows_added,
        json.dumps(report),
    )


async def record_failure(
    db: asyncpg.Pool | asyncpg.Connection, request: IngestRequested, report: dict[str, Any]
) -> None:
    """Record a refusal, unless the request already succeeded (a success is never undone)."""
    await db.execute(
        """INSERT INTO market.ingests (request_id, exchange, symbol, timeframe, source, status, report)
           VALUES ($1, $2, $3, $4, $5, 'failed', $6::jsonb)
           ON CONFLICT (request_id) DO UPDATE SET report = EXCLUDED.report, updated_at = now()
           WHERE market.ingests.status = 'failed'""",
        request.request_id,
        *_key(request.dataset),
        request.source,
        json.dumps(report),
    )
