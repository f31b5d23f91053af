"""Candles from CSV or Parquet files in the layout of the shared data (see libs/quant candles).

Imports by server path read only inside the folders INGEST_FILE_ROOT names; without it they
are refused (uploads still work). Error texts name the file as the client named it, never the
server path it resolved to, and quote no field: a column name and a line say what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tradepulse.common.errors import InvalidRequestError
from tradepulse.quant import CandleDataError, Candles, load_candles, parse_timeframe
from tradepulse.quant.candles import FileTooLargeError, LoadLimits, format_timeframe

# Linux's own limits (PATH_MAX, NAME_MAX): a longer path can name no file, so it is refused
# as the client's mistake instead of failing in the OS, and in every redelivery.
MAX_PATH_CHARS = 4095
MAX_NAME_BYTES = 255

LIMIT_SETTINGS = {"rows": "INGEST_MAX_ROWS", "bytes": "INGEST_MAX_DECOMPRESSED_BYTES"}


def resolve(path: str, roots: tuple[Path, ...]) -> Path:
    """The file a request names, inside one of `roots` (relative paths are taken under each
    in turn; an absolute one must lie inside one). Symlinks are resolved before the check.

    Whatever the reason a path is not served (outside every root, missing, a folder, a link
    leading out), the answer is the same, so that it tells nothing about the server's files.
    """
    if not roots:
        raise InvalidRequestError(
            "imports by server path are off: this ingest service has no INGEST_FILE_ROOT; "
            "upload the file instead"
        )
    if (
        "\x00" in path
        or len(path) > MAX_PATH_CHARS
        or any(
            len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in path.split("/")
        )
    ):
        raise InvalidRequestError(
            f"path is not a possible file name (a NUL byte, a name over {MAX_NAME_BYTES} bytes "
            f"or a path over {MAX_PATH_CHARS} characters)"
        )
    for root in roots:
        try:
            base = root.resolve()
            candidate = (base / path).resolve()
            if candidate.is_relative_to(base) and candidate.is_file():
                return candidate
        except (OSError, RuntimeError, ValueError):
            # A symlink loop (RuntimeError), a name the OS refuses: not a file served either.
            continue
    raise InvalidRequestError(f"no candle file {path!r} in the folders imports may read")


def read(
    path: Path,
    timeframe: str,
    since_ms: int | None,
    until_ms: int | None,
    *,
    limits: LoadLimits,
    source: str,
) -> Candles:
    """Load and validate the file as `timeframe` candles (errors name `source` and the line),
    keeping those with open time in [since_ms, until_ms). Past `limits` it is refused with the
    setting that raises the limit."""
    declared = parse_timeframe(timeframe)
    try:
        candles = load_candles(path, timeframe_seconds=declared, limits=limits, source=source)
    except FileTooLargeError as exc:
        raise FileTooLargeError(
            exc.limit,
            f"{exc.problem} (limit: {LIMIT_SETTINGS[exc.limit]})",
            where=exc.where or source,
        ) from None
    if len(candles) > 1:
        closest = int(np.diff(candles.open_time).min()) // 1000
        if closest > declared:
            # 10m candles filed as 5m would pass the grid check as 5m ones with a gap after
            # every row.
            raise CandleDataError(
                f"no two candles are closer than {format_timeframe(closest)}; "
                f"they are not {timeframe} candles",
                where=source,
            )
    start = 0 if since_ms is None else int(np.searchsorted(candles.open_time, since_ms))
    stop = len(candles) if until_ms is None else int(np.searchsorted(candles.open_time, until_ms))
    if start >= stop:
        raise CandleDataError("no candles in the requested time range", where=source)
    return candles if (start, stop) == (0, len(candles)) else candles.slice(start, stop)
