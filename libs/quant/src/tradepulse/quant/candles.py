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
import zlib
from collections.abc import Iterator
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


def _first_bad(
    t: IntArray,
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    c: FloatArray,
    v: FloatArray,
    previous: int | None,
) -> tuple[int, str] | None:
    """The first row breaking a rule, and the rule; None when all hold. `previous` is the open
    time of the row before `t[0]` (loaders check a file block by block). One rule's mask at a
    time: the temporaries stay a few bytes per row, whatever the number of rules."""
    first: tuple[int, str] | None = None

    def check(mask: npt.NDArray[np.bool_], problem: str) -> None:
        nonlocal first
        limit = len(mask) if first is None else first[0]
        if limit == 0:
            return
        idx = np.flatnonzero(mask[:limit])
        if len(idx):
            first = (int(idx[0]), problem)

    for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c), ("volume", v)):
        check(~np.isfinite(arr), f"{name} is not a finite number")
    for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
        check(~(arr > 0), f"{name} must be > 0")
    check(~(v >= 0), "volume must be >= 0")
    check(~(h >= np.maximum(o, c)), "high is below open or close")
    check(~(lo <= np.minimum(o, c)), "low is above open or close")
    # Open times are milliseconds since 1970-01-01 UTC; a negative one is a mistake in the
    # file (seconds read as a signed 32-bit wrap, a wrong epoch), never a real candle here.
    check(t < 0, "timestamp is before 1970-01-01 (a negative number of milliseconds)")
    before = np.empty(len(t), dtype=np.int64)
    if len(t):
        before[1:] = t[:-1]
        before[0] = t[0] - 1 if previous is None else previous
    check(t == before, "duplicate timestamp (same as the previous row)")
    check(t < before, "timestamp earlier than the previous row (rows must be sorted)")
    return first


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
    bad = _first_bad(t, o, h, lo, c, v, None)
    if bad is not None:
        row, problem = bad
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


# ---- Loading files -------------------------------------------------------------------------

# Rows are parsed a block at a time; a line (the header included) longer than a block is
# refused: a candle row is a few dozen characters.
_BLOCK_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 64 * 1024
_ROW_BYTES = 48  # an int64 open time and five float64 columns


@dataclass(frozen=True)
class LoadLimits:
    """What one file may become once read, whatever its size on disk.

    `max_rows`: candles in the file. `max_decompressed_bytes`: the CSV text after gzip (the
    file itself for plain CSV), or the decoded candle columns of a Parquet file (48 bytes a
    row). Loading stops at the first block past either limit, so memory stays about 48 bytes
    per row kept plus one block, and a file of nothing but junk costs one block.
    """

    max_rows: int = 50_000_000
    max_decompressed_bytes: int = 4 * 1024**3

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_decompressed_bytes < 1:
            raise ValueError("load limits must be positive")


class FileTooLargeError(CandleDataError):
    """The file becomes more than a `LoadLimits` allows; `limit` is "rows" or "bytes"."""

    def __init__(self, limit: str, problem: str, *, where: str) -> None:
        self.limit = limit
        super().__init__(problem, where=where)


def load_candles(
    path: str | Path,
    *,
    timeframe_seconds: int | None = None,
    limits: LoadLimits | None = None,
    source: str | None = None,
) -> Candles:
    """Load CSV (plain or .gz) or Parquet with columns timestamp, open, high, low, close, volume.

    `timestamp` is the candle's open time in integer milliseconds (UTC), from 1970 on.
    The file is read block by block within `limits` (defaults: `LoadLimits()`). `source`
    names the file in error messages (default: the path), which quote no field values: a
    column name and a line (CSV) or row (Parquet, from 0) say where the problem is.
    """
    p = Path(path)
    name = source if source is not None else str(p)
    bounds = limits if limits is not None else LoadLimits()
    if not p.is_file():
        raise CandleDataError("no such file", where=name)
    lowered = p.name.lower()
    if lowered.endswith((".parquet", ".pq")):
        return _load_parquet(p, timeframe_seconds, name, bounds)
    if lowered.endswith((".csv", ".csv.gz")):
        return _load_csv(p, timeframe_seconds, name, bounds)
    raise CandleDataError("unsupported file type: use .csv, .csv.gz or .parquet", where=name)


