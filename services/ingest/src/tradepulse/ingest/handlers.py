"""Use cases: ingest a dataset, answer coverage queries. Plain functions of (message, deps)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import asyncpg
import numpy as np

from tradepulse.common.contracts.charts import (
    MAX_GAPS_PER_REPLY,
    CandlesReply,
    GapsReply,
    GetCandles,
    GetGaps,
)
from tradepulse.common.contracts.market import (
    CandlesIngested,
    CoverageQuery,
    CoverageReply,
    DatasetCoverage,
    GetIngest,
    IngestFailed,
    IngestReply,
    IngestRequested,
)
from tradepulse.common.db.pool import retrying
from tradepulse.common.errors import InvalidRequestError
from tradepulse.common.logging import get_logger
from tradepulse.ingest import datasets, exchange, files, repository
from tradepulse.ingest.metrics import IngestMetrics
from tradepulse.ingest.settings import IngestSettings
from tradepulse.ingest.snapshots import SnapshotStore, UploadStore
from tradepulse.quant import CandleDataError, Candles, parse_timeframe

log = get_logger(__name__)

Outcome = CandlesIngested | IngestFailed


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool
    snapshots: SnapshotStore
    uploads: UploadStore
    exchange_factory: exchange.ExchangeFactory
    settings: IngestSettings
    metrics: IngestMetrics


@dataclass(frozen=True)
class Received:
    """What a source gave: validated candles (None when the exchange had nothing new)."""

    candles: Candles | None
    report: dict[str, Any]
    timings_ms: dict[str, float]


def ingested_id(request_id: str) -> str:
    """One request, one CandlesIngested: a re-publish is dropped by JetStream de-duplication."""
    return f"candles-ingested.{request_id}"


def failed_id(request_id: str) -> str:
    return f"ingest-failed.{request_id}"


async def ingest(request: IngestRequested, deps: Deps) -> Outcome:
    """Store the request's candles once and snapshot the dataset, or refuse with the reason.

    Bad data and impossible requests are refused (recorded, IngestFailed) with nothing written.
    A request that already succeeded is answered from its record, not applied again; so is a
    refused upload, whose file is discarded once its import has ended either way.
    Transient failures (database, NATS, an exchange that keeps timing out) propagate, so that
    the request is delivered again.
    """
    started = time.perf_counter()
    previous = await retrying(lambda: repository.find_ingest(deps.pool, request.request_id))
    if previous is not None and previous.status == "succeeded":
        log.info("ingest_already_applied")
        return _from_record(request.request_id, previous)
    if previous is not None and request.source == "upload":
        # Its file was discarded when it was refused; the refusal is the answer.
        return _refusal_from_record(request.request_id, previous)
    try:
        if request.source == "file":
            received = await _from_file(request, deps)
        elif request.source == "upload":
            received = await _from_upload(request, deps)
        else:
            received = await _from_exchange(request, deps)
        outcome, report = await retrying(lambda: _store(request, received, deps))
    except (CandleDataError, InvalidRequestError) as exc:
        failure: dict[str, Any] = {"reason": str(exc)}
        if isinstance(exc, CandleDataError):
            failure |= {"problem": exc.problem, "where": exc.where}
        refused = await refuse(request, failure, deps)
        await _discard_upload(request, deps)
        return refused
    await _discard_upload(request, deps)
    elapsed = time.perf_counter() - started
    deps.metrics.requests.labels(request.source, "succeeded").inc()
    deps.metrics.rows_added.labels(request.source).inc(outcome.rows_added)
    deps.metrics.duration.labels(request.source).observe(elapsed)
    log.info(
        "candles_ingested",
        rows_received=outcome.rows_received,
        rows_added=outcome.rows_added,
        rows=outcome.coverage.rows,
        gaps=outcome.coverage.gaps,
        snapshot=outcome.coverage.snapshot,
        duration_ms=round(elapsed * 1000, 1),
        timings_ms=report["timings_ms"],
    )
    return outcome


async def _discard_upload(request: IngestRequested, deps: Deps) -> None:
    """Uploads live in the object store only until their import has ended either way."""
    if request.source == "upload" and request.path is not None:
        await deps.uploads.discard(request.path)


async def refuse(request: IngestRequested, report: dict[str, Any], deps: Deps) -> IngestFailed:
    """Record why the request cannot be carried out; nothing of it is stored."""
    await retrying(lambda: repository.record_failure(deps.pool, request, report))
    deps.metrics.requests.labels(request.source, "failed").inc()
    log.warning("ingest_refused", reason=report["reason"])
    return IngestFailed(
        message_id=failed_id(request.request_id),
        request_id=request.request_id,
        dataset=request.dataset,
        reason=report["reason"],
    )


async def coverage(query: CoverageQuery, deps: Deps) -> CoverageReply:
    found = await retrying(
        lambda: repository.list_datasets(deps.pool, query.exchange, query.symbol, query.timeframe)
    )
    return CoverageReply(datasets=found)


async def candles(query: GetCandles, deps: Deps) -> CandlesReply:
    """A page of a dataset's candles; one more row than asked is read to know whether the
    range goes on, and where the next page starts."""
    columns = await retrying(
        lambda: repository.read_candle_range(
            deps.pool, query.dataset, query.start_ms, query.end_ms, query.limit + 1
        )
    )
    if columns is None:
        return CandlesReply(dataset=query.dataset, found=False)
    open_time, open_, high, low, close, volume = (c[: query.limit] for c in columns)
    more = len(columns[0]) > query.limit
    return CandlesReply(
        dataset=query.dataset,
        found=True,
        time=open_time.astype(np.int64).tolist(),
        open=open_.astype(np.float64).tolist(),
        high=high.astype(np.float64).tolist(),
        low=low.astype(np.float64).tolist(),
        close=close.astype(np.float64).tolist(),
        volume=volume.astype(np.float64).tolist(),
        next_start_ms=int(columns[0][query.limit]) if more else None,
    )


async def gaps(query: GetGaps, deps: Deps) -> GapsReply:
    found = await retrying(lambda: repository.read_gaps(deps.pool, query.dataset))
    if found is None:
        return GapsReply(dataset=query.dataset, found=False)
    return GapsReply(
        dataset=query.dataset, found=True, total=len(found), gaps=found[:MAX_GAPS_PER_REPLY]
    )


async def _from_file(request: IngestRequested, deps: Deps) -> Received:
    assert request.path is not None  # IngestRequested requires it for source 'file'
    path = files.resolve(request.path, deps.settings.file_roots())
    started = time.perf_counter()
    # pyarrow parses without the GIL: pings and coverage queries keep being answered.
    candles = await asyncio.to_thread(
        files.read,
        path,
        request.dataset.timeframe,
        request.since_ms,
        request.until_ms,
        limits=deps.settings.load_limits(),
        source=request.path,
    )
    return Received(candles, {"path": str(path)}, {"read": _ms(started, time.perf_counter())})


def upload_file_name(object_name: str) -> str:
    """The client's file name in an upload object's name (`<unique id>/<file name>`, see the
    gateway's upload route): what errors call the file."""
    return PurePosixPath(object_name).name


async def _from_upload(request: IngestRequested, deps: Deps) -> Received:
    """A file uploaded through the gateway: an object whose name ends with the file's name,
    so its extension tells the format. It is copied chunk by chunk to a temporary file and
    parsed from there as a stream: ingest's memory holds one chunk of it and the candles kept
    (about 48 bytes a row), never the whole file, compressed or not."""
    assert request.path is not None  # IngestRequested requires it for source 'upload'
    started = time.perf_counter()
    name = upload_file_name(request.path)
    suffix = "".join(PurePosixPath(name).suffixes[-2:])
    with tempfile.TemporaryDirectory(prefix="tradepulse-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        with path.open("wb") as sink:
            size = await deps.uploads.copy_to(request.path, sink)
        fetched = time.perf_counter()
        # Errors name the client's file, never the temporary copy it is read from.
        candles = await asyncio.to_thread(
            files.read,
            path,
            request.dataset.timeframe,
            request.since_ms,
            request.until_ms,
            limits=deps.settings.load_limits(),
            source=name,
        )
    return Received(
        candles,
        {"upload": request.path, "upload_bytes": size},
        {"fetch": _ms(started, fetched), "read": _ms(fetched, time.perf_counter())},
    )


async def _from_exchange(request: IngestRequested, deps: Deps) -> Received:
    key = request.dataset
    settings = deps.settings
    timeframe_ms = parse_timeframe(key.timeframe) * 1000
    last = await retrying(lambda: repository.last_open_time(deps.pool, key))
    since, until = exchange.plan_range(
        timeframe_ms=timeframe_ms,
        since_ms=request.since_ms,
        until_ms=request.until_ms,
        last_stored_ms=last,
        now_ms=int(time.time() * 1000),
        default_lookback=settings.default_lookback,
    )
    candles: Candles | None = None
    timings: dict[str, float] = {}
    if since < until:
        span = -(-(until - since) // timeframe_ms)
        if span > settings.max_candles:
            raise InvalidRequestError(
                f"the range spans {span} candles, more than the {settings.max_candles} allowed "
                "per request (INGEST_MAX_CANDLES); split it"
            )
        started = time.perf_counter()
        candles = await exchange.pull(
            deps.exchange_factory,
            key,
            since,
            until,
            exchange.PullPolicy(
                page_limit=settings.page_limit,
                attempts=settings.exchange_attempts,
                backoff_s=settings.exchange_backoff_s,
            ),
        )
        timings["pull"] = _ms(started, time.perf_counter())
    if candles is None and last is None:
        raise InvalidRequestError(
            f"{key.exchange} has no closed {key.symbol} {key.timeframe} candles with open time "
            f"in [{since}, {until})"
        )
    return Received(candles, {"since_ms": since, "until_ms": until}, timings)


async def _store(
    request: IngestRequested, received: Received, deps: Deps
) -> tuple[CandlesIngested, dict[str, Any]]:
    """One transaction: add the new candles, validate the whole dataset they make with the
    stored ones, snapshot it, and record the coverage and the request. Any error rolls all back.
    Returns the event and the request's report."""
    key = request.dataset
    async with deps.pool.acquire() as conn, conn.transaction():
        await repository.lock_dataset(conn, key)
        previous = await repository.find_ingest(conn, request.request_id)
        if previous is not None and previous.status == "succeeded":
            return _from_record(request.request_id, previous), previous.report
        new = received.candles
        t0 = time.perf_counter()
        rows_added = 0 if new is None else await repository.insert_candles(conn, key, new)
        t1 = time.perf_counter()
        columns = await repository.read_candles(conn, key)
        t2 = time.perf_counter()
        dataset = Candles.from_arrays(
            *columns,
            timeframe_seconds=parse_timeframe(key.timeframe),
            source=f"{datasets.describe(key)}, stored candles with the new ones",
        )
        content_hash = dataset.content_hash()
        name = datasets.snapshot_name(key, content_hash)
        if not await deps.snapshots.exists(name):
            await deps.snapshots.put(name, dataset.to_bytes())
        t3 = time.perf_counter()
        summary, gaps = datasets.coverage(
            key, dataset, content_hash=content_hash, snapshot=name, updated_at=datetime.now(UTC)
        )
        await repository.save_dataset(conn, summary, gaps)
        rows_received = 0 if new is None else len(new)
        report = {
            **received.report,
            "coverage": summary.model_dump(mode="json"),
            "rows_differing": 0 if new is None else _differing(new, dataset),
            "timings_ms": received.timings_ms
            | {
                "insert": _ms(t0, t1),
                "read_back": _ms(t1, t2),
                "validate_and_snapshot": _ms(t2, t3),
            },
        }
        await repository.record_success(conn, request, rows_received, rows_added, report)
    if report["rows_differing"]:
        log.warning(
            "stored_candles_kept",
            rows_differing=report["rows_differing"],
        )
    event = CandlesIngested(
        message_id=ingested_id(request.request_id),
        request_id=request.request_id,
        coverage=summary,
        rows_received=rows_received,
        rows_added=rows_added,
    )
    return event, report


def _differing(new: Candles, dataset: Candles) -> int:
    """How many received candles the dataset holds with other values (stored ones are kept)."""
    at = np.searchsorted(dataset.open_time, new.open_time)
    same = np.ones(len(new), dtype=np.bool_)
    for column in ("open", "high", "low", "close", "volume"):
        same &= getattr(dataset, column)[at] == getattr(new, column)
    return int(len(new) - same.sum())


def _ms(begin: float, end: float) -> float:
    return round((end - begin) * 1000, 1)


def _refusal_from_record(request_id: str, record: repository.IngestRecord) -> IngestFailed:
    return IngestFailed(
        message_id=failed_id(request_id),
        request_id=request_id,
        dataset=record.dataset,
        reason=record.report["reason"],
    )


async def ingest_status(query: GetIngest, deps: Deps) -> IngestReply:
    """An import's recorded outcome, for the gateway: any replica, however long ago."""
    record = await retrying(lambda: repository.find_ingest(deps.pool, query.request_id))
    if record is None:
        return IngestReply(request_id=query.request_id)
    if record.status == "succeeded":
        return IngestReply(
            request_id=query.request_id, succeeded=_from_record(query.request_id, record)
        )
    return IngestReply(
        request_id=query.request_id, failed=_refusal_from_record(query.request_id, record)
    )


def _from_record(request_id: str, record: repository.IngestRecord) -> CandlesIngested:
    return CandlesIngested(
        message_id=ingested_id(request_id),
        request_id=request_id,
        coverage=DatasetCoverage.model_validate(record.report["coverage"]),
        rows_received=record.rows_received,
        rows_added=record.rows_added,
    )
