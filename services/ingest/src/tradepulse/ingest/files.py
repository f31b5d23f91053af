"""Candles from CSV or Parquet files in the layout of the shared data (see libs/quant candles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tradepulse.common.errors import InvalidRequestError
from tradepulse.quant import CandleDataError, Candles, load_candles, parse_timeframe
from tradepulse.quant.candles import format_timeframe


def resolve(path: str, root: Path | None) -> Path:
    """The file a request names. With a root, relative paths are under it and nothing leaves it;
    without one, the path must be absolute (the service's working directory means nothing to
    the sender)."""
    if root is None:
        p = Path(path)
        if not p.is_absolute():
            raise InvalidRequestError(f"path {path!r} must be absolute")
        return p
    base = root.resolve()
    p = (base / path).resolve()
    if not p.is_relative_to(base):
        raise InvalidRequestError(f"path {path!r} is outside the ingest file root")
    return p


def read(path: Path, timeframe: str, since_ms: int | None, until_ms: int | None) -> Candles:
    """Load and validate the file as `timeframe` candles (errors name the line), keeping those
    with open time in [since_ms, until_ms)."""
    declared = parse_timeframe(timeframe)
    candles = load_candles(path, timeframe_seconds=declared)
    if len(candles) > 1:
        closest = int(np.diff(candles.open_time).min()) // 1000
        if closest > declared:
            # 10m candles filed as 5m would pass the grid check as 5m ones with a gap after
            # every row.
            raise CandleDataError(
                f"no two candles are closer than {format_timeframe(closest)}; "
                f"they are not {timeframe} candles",
                where=str(path),
            )
    start = 0 if since_ms is None else int(np.searchsorted(candles.open_time, since_ms))
    stop = len(candles) if until_ms is None else int(np.searchsorted(candles.open_time, until_ms))
    if start >= stop:
        raise CandleDataError("no candles in the requested time range", where=str(path))
    return candles if (start, stop) == (0, len(candles)) else candles.slice(start, stop)