class _TooManyBytesError(Exception):
    """Raised inside a read: the stream went past its byte limit."""


class _BoundedReader(io.RawIOBase):
    """A binary stream that refuses to give more than `limit` bytes in all."""

    def __init__(self, inner: io.BufferedIOBase, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        # One byte more than allowed tells "exactly at the limit" from "past it".
        got = self._inner.readinto(view[: min(len(view), self._left + 1)])
        self._left -= got
        if self._left < 0:
            raise _TooManyBytesError
        return int(got)

    def close(self) -> None:
        self._inner.close()
        super().close()


def _open_bounded(p: Path, limits: LoadLimits) -> io.BufferedReader:
    # Closed with the reader returned, which the caller holds in a `with`.
    inner: io.BufferedIOBase = (
        gzip.GzipFile(p, "rb") if p.name.lower().endswith(".gz") else p.open("rb")
    )
    return io.BufferedReader(_BoundedReader(inner, limits.max_decompressed_bytes), _BLOCK_BYTES)


def _too_many_bytes(source: str, limits: LoadLimits) -> FileTooLargeError:
    return FileTooLargeError(
        "bytes",
        f"the file holds more than {limits.max_decompressed_bytes} bytes of text once "
        "decompressed, more than one import may read; split it",
        where=source,
    )


class _Rows:
    """Candle columns gathered block by block, each block validated as it comes (and against
    the block before), so a bad file is refused at its first bad block."""

    def __init__(
        self, source: str, first_line: int | None, limits: LoadLimits, *, count_bytes: bool
    ) -> None:
        """`count_bytes`: the decoded columns count against `max_decompressed_bytes` (Parquet,
        where they are what the file decompresses to; a CSV's text is counted as read)."""
        self._count_bytes = count_bytes
        self._parts: list[list[npt.NDArray[Any]]] = [[] for _ in COLUMNS]
        self._source = source
        self._first_line = first_line
        self._limits = limits
        self._last: int | None = None
        self.count = 0

    def add(self, columns: list[npt.NDArray[Any]]) -> None:
        n = len(columns[0])
        if self.count + n > self._limits.max_rows:
            raise FileTooLargeError(
                "rows",
                f"the file holds more than {self._limits.max_rows} candles, more than one "
                "import may hold; split it",
                where=self._source,
            )
        t = np.ascontiguousarray(columns[0], dtype=np.int64)
        prices = [np.ascontiguousarray(c, dtype=np.float64) for c in columns[1:]]
        if (
            self._count_bytes
            and (self.count + n) * _ROW_BYTES > self._limits.max_decompressed_bytes
        ):
            raise FileTooLargeError(
                "bytes",
                f"the file's candles take more than {self._limits.max_decompressed_bytes} "
                "bytes once decoded, more than one import may read; split it",
                where=self._source,
            )
        o, h, lo, c, v = prices
        bad = _first_bad(t, o, h, lo, c, v, self._last)
        if bad is not None:
            row, problem = bad
            raise CandleDataError(
                problem, where=_where(self.count + row, self._source, self._first_line)
            )
        if n:
            # Copies: the parser's block buffers are freed and reused for the next block.
            for parts, column in zip(self._parts, (t, *prices), strict=True):
                parts.append(column.copy())
            self._last = int(t[-1])
            self.count += n

    def candles(self, timeframe_seconds: int | None) -> Candles:
        if self.count == 0:
            raise CandleDataError("no candles", where=self._source)
        columns: list[npt.NDArray[Any]] = []
        for parts in self._parts:
            columns.append(np.concatenate(parts))
            parts.clear()  # one column's blocks and its whole copy at a time, not all six
        times = columns[0]
        if timeframe_seconds is not None and timeframe_seconds <= 0:
            raise CandleDataError(
                f"timeframe must be positive, got {timeframe_seconds} s", where=self._source
            )
        tf = (
            timeframe_seconds
            if timeframe_seconds is not None
            else detect_timeframe(times, source=self._source)
        )
        _check_grid(times, tf, source=self._source, first_line=self._first_line)
        for arr in columns:
            arr.flags.writeable = False
        t, o, h, lo, c, v = columns
        return Candles(t, o, h, lo, c, v, timeframe_seconds=tf)


def _load_csv(p: Path, timeframe_seconds: int | None, source: str, limits: LoadLimits) -> Candles:
    import pyarrow as pa

    rows = _Rows(source, 2, limits, count_bytes=False)
    try:
        with _open_bounded(p, limits) as stream:
            for block in _csv_blocks(stream):
                table = _parse_block(block)
                if any(table.column(c).null_count for c in COLUMNS):
                    raise _locate_csv_problem(p, source, limits)
                rows.add([_column_to_numpy(table.column(c).combine_chunks()) for c in COLUMNS])
    except _TooManyBytesError:
        raise _too_many_bytes(source, limits) from None
    except (
        pa.ArrowInvalid,
        pa.ArrowKeyError,
        KeyError,
        OSError,
        EOFError,
        zlib.error,
        _NotCandleLinesError,
    ) as exc:
        raise _locate_csv_problem(p, source, limits) from exc
    return rows.candles(timeframe_seconds)


def _csv_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The text as blocks of whole lines of about `_BLOCK_BYTES`, each starting with the
    header line. Parsed one by one in this thread: arrow's streaming reader would read the
    Python stream from a thread of its own, which can outlive the stream and abort the
    process at exit."""
    header = stream.readline(_BLOCK_BYTES + 1)
    if not header or len(header) > _BLOCK_BYTES or not header.endswith(b"\n"):
        raise _NotCandleLinesError
    rest = b""
    while True:
        chunk = stream.read(_BLOCK_BYTES)
        if not chunk:
            if rest.strip():
                yield header + rest
            return
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > _BLOCK_BYTES:
            raise _NotCandleLinesError
        rest = data[cut:]
        if cut:
            yield header + data[:cut]


class _NotCandleLinesError(Exception):
    """The fast path cannot cut the text into lines (no header, a line longer than a block);
    the slow path says why."""


def _parse_block(block: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {"timestamp": pa.int64(), **{c: pa.float64() for c in COLUMNS[1:]}}
    return pacsv.read_csv(
        pa.BufferReader(block),
        read_options=pacsv.ReadOptions(block_size=len(block) + 1, use_threads=False),
        convert_options=pacsv.ConvertOptions(
            column_types=types, include_columns=list(COLUMNS), strings_can_be_null=False
        ),
    )


def _column_to_numpy(column: Any) -> npt.NDArray[Any]:
    """A null-free primitive Arrow array as a numpy view of its buffer.

    pyarrow's own `to_numpy` imports pandas on first use, which costs a second of start-up.
    """
    dtype = np.dtype(column.type.to_pandas_dtype())
    return np.frombuffer(column.buffers()[1], dtype=dtype)[
        column.offset : column.offset + len(column)
    ]


def _lines(stream: IO[bytes]) -> Iterator[str]:
    """The stream's lines, each at most one parser block long."""
    while True:
        raw = stream.readline(_BLOCK_BYTES + 1)
        if not raw:
            return
        if len(raw) > _BLOCK_BYTES:
            raise _LineTooLongError
        yield raw.decode("utf-8")


class _LineTooLongError(Exception):
    pass


def _locate_csv_problem(p: Path, source: str, limits: LoadLimits) -> CandleDataError:
    """Slow path, only after the fast parser failed: find the first bad line and say why.

    Messages name the column and the line, never the text found there.
    """
    line = 0  # the last line read whole
    try:
        with _open_bounded(p, limits) as stream:
            reader = csv.reader(_lines(stream))
            header = next(reader, None)
            line = 1
            if header is None:
                return CandleDataError(
                    "empty file: expected a header " + ",".join(COLUMNS), where=source
                )
            names = [h.strip().lower() for h in header]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                return CandleDataError(
                    f"header lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}",
                    where=f"{source}, line 1",
                )
            pos = [names.index(c) for c in COLUMNS]
            for line, row in enumerate(reader, start=2):
                if len(row) != len(names):
                    return CandleDataError(
                        f"expected {len(names)} fields, found {len(row)}",
                        where=f"{source}, line {line}",
                    )
                for col, i in zip(COLUMNS, pos, strict=True):
                    problem = _field_problem(col, row[i].strip())
                    if problem is not None:
                        return CandleDataError(problem, where=f"{source}, line {line}")
    except _TooManyBytesError:
        return _too_many_bytes(source, limits)
    except _LineTooLongError:
        return CandleDataError(
            f"a line is longer than {_BLOCK_BYTES} bytes: not a file of candle rows",
            where=f"{source}, line {line + 1}",
        )
    except (OSError, EOFError, zlib.error):
        return CandleDataError("cannot read the file: it is damaged or not gzip", where=source)
    except UnicodeDecodeError:
        return CandleDataError("cannot read the file: it is not UTF-8 text", where=source)
    except csv.Error:
        return CandleDataError("cannot parse the line as CSV", where=f"{source}, line {line + 1}")
    return CandleDataError("cannot parse the file as CSV", where=source)


def _field_problem(column: str, text: str) -> str | None:
    if column == "timestamp":
        if not _INT.fullmatch(text):
            return "timestamp is not an integer (ms)"
        # Checked by length first: int() of a long digit string hits Python's own limit.
        if len(text.lstrip("+-")) > 19 or not -(2**63) <= int(text) < 2**63:
            return "timestamp is out of range (milliseconds must fit in 64 bits)"
        return None
    if not _FLOAT.fullmatch(text):
        return f"{column} is not a number"
    if math.isnan(float(text)):
        return f"{column} is NaN"
    return None


def _load_parquet(
    p: Path, timeframe_seconds: int | None, source: str, limits: LoadLimits
) -> Candles:
    import pyarrow as pa
    import pyarrow.parquet as pq

    unreadable = CandleDataError("cannot read the file as Parquet", where=source)
    try:
        parquet = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable from exc
    with parquet:
        schema = parquet.schema_arrow
        missing = [c for c in COLUMNS if c not in schema.names]
        if missing:
            raise CandleDataError(f"lacks column(s) {', '.join(missing)}", where=source)
        ts_type = schema.field("timestamp").type
        if not (pa.types.is_integer(ts_type) or pa.types.is_timestamp(ts_type)):
            raise CandleDataError(
                f"timestamp column has type {ts_type}; expected integer milliseconds or a "
                "timestamp",
                where=source,
            )
        for c in COLUMNS[1:]:
            col_type = schema.field(c).type
            if not (pa.types.is_floating(col_type) or pa.types.is_integer(col_type)):
                raise CandleDataError(
                    f"{c} column has type {col_type}; expected numbers", where=source
                )
        rows = _Rows(source, None, limits, count_bytes=True)
        # The footer's count refuses a row bomb before a single page is decoded; `_Rows`
        # counts again as it reads, in case the footer understates.
        declared = parquet.metadata.num_rows
        if declared > limits.max_rows:
            raise FileTooLargeError(
                "rows",
                f"the file holds {declared} candles, more than the {limits.max_rows} one "
                "import may hold; split it",
                where=source,
            )
        try:
            for batch in parquet.iter_batches(
                batch_size=_PARQUET_BATCH_ROWS, columns=list(COLUMNS)
            ):
                rows.add(_parquet_columns(batch, rows.count, source))
        except (pa.ArrowException, OSError) as exc:
            raise unreadable from exc
    return rows.candles(timeframe_seconds)


def _parquet_columns(batch: Any, first_row: int, source: str) -> list[npt.NDArray[Any]]:
    import pyarrow as pa

    columns: list[npt.NDArray[Any]] = []
    for c in COLUMNS:
        col = batch.column(c)
        if col.null_count:
            row = first_row + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise CandleDataError(f"{c} is missing", where=f"{source}, row {row}")
        if c == "timestamp" and pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("ms", tz=col.type.tz)).cast(pa.int64())
        columns.append(col.to_numpy(zero_copy_only=False))
    return columns
