"""What every request model shares: the strict base, and the names, moments and integers users
write, normalised the way the data is stored (exchange in lower case, symbol and strategy in
upper case).

Request models refuse unknown fields and values of the wrong type (a seed of "12345" or 1.5
is refused, not coerced).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from tradepulse.common.contracts.market import (
    EXCHANGE_PATTERN,
    SYMBOL_MAX_LENGTH,
    SYMBOL_PATTERN,
    TIMEFRAME_PATTERN,
)
from tradepulse.common.contracts.training import Seed as WireSeed
from tradepulse.quant import STRATEGIES, CandleDataError, parse_timeframe

EXCHANGE = re.compile(EXCHANGE_PATTERN)
SYMBOL = re.compile(SYMBOL_PATTERN)
TIMEFRAME = re.compile(TIMEFRAME_PATTERN)


def _strategy(value: str) -> str:
    name = value.strip().upper()
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {value!r}; known: {', '.join(sorted(STRATEGIES))}")
    return name


def _exchange(value: str) -> str:
    name = value.strip().lower()
    if not EXCHANGE.match(name):
        raise ValueError(
            f"{value!r} is not an exchange name (letters, digits, '_', '.', '-'; e.g. binance)"
        )
    return name


def _symbol(value: str) -> str:
    symbol = value.strip().upper()
    if len(symbol) > SYMBOL_MAX_LENGTH or not SYMBOL.match(symbol):
        raise ValueError(f"{value!r} is not a market symbol; write BASE/QUOTE, e.g. BTC/USDT")
    return symbol


def _timeframe(value: str) -> str:
    text = value.strip()
    try:
        parse_timeframe(text)
    except CandleDataError as exc:
        raise ValueError(str(exc)) from None
    if not TIMEFRAME.match(text):
        raise ValueError(f"unknown timeframe {value!r}: use e.g. 1m, 5m, 1h, 4h, 1d")
    return text


def _utc(value: datetime) -> datetime:
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        seconds = moment.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValueError("must lie between 1970-01-01 and 9999-12-31 in UTC") from None
    if seconds < 0:
        raise ValueError("must not be before 1970-01-01")
    # Moments travel as whole milliseconds; comparing them as such keeps `end > start` true.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


StrategyName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_strategy)]
ExchangeName = Annotated[
    str, Field(min_length=1, max_length=64, examples=["binanceus"]), AfterValidator(_exchange)
]
Symbol = Annotated[
    str,
    Field(min_length=3, max_length=SYMBOL_MAX_LENGTH, examples=["BTC/USDT"]),
    AfterValidator(_symbol),
]
Timeframe = Annotated[
    str, Field(min_length=2, max_length=8, examples=["5m"]), AfterValidator(_timeframe)
]
Moment = Annotated[
    datetime,
    Field(description="ISO 8601 (UTC if no offset is given), e.g. 2024-01-01T00:00:00Z"),
    AfterValidator(_utc),
]
StrictInt = Annotated[int, Strict()]
Seed = Annotated[WireSeed, Strict()]


def to_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Training -----------------------------------------------------------------------------------
