"""/api/v2/data: import candles (from an exchange, a server-side file or an upload), coverage.

An import is a command to the ingest service. The gateway waits up to GATEWAY_INGEST_WAIT_S
seconds (default 10) for its outcome: 200 with the dataset as it now is, 422 with the reason
the candles were refused, or 202 (still running) with a `request_id` to ask
`GET /api/v2/data/ingest/{request_id}` about later, on any gateway replica: the outcome comes
from ingest's record of the request. `GET /api/v2/data/coverage` shows the datasets.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from pydantic import ValidationError

from tradepulse.common.contracts.market import (
    CandlesIngested,
    CoverageQuery,
    CoverageReply,
    DatasetKey,
    GetIngest,
    IngestFailed,
    IngestReply,
    IngestRequested,
)
from tradepulse.common.logging import get_logger
from tradepulse.gateway.backend import PublishError
from tradepulse.gateway.deps import ApiKeyDep, GatewayDep, ReadKeyDep
from tradepulse.gateway.errors import (
    ERRORS,
    ApiError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from tradepulse.gateway.schemas.common import ExchangeName, Symbol, Timeframe, to_ms
from tradepulse.gateway.schemas.data import CoverageOut, IngestBody, IngestOut, dataset_out
from tradepulse.gateway.state import Gateway
from tradepulse.gateway.tracking import IngestEntry

router = APIRouter(prefix="/api/v2/data", tags=["market data"])

UPLOAD_SUFFIXES = (".csv.gz", ".csv", ".parquet", ".pq")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

log = get_logger(__name__)

INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"model": IngestOut, "description": "imported; the dataset as it now is"},
    202: {"model": IngestOut, "description": "still importing; ask GET /data/ingest/{request_id}"},
    422: {"description": "invalid input, or the candles were refused (`detail` says why)"},
}


class IngestRefusedError(ApiError):
    status_code = 422


def new_request_id() -> str:
    return "ing_" + uuid.uuid4().hex


def ingest_out(request_id: str, entry: IngestEntry) -> IngestOut:
    outcome = entry.done.result() if entry.done.done() else None
    return outcome_out(request_id, entry.dataset, outcome)


def outcome_out(
    request_id: str, key: DatasetKey, outcome: CandlesIngested | IngestFailed | None
) -> IngestOut:
    base: dict[str, Any] = {
        "request_id": request_id,
        "exchange": key.exchange,
        "symbol": key.symbol,
        "timeframe": key.timeframe,
    }
    if outcome is None:
        return IngestOut(status="pending", **base)
    if isinstance(outcome, CandlesIngested):
        return IngestOut(
            status="succeeded",
            rows_received=outcome.rows_received,
            rows_added=outcome.rows_added,
            dataset=dataset_out(outcome.coverage),
            **base,
        )
    return IngestOut(status="failed", reason=outcome.reason, **base)


async def run_ingest(
    gw: Gateway, request: IngestRequested, response: Response, field: str
) -> IngestOut:
    entry = gw.ingests.expect(request.request_id, request.dataset)
    try:
        await gw.backend.publish(gw.names.ingest_requested, request)
    except PublishError as exc:
        gw.ingests.forget(request.request_id)
        gw.metrics.commands.labels("ingest", "refused").inc()
        raise UnavailableError(f"NATS did not accept the import ({exc}); try again") from None
    gw.metrics.commands.labels("ingest", "accepted").inc()
    log.info("ingest_accepted", ingest_id=request.request_id, source=request.source)
    try:
        await asyncio.wait_for(asyncio.shield(entry.done), gw.settings.ingest_wait_s)
    except TimeoutError:
        response.status_code = 202
        response.headers["Location"] = f"/api/v2/data/ingest/{request.request_id}"
        return ingest_out(request.request_id, entry)
    out = ingest_out(request.request_id, entry)
    if out.status == "failed":
        reason = out.reason or "refused"
        raise IngestRefusedError(
            reason, errors=[{"field": field, "reason": reason}], extra={"ingest": out.model_dump()}
        )
    return out


@router.post(
    "/ingest",
    response_model=IngestOut,
    summary="Import candles from an exchange or a server-side file",
    responses=INGEST_RESPONSES,
)
async def ingest(body: IngestBody, gw: GatewayDep, _: ApiKeyDep, response: Response) -> IngestOut:
    request_id = new_request_id()
    request = IngestRequested(
        message_id=request_id,
        request_id=request_id,
        dataset=body.dataset,
        source="file" if body.path else "exchange",
        path=body.path,
        since_ms=to_ms(body.since),
        until_ms=to_ms(body.until),
    )
    return await run_ingest(gw, request, response, "path" if body.path else "symbol")


def upload_name(filename: str | None) -> str:
    """A unique object name ending with the file's own name (ingest reads its type from it)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    lowered = base.lower()
    suffix = next((s for s in UPLOAD_SUFFIXES if lowered.endswith(s)), None)
    if suffix is None:
        raise InvalidInputError(
            "file", f"{base or 'the file'!r} is not a .csv, .csv.gz or .parquet file"
        )
    stem = SAFE_NAME.sub("_", base[: -len(suffix)]).strip("._") or "candles"
    return f"{uuid.uuid4().hex}/{stem[:100]}{suffix}"


