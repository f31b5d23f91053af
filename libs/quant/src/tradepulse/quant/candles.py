"""Candles: an immutable columnar series, its loaders, validation and gap report.

Open times are int64 milliseconds since the epoch (UTC), prices and volumes contiguous float64.
Bar numbers in results are row numbers of the whole history: a slice keeps `first_row`, the row
number of its first candle in the series it was cut from.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from tradepulse.quant.errors import CandleDataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# What the fast CSV parser accepts; Python's int()/float() also take "1_000", which it refuses.
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")

_TIMEFRAME_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_timeframe(timeframe: str) -> int:
    """'5m' -> 300 seconds. Accepts m, h, d and w units."""
    text = timeframe.strip()
    unit = text[-1:]
    if unit not in _TIMEFRAME_UNITS or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise CandleDataError(
            f"unknown timeframe {timeframe!r}: use a positive count and a unit m, h, d or w, e.g. 5m"
        )
    return int(text[:-1]) * _TIMEFRAME_UNITS[unit]


def format_timeframe(seconds: int) -> str:
    """300 -> '5m'; the largest unit that divides the duration exactly."""
    for unit, size in sorted(_TIMEFRAME_UNITS.items(), key=lambda kv: -kv[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Gap:
    """Missing candles between two consecutive rows: `after_row` and `after_row + 1`."""

    after_row: int
    from_time: int
    to_time: int
    missing: int


@dataclass(frozen=True)
class GapReport:
    timeframe_seconds: int
    rows: int
    expected_rows: int
    gaps: tuple[Gap, ...]

    @property
    def count(self) -> int:
        return len(self.gaps)

    @property
    def missing_candles(self) -> int:
        return sum(g.missing for g in self.gaps)

    @property
    def largest(self) -> Gap | None:
        return max(self.gaps, key=lambda g: (g.missing, -g.after_row), default=None)


@dataclass(frozen=True, eq=False)
class Candles:
    """An immutable OHLCV series. Build it with `from_arrays` or a loader, which validate."""

    open_time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    timeframe_seconds: int
    first_row: int = 0

    @classmethod
    def from_arrays(
        cls,
        open_time: npt.ArrayLike,
        open: npt.ArrayLike,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        volume: npt.ArrayLike,
        *,
        timeframe_seconds: int | None = None,
        source: str = "candles",
        first_line: int | None = None,
    ) -> Candles:
        """Validate and freeze. `first_line` turns row indices into file line numbers in errors."""
        times = np.ascontiguousarray(open_time, dtype=np.int64)
        cols = [np.ascontiguousarray(a, dtype=np.float64) for a in (open, high, low, close, volume)]
        n = len(times)
        if any(len(c) != n for c in cols):
            raise CandleDataError("columns have different lengths", where=source)
        _validate(times, *cols, source=source, first_line=first_line)
        if timeframe_seconds is not None and timeframe_seconds <= 0:
            raise CandleDataError(
                f"timeframe must be positive, got {timeframe_seconds} s", where=source
            )
        tf = (
            timeframe_seconds
            if timeframe_seconds is not None
            else detect_timeframe(times, source=source)
        )
        _check_grid(times, tf, source=source, first_line=first_line)
        for arr in (times, *cols):
            arr.flags.writeable = False
        o, h, lo, c, v = cols
        return cls(times, o, h, lo, c, v, timeframe_seconds=tf)

    def __len__(self) -> int:
        return len(self.open_time)

    def slice(self, start: int, stop: int | None = None) -> Candles:
        """Rows `start..stop-1` as a view; `first_row` keeps whole-history bar numbers."""
        stop = len(self) if stop is None else stop
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"slice {start}:{stop} outside 0:{len(self)}")
        return Candles(
            self.open_time[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
            timeframe_seconds=self.timeframe_seconds,
            first_row=self.first_row + start,
        )

    def to_bytes(self) -> bytes:
        """A self-describing binary snapshot (numpy .npz) that `from_bytes` reads back exactly."""
        buf = io.BytesIO()
        np.savez(
            buf,
            open_time=self.open_time,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            timeframe_seconds=np.int64(self.timeframe_seconds),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "snapshot") -> Candles:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                cols = [z[name] for name in ("open_time", "open", "high", "low", "close", "volume")]
                tf = int(z["timeframe_seconds"])
        except (OSError, ValueError, KeyError) as exc:
            raise CandleDataError(f"not a candle snapshot ({exc})", where=source) from exc
        return cls.from_arrays(*cols, timeframe_seconds=tf, source=source)

    def gap_report(self) -> GapReport:
        return gap_report(self.open_time, self.timeframe_seconds)

    def content_hash(self) -> str:
        """sha256 over the raw little-endian columns and the timeframe: identifies a dataset."""
        h = hashlib.sha256()
        h.update(str(self.timeframe_seconds).encode())
        for arr in (self.open_time, self.open, self.high, self.low, self.close, self.volume):
            h.update(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        return h.hexdigest()


def detect_timeframe(open_time: IntArray, *, source: str | None = None) -> int:
    """The most common spacing between consecutive open times, in seconds."""
    if len(open_time) < 2:
        raise CandleDataError(
            "need at least 2 candles to detect the timeframe; pass it explicitly", where=source
        )
    diffs = np.diff(open_time)
    values, counts = np.unique(diffs, return_counts=True)
    spacing_ms = int(values[np.argmax(counts)])
    if spacing_ms <= 0 or spacing_ms % 1000:
        raise CandleDataError(
            f"cannot detect a timeframe from a spacing of {spacing_ms} ms", where=source
        )
    return spacing_ms // 1000


def gap_report(open_time: IntArray, timeframe_seconds: int) -> GapReport:
    step = timeframe_seconds * 1000
    n = len(open_time)
    if n == 0:
        return GapReport(timeframe_seconds, 0, 0, ())
    diffs = np.diff(open_time)
    where = np.flatnonzero(diffs > step)
    gaps = tuple(
        Gap(
            after_row=int(i),
            from_time=int(open_time[i]),
            to_time=int(open_time[i + 1]),
            missing=int(diffs[i] // step - 1),
        )
        for i in where
    )
    expected = int((open_time[-1] - open_time[0]) // step + 1)
    return GapReport(timeframe_seconds, n, expected, gaps)


def _where(row: int, source: str, first_line: int | None) -> str:
    return (
        f"{source}, line {first_line + row}" if first_line is not None else f"{source}, row {row}"
    )


def _validate(
    t: IntArray,
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    c: FloatArray,
    v: FloatArray,
    *,
    source: str,
    first_line: int | None,
) -> None:
    if len(t) == 0:
        raise CandleDataError("no candles", where=source)
    checks: list[tuple[npt.NDArray[np.bool_], str]] = []
    for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c), ("volume", v)):
        checks.append((~np.isfinite(arr), f"{name} is not a finite number"))
    for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
        checks.append((~(arr > 0), f"{name} must be > 0"))
    checks.append((~(v >= 0), "volume must be >= 0"))
    checks.append((~(h >= np.maximum(o, c)), "high is below open or close"))
    checks.append((~(lo <= np.minimum(o, c)), "low is above open or close"))
    dup = np.zeros(len(t), dtype=np.bool_)
    unsorted = np.zeros(len(t), dtype=np.bool_)
    if len(t) > 1:
        d = np.diff(t)
        dup[1:] = d == 0
        unsorted[1:] = d < 0
    checks.append((dup, "duplicate timestamp (same as the previous row)"))
    checks.append((unsorted, "timestamp earlier than the previous row (rows must be sorted)"))
    first_bad: tuple[int, str] | None = None
    for mask, problem in checks:
        idx = np.flatnonzero(mask)
        if len(idx) and (first_bad is None or idx[0] < first_bad[0]):
            first_bad = (int(idx[0]), problem)
    if first_bad is not None:
        row, problem = first_bad
        raise CandleDataError(problem, where=_where(row, source, first_line))


def _check_grid(t: IntArray, tf: int, *, source: str, first_line: int | None) -> None:
    if len(t) < 2:
        return
    off = np.flatnonzero(np.diff(t) % (tf * 1000))
    if len(off):
        row = int(off[0]) + 1
        raise CandleDataError(
            f"open time {int(t[row])} is not on the {format_timeframe(tf)} grid of the previous row",
            where=_where(row, source, first_line),
        )


def load_candles(path: str | Path, *, timeframe_seconds: int | None = None) -> Candles:
    """Load CSV (plain or .gz) or Parquet with columns timestamp, open, high, low, close, volume.

    `timestamp` is the candle's open time in integer milliseconds (UTC).
    """
    p = Path(path)
    if not p.is_file():
        raise CandleDataError("no such file", where=str(p))
    name = p.name.lower()
    if name.endswith((".parquet", ".pq")):
        return _load_parquet(p, timeframe_seconds)
    if name.endswith((".csv", ".csv.gz")):
        return _load_csv(p, timeframe_seconds)
    raise CandleDataError("unsupported file type: use .csv, .csv.gz or .parquet", where=str(p))


def _load_csv(p: Path, timeframe_seconds: int | None) -> Candles:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {"timestamp": pa.int64(), **{c: pa.float64() for c in COLUMNS[1:]}}
    try:
        table = pacsv.read_csv(
            p,
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=list(COLUMNS), strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError, OSError, EOFError) as exc:
        raise _locate_csv_problem(p) from exc
    if table.num_rows and any(table.column(c).null_count for c in COLUMNS):
        raise _locate_csv_problem(p)
    cols = [_column_to_numpy(table.column(c)) for c in COLUMNS]
    return Candles.from_arrays(
        *cols, timeframe_seconds=timeframe_seconds, source=str(p), first_line=2
    )


def _column_to_numpy(column: Any) -> npt.NDArray[Any]:
    """A null-free primitive Arrow column as one numpy array, read from its buffers.

    pyarrow's own `to_numpy` imports pandas on first use, which costs a second of start-up.
    """
    dtype = np.dtype(column.type.to_pandas_dtype())
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=dtype)[chunk.offset : chunk.offset + len(chunk)]
        for chunk in column.chunks
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _open_text(p: Path) -> IO[str]:
    if p.name.lower().endswith(".gz"):
        return gzip.open(p, "rt", newline="")
    return p.open("r", newline="")


def _locate_csv_problem(p: Path) -> CandleDataError:
    """Slow path, only after the fast parser failed: find the first bad line and say why."""
    try:
        with _open_text(p) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return CandleDataError(
                    "empty file: expected a header " + ",".join(COLUMNS), where=str(p)
                )
            names = [h.strip().lower() for h in header]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                return CandleDataError(
                    f"header lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}",
                    where=f"{p}, line 1",
                )
            pos = [names.index(c) for c in COLUMNS]
            for line, row in enumerate(reader, start=2):
                if len(row) != len(names):
                    return CandleDataError(
                        f"expected {len(names)} fields, found {len(row)}", where=f"{p}, line {line}"
                    )
                for col, i in zip(COLUMNS, pos, strict=True):
                    text = row[i].strip()
                    try:
                        if not (_INT if col == "timestamp" else _FLOAT).fullmatch(text):
                            raise ValueError(text)
                        value = int(text) if col == "timestamp" else float(text)
                    except ValueError:
                        kind = "an integer (ms)" if col == "timestamp" else "a number"
                        return CandleDataError(
                            f"{col} {text!r} is not {kind}", where=f"{p}, line {line}"
                        )
                    if col != "timestamp" and math.isnan(value):
                        return CandleDataError(f"{col} is NaN", where=f"{p}, line {line}")
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, gzip.BadGzipFile) as exc:
        return CandleDataError(f"cannot read the file ({exc})", where=str(p))
    return CandleDataError("cannot parse the file as CSV", where=str(p))


def _load_parquet(p: Path, timeframe_seconds: int | None) -> Candles:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CandleDataError(f"cannot read Parquet ({exc})", where=str(p)) from exc
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise CandleDataError(f"lacks column(s) {', '.join(missing)}", where=str(p))
    ts = table.column("timestamp")
    if ts.null_count:
        row = int(np.flatnonzero(ts.is_null().to_numpy(zero_copy_only=False))[0])
        raise CandleDataError("timestamp is missing", where=f"{p}, row {row}")
    if pa.types.is_floating(ts.type) or pa.types.is_string(ts.type):
        raise CandleDataError(
            f"timestamp column has type {ts.type}; expected integer milliseconds or a timestamp",
            where=str(p),
        )
    if pa.types.is_timestamp(ts.type):
        ts = ts.cast(pa.timestamp("ms", tz=ts.type.tz)).cast(pa.int64())
    cols: list[np.ndarray] = [ts.to_numpy(zero_copy_only=False)]
    for c in COLUMNS[1:]:
        col = table.column(c)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise CandleDataError(f"{c} column has type {col.type}; expected numbers", where=str(p))
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise CandleDataError(f"{c} is missing", where=f"{p}, row {row}")
        cols.append(col.to_numpy(zero_copy_only=False))
    return Candles.from_arrays(*cols, timeframe_seconds=timeframe_seconds, source=str(p))
