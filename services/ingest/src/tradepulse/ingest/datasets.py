"""A dataset's coverage and gap report, and the name of its snapshot in the candles bucket."""

from __future__ import annotations

import re
from datetime import datetime

from tradepulse.common.contracts.market import DatasetCoverage, DatasetKey, GapInfo
from tradepulse.quant import Candles

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def describe(key: DatasetKey) -> str:
    return f"{key.exchange} {key.symbol} {key.timeframe}"


def snapshot_name(key: DatasetKey, content_hash: str) -> str:
    """Content-addressed, so a snapshot never changes once written: a trainer holding a name
    reads the candles it was given. Only NATS-safe characters ('/' and ':' become '-')."""
    symbol = _UNSAFE.sub("-", key.symbol)
    return f"{key.exchange}.{symbol}.{key.timeframe}.{content_hash[:16]}"


def coverage(
    key: DatasetKey,
    dataset: Candles,
    *,
    content_hash: str,
    snapshot: str,
    updated_at: datetime,
) -> tuple[DatasetCoverage, list[GapInfo]]:
    """The coverage of a whole stored dataset (which has at least one candle), and every gap."""
    report = dataset.gap_report()
    gaps = [
        GapInfo(after_time=g.from_time, next_time=g.to_time, missing=g.missing) for g in report.gaps
    ]
    largest = report.largest
    summary = DatasetCoverage(
        dataset=key,
        rows=report.rows,
        first_ms=int(dataset.open_time[0]),
        last_ms=int(dataset.open_time[-1]),
        expected_rows=report.expected_rows,
        gaps=report.count,
        missing_candles=report.missing_candles,
        largest_gap=None
        if largest is None
        else GapInfo(
            after_time=largest.from_time, next_time=largest.to_time, missing=largest.missing
        ),
        content_hash=content_hash,
        snapshot=snapshot,
        updated_at=updated_at.isoformat(),
    )
    return summary, gaps