@router.post(
    "/upload",
    response_model=IngestOut,
    summary="Upload a CSV or Parquet file of candles",
    responses={**INGEST_RESPONSES, 413: {"description": "the file is too large"}},
)
async def upload(
    gw: GatewayDep,
    _: ApiKeyDep,
    response: Response,
    file: Annotated[UploadFile, File(description="candles: .csv, .csv.gz or .parquet")],
    exchange: Annotated[ExchangeName, Form()],
    symbol: Annotated[Symbol, Form()],
    timeframe: Annotated[Timeframe, Form()],
    since: Annotated[str | None, Form(description="ISO 8601; keep candles from here")] = None,
    until: Annotated[str | None, Form(description="ISO 8601; keep candles before this")] = None,
) -> IngestOut:
    try:
        body = IngestBody(
            exchange=exchange, symbol=symbol, timeframe=timeframe, since=since, until=until
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "body"
        raise InvalidInputError(field, str(problem["msg"]).removeprefix("Value error, ")) from None
    name = upload_name(file.filename)
    if not file.size:
        raise InvalidInputError("file", "the file is empty")
    request_id = new_request_id()
    request = IngestRequested(
        message_id=request_id,
        request_id=request_id,
        dataset=body.dataset,
        source="upload",
        path=name,
        since_ms=to_ms(body.since),
        until_ms=to_ms(body.until),
    )
    await file.seek(0)
    await gw.backend.put_upload(name, file.file)
    log.info("upload_stored", object=name, bytes=file.size)
    try:
        return await run_ingest(gw, request, response, "file")
    except UnavailableError:
        await gw.backend.delete_upload(name)
        raise


@router.get(
    "/ingest/{request_id}",
    response_model=IngestOut,
    summary="The outcome of an import",
    responses={**ERRORS, 404: {"description": "no import with this id"}},
)
async def ingest_status(request_id: str, gw: GatewayDep, _: ReadKeyDep) -> IngestOut:
    if not REQUEST_ID.match(request_id):
        raise NotFoundError(f"no import {request_id!r}")
    entry = gw.ingests.get(request_id)
    if entry is not None and entry.done.done():
        return ingest_out(request_id, entry)
    # Ingest's record is the authority: it answers for imports sent by any gateway replica,
    # and for one whose outcome event this gateway missed while NATS reconnected.
    try:
        reply = await gw.backend.request(
            gw.names.get_ingest, GetIngest(request_id=request_id), IngestReply, service="ingest"
        )
    except ApiError:
        if entry is None:
            raise
        return ingest_out(request_id, entry)  # still known here: pending
    outcome = reply.succeeded or reply.failed
    if entry is not None:
        if outcome is not None:
            gw.ingests.record(outcome)  # the next poll is answered here
        return ingest_out(request_id, entry)
    if outcome is not None:
        key = outcome.coverage.dataset if isinstance(outcome, CandlesIngested) else outcome.dataset
        return outcome_out(request_id, key, outcome)
    raise NotFoundError(
        f"no import {request_id!r}: ingest has no record of it, and this gateway did not send "
        "it (or sent it over an hour ago); GET /api/v2/data/coverage shows every dataset"
    )


@router.get(
    "/coverage",
    response_model=CoverageOut,
    summary="Datasets: ranges, rows and gaps",
    responses=ERRORS,
)
async def coverage(
    gw: GatewayDep,
    _: ReadKeyDep,
    exchange: Annotated[ExchangeName | None, Query()] = None,
    symbol: Annotated[Symbol | None, Query()] = None,
    timeframe: Annotated[Timeframe | None, Query()] = None,
) -> CoverageOut:
    reply = await gw.backend.request(
        gw.names.coverage,
        CoverageQuery(exchange=exchange, symbol=symbol, timeframe=timeframe),
        CoverageReply,
        service="ingest",
    )
    return CoverageOut(datasets=[dataset_out(c) for c in reply.datasets])
