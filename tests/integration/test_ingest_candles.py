"""Ingest's candles responder (GetCandles) on a real PostgreSQL: a range, paged by limit with
the next page's start; a dataset it does not have is not found, not an error."""

from __future__ import annotations

from pathlib import Path

from tests.integration.flows import excerpt
from tradepulse.common.contracts.charts import GetCandles, GetGaps
from tradepulse.common.contracts.market import CandlesIngested, DatasetKey, IngestRequested
from tradepulse.ingest import handlers
from tradepulse.quant import load_candles

from .test_ingest import BTC, FIVE_MINUTES_MS, bus, deps

__all__ = ["bus", "deps"]


async def test_a_range_comes_in_pages_equal_to_the_file(
    deps: handlers.Deps, tmp_path: Path, shared_candles_path: Path
) -> None:
    path = excerpt(shared_candles_path, 1_200, tmp_path / "btc.csv")
    stored = await handlers.ingest(
        IngestRequested(request_id="c-1", dataset=BTC, source="file", path=str(path)), deps
    )
    assert isinstance(stored, CandlesIngested), stored
    candles = load_candles(path)
    t = candles.open_time
    start, end = int(t[100]), int(t[1_100])

    first = await handlers.candles(
        GetCandles(dataset=BTC, start_ms=start, end_ms=end, limit=600), deps
    )
    assert first.found
    assert first.time == t[100:700].tolist()
    assert first.close == candles.close[100:700].tolist()
    assert first.volume == candles.volume[100:700].tolist()
    assert first.next_start_ms == int(t[700])

    rest = await handlers.candles(
        GetCandles(dataset=BTC, start_ms=first.next_start_ms, end_ms=end, limit=600), deps
    )
    assert rest.time == t[700:1_100].tolist()
    assert rest.open == candles.open[700:1_100].tolist()
    assert rest.next_start_ms is None

    # Open-ended ranges, and a range with no candles in it.
    tail = await handlers.candles(GetCandles(dataset=BTC, start_ms=int(t[-3])), deps)
    assert tail.time == t[-3:].tolist()
    empty = await handlers.candles(
        GetCandles(dataset=BTC, start_ms=int(t[-1]) + FIVE_MINUTES_MS), deps
    )
    assert (empty.found, empty.time, empty.next_start_ms) == (True, [], None)


async def test_an_unknown_dataset_is_not_found(deps: handlers.Deps) -> None:
    other = DatasetKey(exchange="binance", symbol="ETH/USDT", timeframe="5m")
    reply = await handlers.candles(GetCandles(dataset=other), deps)
    assert (reply.found, reply.time) == (False, [])


async def test_the_gaps_are_the_ones_the_import_found(
    deps: handlers.Deps, tmp_path: Path, shared_candles_path: Path
) -> None:
    whole = excerpt(shared_candles_path, 1_000, tmp_path / "whole.csv")
    lines = whole.read_text().splitlines(keepends=True)
    # Rows 301..310 and 701 (1-based after the header) left out: two gaps, 10 and 1 missing.
    holed = tmp_path / "holed.csv"
    holed.write_text("".join(lines[:301] + lines[311:701] + lines[702:]))
    stored = await handlers.ingest(
        IngestRequested(request_id="g-1", dataset=BTC, source="file", path=str(holed)), deps
    )
    assert isinstance(stored, CandlesIngested), stored
    t = load_candles(whole).open_time
    reply = await handlers.gaps(GetGaps(dataset=BTC), deps)
    assert (reply.found, reply.total) == (True, 2)
    assert [(g.after_time, g.next_time, g.missing) for g in reply.gaps] == [
        (int(t[299]), int(t[310]), 10),
        (int(t[699]), int(t[701]), 1),
    ]
    other = DatasetKey(exchange="binance", symbol="ETH/USDT", timeframe="5m")
    assert (await handlers.gaps(GetGaps(dataset=other), deps)).found is False
