"""Candles from an exchange through ccxt (async): range planning, paging, retries with backoff.

Open times are integer milliseconds (UTC); a range [since, until) holds the candles whose open
time t satisfies since <= t < until. Only closed candles are pulled: the one still forming
would be stored once and never corrected, because stored candles are never overwritten.
"""

from __future__ import annotations

import asyncio
import importlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.logging import get_logger
from tradepulse.ingest.errors import ExchangeRefusedError, ExchangeUnavailableError
from tradepulse.quant import CandleDataError, Candles, parse_timeframe

T = TypeVar("T")

ExchangeFactory = Callable[[str], Any]
"""Builds a ccxt async exchange object from a ccxt exchange id (e.g. 'binance')."""

CCXT_MODULE = "ccxt.async_support"
MAX_BACKOFF_S = 30.0

log = get_logger(__name__)


@dataclass(frozen=True)
class PullPolicy:
    page_limit: int
    attempts: int
    backoff_s: float


async def load_ccxt() -> ModuleType:
    """ccxt builds every exchange class on import (seconds), so it is loaded on first use and
    off the event loop, keeping start-up, pings and coverage queries fast."""
    return await asyncio.to_thread(importlib.import_module, CCXT_MODULE)


def ccxt_factory(timeout_ms: int) -> ExchangeFactory:
    """The real exchanges: `ccxt.async_support.<id>` with ccxt's own rate limiter on."""

    def create(exchange_id: str) -> Any:
        ccxt = importlib.import_module(CCXT_MODULE)
        if exchange_id not in ccxt.exchanges:
            raise ExchangeRefusedError(
                f"unknown exchange {exchange_id!r}: use a ccxt id such as binance"
            )
        return getattr(ccxt, exchange_id)({"enableRateLimit": True, "timeout": timeout_ms})

    return create


def plan_range(
    *,
    timeframe_ms: int,
    since_ms: int | None,
    until_ms: int | None,
    last_stored_ms: int | None,
    now_ms: int,
    default_lookback: int,
) -> tuple[int, int]:
    """The [since, until) to pull.

    until: the request's, but never past the last closed candle. since: resume after the last
    stored candle when the request gives none or one not after it; with nothing stored and no
    since, the last `default_lookback` candles.
    """
    closed_until = now_ms - timeframe_ms + 1
    until = closed_until if until_ms is None else min(until_ms, closed_until)
    if last_stored_ms is not None and (since_ms is None or since_ms <= last_stored_ms):
        return last_stored_ms + timeframe_ms, until
    if since_ms is None:
        last_closed = (until - 1) // timeframe_ms
        return (last_closed - default_lookback + 1) * timeframe_ms, until
    return since_ms, until


async def pull(
    factory: ExchangeFactory,
    key: DatasetKey,
    since_ms: int,
    until_ms: int,
    policy: PullPolicy,
) -> Candles | None:
    """Every candle of `key` in [since_ms, until_ms), validated; None when there is none."""
    ccxt = await load_ccxt()
    exchange = factory(key.exchange)
    try:
        await _with_retries(ccxt, policy, "load_markets", exchange.load_markets)
        if not exchange.has.get("fetchOHLCV"):
            raise ExchangeRefusedError(f"{key.exchange} does not serve candles (fetchOHLCV)")
        if exchange.timeframes and key.timeframe not in exchange.timeframes:
            raise ExchangeRefusedError(
                f"{key.exchange} does not offer the {key.timeframe} timeframe"
            )
        pages = await _pages(exchange, ccxt, key, since_ms, until_ms, policy)
    finally:
        await exchange.close()
    if not pages:
        return None
    rows = np.concatenate(pages)
    return Candles.from_arrays(
        rows[:, 0].astype(np.int64),
        *(rows[:, i] for i in range(1, 6)),
        timeframe_seconds=parse_timeframe(key.timeframe),
        source=f"{key.exchange} {key.symbol} {key.timeframe} candles from the exchange",
    )


async def _pages(
    exchange: Any,
    ccxt: ModuleType,
    key: DatasetKey,
    since_ms: int,
    until_ms: int,
    policy: PullPolicy,
) -> list[np.ndarray]:
    # Paged by the last open time received, not by counting: exchanges cap `limit` differently
    # and skip the candles of their outages.
    timeframe_ms = parse_timeframe(key.timeframe) * 1000
    pages: list[np.ndarray] = []
    cursor = since_ms
    while cursor < until_ms:
        start = cursor
        batch = await _with_retries(
            ccxt,
            policy,
            f"fetch_ohlcv since {start}",
            partial(
                exchange.fetch_ohlcv,
                key.symbol,
                key.timeframe,
                since=start,
                limit=policy.page_limit,
            ),
        )
        if not batch:
            break
        page = _as_rows(batch, key)
        times = page[:, 0]
        pages.append(page[(times >= start) & (times < until_ms)])
        newest = int(times.max())
        if newest < start:
            break
        cursor = newest + timeframe_ms
    return [p for p in pages if len(p)]


def _as_rows(batch: list[list[Any]], key: DatasetKey) -> np.ndarray:
    try:
        rows = np.array([candle[:6] for candle in batch], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CandleDataError(
            f"malformed candles from the exchange ({exc})",
            where=f"{key.exchange} {key.symbol} {key.timeframe}",
        ) from exc
    if rows.ndim != 2 or rows.shape[1] != 6 or not np.isfinite(rows[:, 0]).all():
        raise CandleDataError(
            "the exchange's candles are not [time, open, high, low, close, volume]",
            where=f"{key.exchange} {key.symbol} {key.timeframe}",
        )
    return rows


async def _with_retries(
    ccxt: ModuleType, policy: PullPolicy, what: str, call: Callable[[], Awaitable[T]]
) -> T:
    """Retry network errors (timeouts, 429/DDoS protection, maintenance) with exponential
    backoff and jitter; any other ccxt error (bad symbol, bad arguments, auth) is final."""
    attempt = 1
    while True:
        try:
            return await call()
        except ccxt.NetworkError as exc:
            if attempt >= policy.attempts:
                raise ExchangeUnavailableError(
                    f"{what}: still failing after {attempt} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            delay = min(MAX_BACKOFF_S, policy.backoff_s * 2 ** (attempt - 1))
            delay += random.uniform(0, delay / 4)
            log.warning(
                "exchange_call_retried",
                call=what,
                attempt=attempt,
                delay_s=round(delay, 3),
                error=f"{type(exc).__name__}: {exc}",
            )
            await asyncio.sleep(delay)
            attempt += 1
        except ccxt.BaseError as exc:
            raise ExchangeRefusedError(f"{what}: {type(exc).__name__}: {exc}") from exc
