"""What the dashboard's charts read, through the services like everything else:
`GET /api/v2/configs/{id}/backtest` (the trainer re-runs the configuration on its stored
window), `GET /api/v2/training/job/{id}/walk-forward/equity` (the trainer re-runs a
walk-forward job's fold tests and stitches them), `GET /api/v2/data/candles` (a page of a
dataset's candles from ingest) and `GET /api/v2/data/gaps` (where a dataset has none)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from tradepulse.common.contracts.base import ID_PATTERN
from tradepulse.common.contracts.charts import (
    DEFAULT_EQUITY_POINTS,
    MAX_CANDLES_PER_REPLY,
    MAX_EQUITY_POINTS,
    MAX_TRADES_PER_REPLY,
    MIN_EQUITY_POINTS,
    BacktestReply,
    CandlesReply,
    GapsReply,
    GetCandles,
    GetGaps,
    GetWalkForwardEquity,
    RunBacktest,
    WalkForwardEquityReply,
)
from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.contracts.registry import ConfigReply, GetConfig
from tradepulse.gateway.deps import GatewayDep, ReadKeyDep
from tradepulse.gateway.errors import ERRORS, InvalidInputError, NotFoundError
from tradepulse.gateway.schemas.charts import (
    BacktestOut,
    CandlesOut,
    GapsOut,
    GapSpanOut,
    WalkForwardEquityOut,
)
from tradepulse.gateway.schemas.common import (
    ExchangeName,
    Moment,
    Symbol,
    Timeframe,
    iso_ms,
    to_ms,
)

router = APIRouter(tags=["charts"])

CONFIG_ID = re.compile(ID_PATTERN)
JOB_ID = re.compile(ID_PATTERN)
# A re-run of a long window is a few hundred milliseconds of CPU on a busy trainer.
BACKTEST_WAIT_S = 30.0


def _range(start: datetime | None, end: datetime | None) -> tuple[int | None, int | None]:
    start_ms, end_ms = to_ms(start), to_ms(end)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise InvalidInputError("end", "must be after start")
    return start_ms, end_ms


@router.get(
    "/api/v2/configs/{config_id}/backtest",
    response_model=BacktestOut,
    summary="A configuration's backtest re-run: trades and the downsampled equity curve",
    responses={**ERRORS, 404: {"description": "no such configuration"}},
)
async def config_backtest(
    config_id: str,
    gw: GatewayDep,
    _: ReadKeyDep,
    start: Annotated[Moment | None, Query(description="keep trades entered from here")] = None,
    end: Annotated[Moment | None, Query(description="... and before this")] = None,
    points: Annotated[
        int,
        Query(
            ge=MIN_EQUITY_POINTS,
            le=MAX_EQUITY_POINTS,
            description="at most this many equity points (min/max per bucket keeps extremes)",
        ),
    ] = DEFAULT_EQUITY_POINTS,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="of the trades")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_TRADES_PER_REPLY)] = MAX_TRADES_PER_REPLY,
) -> BacktestOut:
    """The trainer re-runs the configuration over its whole stored window (so the fingerprint
    is the configuration's: `matches_config`), then returns the trades entered in
    [start, end), paged by offset/limit, and the equity and drawdown of the bars opening in
    [start, end), thinned to at most `points` by keeping each bucket's highest and lowest
    equity and its deepest drawdown."""
    start_ms, end_ms = _range(start, end)
    if not CONFIG_ID.match(config_id):
        raise NotFoundError(f"no configuration {config_id!r}")
    found = await gw.backend.request(
        gw.names.get_config, GetConfig(config_id=config_id), ConfigReply, service="registry"
    )
    config = found.config
    if config is None:
        raise NotFoundError(f"no configuration {config_id!r}")
    reply = await gw.backend.request(
        gw.names.run_backtest,
        RunBacktest(
            strategy=config.strategy,
            params=config.params,
            window=config.window,
            settings=config.settings,
            regime=config.regime,
            start_ms=start_ms,
            end_ms=end_ms,
            points=points,
            trade_offset=offset,
            trade_limit=limit,
        ),
        BacktestReply,
        service="trainer",
        within=BACKTEST_WAIT_S,
    )
    return BacktestOut(
        config_id=config_id,
        fingerprint=reply.fingerprint,
        matches_config=reply.fingerprint == config.fingerprint,
        metrics=reply.metrics,
        trades_total=reply.trades_total,
        offset=offset,
        limit=limit,
        trades=reply.trades,
        equity=reply.equity,
        compute_ms=reply.compute_ms,
    )


@router.get(
    "/api/v2/training/job/{job_id}/walk-forward/equity",
    response_model=WalkForwardEquityOut,
    summary="A walk-forward job's stitched out-of-sample equity, re-run and downsampled",
    responses={
        **ERRORS,
        404: {"description": "no such job, or no walk-forward report (yet)"},
    },
)
async def walk_forward_equity(
    job_id: str,
    gw: GatewayDep,
    _: ReadKeyDep,
    points: Annotated[
        int,
        Query(
            ge=MIN_EQUITY_POINTS,
            le=MAX_EQUITY_POINTS,
            description="at most this many equity points (min/max per bucket keeps extremes)",
        ),
    ] = DEFAULT_EQUITY_POINTS,
) -> WalkForwardEquityOut:
    """A trainer re-runs each fold's best parameters on the fold's test span, capital carried
    from fold to fold, and stitches them as the job's walk-forward report did (so the metrics
    are the report's `oos.metrics` and `matches_report` holds), then returns the equity and
    drawdown over the out-of-sample bars thinned to at most `points`."""
    if not JOB_ID.match(job_id):
        raise NotFoundError(f"no job {job_id!r}")
    reply = await gw.backend.request(
        gw.names.walk_forward_equity,
        GetWalkForwardEquity(job_id=job_id, points=points),
        WalkForwardEquityReply,
        service="trainer",
        within=BACKTEST_WAIT_S,
    )
    return WalkForwardEquityOut(
        job_id=job_id,
        fingerprint=reply.fingerprint,
        matches_report=reply.matches_report,
        metrics=reply.metrics,
        trades=reply.trades,
        equity=reply.equity,
        compute_ms=reply.compute_ms,
    )


@router.get(
    "/api/v2/data/candles",
    response_model=CandlesOut,
    summary="A range of a dataset's candles (at most 5,000 per call)",
    responses={**ERRORS, 404: {"description": "no such dataset"}},
)
async def candles(
    gw: GatewayDep,
    _: ReadKeyDep,
    exchange: Annotated[ExchangeName, Query()],
    symbol: Annotated[Symbol, Query()],
    timeframe: Annotated[Timeframe, Query()],
    start: Annotated[Moment | None, Query(description="open time from (inclusive)")] = None,
    end: Annotated[Moment | None, Query(description="open time before (exclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CANDLES_PER_REPLY)] = MAX_CANDLES_PER_REPLY,
) -> CandlesOut:
    """Oldest first; when the range holds more than `limit` candles, `next_start` is where
    the next call starts."""
    start_ms, end_ms = _range(start, end)
    key = DatasetKey(exchange=exchange, symbol=symbol, timeframe=timeframe)
    reply = await gw.backend.request(
        gw.names.get_candles,
        GetCandles(dataset=key, start_ms=start_ms, end_ms=end_ms, limit=limit),
        CandlesReply,
        service="ingest",
    )
    if not reply.found:
        raise NotFoundError(f"no dataset {exchange} {symbol} {timeframe}")
    return CandlesOut(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        count=len(reply.time),
        time=reply.time,
        open=reply.open,
        high=reply.high,
        low=reply.low,
        close=reply.close,
        volume=reply.volume,
        next_start=None if reply.next_start_ms is None else iso_ms(reply.next_start_ms),
    )


@router.get(
    "/api/v2/data/gaps",
    response_model=GapsOut,
    summary="A dataset's gaps, in time order",
    responses={**ERRORS, 404: {"description": "no such dataset"}},
)
async def gaps(
    gw: GatewayDep,
    _: ReadKeyDep,
    exchange: Annotated[ExchangeName, Query()],
    symbol: Annotated[Symbol, Query()],
    timeframe: Annotated[Timeframe, Query()],
) -> GapsOut:
    key = DatasetKey(exchange=exchange, symbol=symbol, timeframe=timeframe)
    reply = await gw.backend.request(
        gw.names.get_gaps, GetGaps(dataset=key), GapsReply, service="ingest"
    )
    if not reply.found:
        raise NotFoundError(f"no dataset {exchange} {symbol} {timeframe}")
    return GapsOut(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        total=reply.total,
        gaps=[
            GapSpanOut(
                after=iso_ms(g.after_time),
                next=iso_ms(g.next_time),
                after_ms=g.after_time,
                next_ms=g.next_time,
                missing=g.missing,
            )
            for g in reply.gaps
        ],
    )
