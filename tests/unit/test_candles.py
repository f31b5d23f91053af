"""Black-box tests of candle loading, validation, the gap report and trading windows.

Loaders are checked against an independent oracle: the same rows parsed with Python's `csv`
module and `int`/`float` (correctly rounded), so "identical" means bit-for-bit equal to what
the text says, whatever the file format.
"""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradepulse.quant import (
    CandleDataError,
    Candles,
    WindowError,
    last_window,
    load_candles,
    parse_timeframe,
    range_window,
)

HEADER = "timestamp,open,high,low,close,volume"
T0 = 1640995200000  # 2022-01-01T00:00Z, the first candle of the shared file
STEP_5M = 300_000

# Five valid 5m candles; tests replace one of them with a bad line.
GOOD_ROWS = (
    f"{T0},100,110,90,105,1",
    f"{T0 + STEP_5M},105,112,100,110,2",
    f"{T0 + 2 * STEP_5M},110,115,105,108,3",
    f"{T0 + 3 * STEP_5M},108,109,100,101,0",
    f"{T0 + 4 * STEP_5M},101,104,99,103,4.5",
)
COLUMN_NAMES = ("open_time", "open", "high", "low", "close", "volume")


def _write_csv(path: Path, rows: tuple[str, ...] | list[str], header: str = HEADER) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _with_line(line_no: int, text: str) -> list[str]:
    """GOOD_ROWS with file line `line_no` (the header is line 1) replaced by `text`."""
    rows = list(GOOD_ROWS)
    rows[line_no - 2] = text
    return rows


def _columns(c: Candles) -> list[npt.NDArray[np.generic]]:
    return [getattr(c, name) for name in COLUMN_NAMES]


def _oracle(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """The columns of a plain CSV parsed by the standard library, independently of the loader."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    out: dict[str, npt.NDArray[np.generic]] = {
        "timestamp": np.array([int(r["timestamp"]) for r in rows], dtype=np.int64)
    }
    for name in ("open", "high", "low", "close", "volume"):
        out[name] = np.array([float(r[name]) for r in rows], dtype=np.float64)
    return out


def _series(
    steps: list[int], step_ms: int = STEP_5M, timeframe_seconds: int | None = None
) -> Candles:
    """Valid candles at open times T0 + k*step_ms for each k in `steps`."""
    n = len(steps)
    close = 100.0 + np.arange(n, dtype=np.float64)
    return Candles.from_arrays(
        T0 + np.asarray(steps, dtype=np.int64) * step_ms,
        close,
        close + 1.0,
        close - 1.0,
        close,
        np.ones(n),
        timeframe_seconds=timeframe_seconds,
    )


# --- loaders: CSV, CSV.gz and Parquet give the same bits --------------------------------------


@pytest.fixture(scope="module")
def excerpt_formats(
    candles_excerpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The excerpt as .csv, .csv.gz and .parquet (Parquet built from the oracle's values)."""
    folder = tmp_path_factory.mktemp("formats")
    gz = folder / "head.csv.gz"
    gz.write_bytes(gzip.compress(candles_excerpt.read_bytes()))
    oracle = _oracle(candles_excerpt)
    parquet = folder / "head.parquet"
    pq.write_table(pa.table(oracle), parquet)
    return {"csv": candles_excerpt, "csv.gz": gz, "parquet": parquet}


def test_csv_matches_an_independent_parse(candles_excerpt: Path) -> None:
    loaded = load_candles(candles_excerpt)
    oracle = _oracle(candles_excerpt)
    assert len(loaded) == 6000
    for name, key in zip(COLUMN_NAMES, oracle, strict=True):
        assert np.array_equal(getattr(loaded, name), oracle[key]), name


@pytest.mark.parametrize("fmt", ["csv.gz", "parquet"])
def test_formats_load_bit_for_bit_identical(excerpt_formats: dict[str, Path], fmt: str) -> None:
    reference = load_candles(excerpt_formats["csv"])
    other = load_candles(excerpt_formats[fmt])
    assert other.timeframe_seconds == reference.timeframe_seconds == 300
    assert other.first_row == reference.first_row == 0
    for name, a, b in zip(COLUMN_NAMES, _columns(reference), _columns(other), strict=True):
        assert a.dtype == b.dtype, name
        assert np.array_equal(a, b), name
        assert a.tobytes() == b.tobytes(), name  # also -0.0 vs 0.0 and NaN payloads
    assert other.content_hash() == reference.content_hash()


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_loaded_arrays_are_typed_contiguous_and_read_only(
    excerpt_formats: dict[str, Path], fmt: str
) -> None:
    c = load_candles(excerpt_formats[fmt])
    assert c.open_time.dtype == np.dtype(np.int64)
    for name, arr in zip(COLUMN_NAMES, _columns(c), strict=True):
        if name != "open_time":
            assert arr.dtype == np.dtype(np.float64), name
        assert arr.ndim == 1, name
        assert arr.flags.c_contiguous, name
        assert not arr.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = arr[0]


def test_parquet_with_a_timestamp_column_loads_the_same(tmp_path: Path) -> None:
    csv_path = _write_csv(tmp_path / "c.csv", list(GOOD_ROWS))
    oracle = _oracle(csv_path)
    table = pa.table(
        {
            **oracle,
            "timestamp": pa.array(oracle["timestamp"], pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
        }
    )
    pq.write_table(table, tmp_path / "c.parquet")
    a, b = load_candles(csv_path), load_candles(tmp_path / "c.parquet")
    for name, x, y in zip(COLUMN_NAMES, _columns(a), _columns(b), strict=True):
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y), name


# --- timeframe ---------------------------------------------------------------------------------


def test_timeframe_detected_for_5m(candles_excerpt: Path) -> None:
    assert load_candles(candles_excerpt).timeframe_seconds == 300


def test_timeframe_detected_for_1h(tmp_path: Path) -> None:
    rows = [f"{T0 + k * 3_600_000},100,101,99,100,1" for k in range(6)]
    assert load_candles(_write_csv(tmp_path / "h.csv", rows)).timeframe_seconds == 3600


def test_timeframe_detection_uses_the_common_spacing_despite_gaps() -> None:
    assert _series([0, 1, 2, 5, 6, 7, 20]).timeframe_seconds == 300


def test_explicit_timeframe_that_fits_the_grid_is_kept(candles_excerpt: Path) -> None:
    assert load_candles(candles_excerpt, timeframe_seconds=300).timeframe_seconds == 300


def test_explicit_timeframe_off_the_grid_is_refused(candles_excerpt: Path) -> None:
    with pytest.raises(CandleDataError) as err:
        load_candles(candles_excerpt, timeframe_seconds=parse_timeframe("1h"))
    message = str(err.value)
    assert "line 3" in message  # the first row whose spacing is not a whole hour
    assert "1h grid" in message
    assert candles_excerpt.name in message


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("1h", 3600), ("1d", 86400)])
def test_parse_timeframe(text: str, seconds: int) -> None:
    assert parse_timeframe(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m", "0m", "-5m", ""])
def test_parse_timeframe_refuses_nonsense(text: str) -> None:
    with pytest.raises(CandleDataError, match="unknown timeframe"):
        parse_timeframe(text)


# --- gap report --------------------------------------------------------------------------------


def test_gap_report_on_a_hand_made_series() -> None:
    # rows at steps 0 1 2 | 5 6 | 12 13 | 16: gaps of 2 (after row 2), 5 (after row 4), 2 (after 6)
    report = _series([0, 1, 2, 5, 6, 12, 13, 16]).gap_report()
    assert report.timeframe_seconds == 300
    assert report.rows == 8
    assert report.expected_rows == 17
    assert report.count == 3
    assert report.missing_candles == 9
    assert [(g.after_row, g.missing) for g in report.gaps] == [(2, 2), (4, 5), (6, 2)]
    largest = report.largest
    assert largest is not None
    assert largest.after_row == 4
    assert largest.missing == 5
    assert largest.from_time == T0 + 6 * STEP_5M
    assert largest.to_time == T0 + 12 * STEP_5M


def test_gap_report_largest_tie_goes_to_the_earliest_gap() -> None:
    largest = _series([0, 3, 4, 7], timeframe_seconds=300).gap_report().largest
    assert largest is not None
    assert (largest.after_row, largest.missing) == (0, 2)


def test_gap_report_without_gaps() -> None:
    report = _series(list(range(10))).gap_report()
    assert report.count == 0
    assert report.missing_candles == 0
    assert report.largest is None
    assert report.rows == report.expected_rows == 10


# --- bad files: one CandleDataError naming the line and the problem ---------------------------

BAD_LINES = [
    pytest.param(f"{T0 + 2 * STEP_5M},110,abc,105,108,3", r"high is not a number", id="non-numeric price"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,115,105,108", r"expected 6 fields, found 5", id="missing field"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,115,,108,3", r"low is not a number", id="empty field"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,NaN,105,108,3", r"high is NaN", id="NaN"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,115,105,nan,3", r"close is NaN", id="nan lower case"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,inf,105,108,3", r"high is not a finite number", id="inf"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,115,105,116,3", r"high is below open or close", id="high < close"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,115,111,112,3", r"low is above open or close", id="low > open"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,115,0,108,3", r"low must be > 0", id="zero price"),
    pytest.param(f"{T0 + 2 * STEP_5M},-110,115,105,108,3", r"open must be > 0", id="negative price"),
    pytest.param(f"{T0 + 2 * STEP_5M},110,115,105,108,-3", r"volume must be >= 0", id="negative volume"),
    pytest.param(f"{T0 + STEP_5M},110,115,105,108,3", r"duplicate timestamp", id="duplicate timestamp"),
    pytest.param(f"{T0},110,115,105,108,3", r"earlier than the previous row", id="unsorted timestamp"),
    pytest.param(f"{T0 + 2 * STEP_5M}.5,110,115,105,108,3", r"timestamp is not an integer", id="fractional timestamp"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
def test_bad_csv_line_is_named(tmp_path: Path, line: str, problem: str) -> None:
    path = _write_csv(tmp_path / "bad.csv", _with_line(4, line))
    with pytest.raises(CandleDataError) as err:
        load_candles(path)
    message = str(err.value)
    assert f"{path}, line 4: " in message
    assert re.search(problem, message), message


@pytest.mark.parametrize(("line", "problem"), BAD_LINES[:1] + BAD_LINES[6:7])
def test_bad_csv_line_is_named_inside_gzip(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(
        gzip.compress((HEADER + "\n" + "\n".join(_with_line(4, line)) + "\n").encode())
    )
    with pytest.raises(CandleDataError) as err:
        load_candles(path)
    assert f"{path}, line 4: " in str(err.value)
    assert re.search(problem, str(err.value))


@pytest.mark.parametrize("line_no", [2, 3, 6])
@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{t},1,x,1,1,1", id="parse"),
        pytest.param("{t},100,99,98,100,1", id="validate"),
    ],
)
def test_line_number_follows_the_bad_line(tmp_path: Path, line_no: int, template: str) -> None:
    line = template.format(t=T0 + (line_no - 2) * STEP_5M)
    path = _write_csv(tmp_path / "bad.csv", _with_line(line_no, line))
    with pytest.raises(CandleDataError, match=rf", line {line_no}: "):
        load_candles(path)


def test_missing_header_column(tmp_path: Path) -> None:
    rows = [r.rsplit(",", 1)[0] for r in GOOD_ROWS]
    path = _write_csv(tmp_path / "h.csv", rows, header="timestamp,open,high,low,close")
    with pytest.raises(CandleDataError) as err:
        load_candles(path)
    assert f"{path}, line 1: " in str(err.value)
    assert "header lacks column(s) volume" in str(err.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(CandleDataError, match=r"empty file") as err:
        load_candles(path)
    assert str(path) in str(err.value)


def test_header_without_rows(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "h.csv", [])
    with pytest.raises(CandleDataError, match=r"no candles"):
        load_candles(path)


def test_unknown_extension(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "candles.txt", list(GOOD_ROWS))
    with pytest.raises(CandleDataError, match=r"unsupported file type") as err:
        load_candles(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(CandleDataError, match=r"no such file") as err:
        load_candles(path)
    assert str(path) in str(err.value)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(CandleDataError, match=r"cannot read the file"):
        load_candles(path)


def test_parquet_missing_column(tmp_path: Path) -> None:
    oracle = _oracle(_write_csv(tmp_path / "c.csv", list(GOOD_ROWS)))
    del oracle["volume"]
    pq.write_table(pa.table(oracle), tmp_path / "c.parquet")
    with pytest.raises(CandleDataError, match=r"lacks column\(s\) volume"):
        load_candles(tmp_path / "c.parquet")


def test_parquet_null_price_names_the_row(tmp_path: Path) -> None:
    oracle = _oracle(_write_csv(tmp_path / "c.csv", list(GOOD_ROWS)))
    table = pa.table({**oracle, "high": pa.array([110.0, None, 115.0, 109.0, 104.0])})
    pq.write_table(table, tmp_path / "c.parquet")
    with pytest.raises(CandleDataError, match=r"row 1: high is missing"):
        load_candles(tmp_path / "c.parquet")


def test_underscore_number_is_named_with_its_line(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "bad.csv", _with_line(4, f"{T0 + 2 * STEP_5M},110,1_15,105,108,3"))
    with pytest.raises(CandleDataError, match=r", line 4: "):
        load_candles(path)


def test_parquet_null_timestamp_names_the_row(tmp_path: Path) -> None:
    oracle = _oracle(_write_csv(tmp_path / "c.csv", list(GOOD_ROWS)))
    times = oracle["timestamp"].tolist()
    times[2] = None
    pq.write_table(
        pa.table({**oracle, "timestamp": pa.array(times, pa.int64())}), tmp_path / "c.parquet"
    )
    with pytest.raises(CandleDataError, match=r"row 2: timestamp is missing"):
        load_candles(tmp_path / "c.parquet")


# --- the real shared file ----------------------------------------------------------------------


@pytest.mark.slow
def test_shared_file(shared_candles_path: Path) -> None:
    c = load_candles(shared_candles_path)
    assert len(c) == 315_632
    assert c.timeframe_seconds == 300
    assert int(c.open_time[0]) == 1640995200000
    assert int(c.open_time[-1]) == 1735689300000
    assert int(np.count_nonzero(c.volume == 0)) == 14
    report = c.gap_report()
    assert report.rows == 315_632
    assert report.expected_rows == 315_648
    assert report.count == 1
    assert report.missing_candles == 16
    gap = report.largest
    assert gap is not None
    assert gap.missing == 16
    assert gap.from_time == 1679661300000  # 2023-03-24T12:35Z
    assert gap.to_time == 1679666400000  # 2023-03-24T14:00Z
    assert int(c.open_time[gap.after_row]) == 1679661300000


# --- windows -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history() -> Candles:
    return _series(list(range(100)))


def test_last_window_with_full_warmup(history: Candles) -> None:
    w = last_window(history, 10, 20)
    assert len(w.candles) == 30
    assert w.trade_from == 20
    assert w.traded_bars == 10
    assert w.candles.first_row == 70
    assert w.candles.open_time[w.trade_from] == history.open_time[90]
    assert w.candles.open_time[-1] == history.open_time[-1]


def test_last_window_warmup_clamped_at_history_start(history: Candles) -> None:
    w = last_window(history, 90, 20)
    assert w.candles.first_row == 0
    assert w.trade_from == 10
    assert len(w.candles) == 100
    assert w.traded_bars == 90


def test_last_window_whole_history(history: Candles) -> None:
    w = last_window(history, 100, 2316)
    assert (w.trade_from, w.candles.first_row, len(w.candles)) == (0, 0, 100)


def test_last_window_without_warmup(history: Candles) -> None:
    w = last_window(history, 5, 0)
    assert (w.trade_from, w.candles.first_row, len(w.candles)) == (0, 95, 5)


def test_last_window_of_a_slice_keeps_whole_history_rows(history: Candles) -> None:
    w = last_window(history.slice(10, 60), 5, 3)
    assert w.candles.first_row == 52
    assert w.trade_from == 3
    assert w.candles.open_time[w.trade_from] == history.open_time[55]


@pytest.mark.parametrize(
    ("last", "warmup", "problem"),
    [
        (101, 0, r"only 100"),
        (0, 10, r"at least 1 candle"),
        (10, -1, r"warm-up must be >= 0"),
    ],
)
def test_last_window_errors(history: Candles, last: int, warmup: int, problem: str) -> None:
    with pytest.raises(WindowError, match=problem):
        last_window(history, last, warmup)


def test_range_window(history: Candles) -> None:
    t = history.open_time
    w = range_window(history, int(t[40]), int(t[50]), 15)
    assert w.candles.first_row == 25
    assert w.trade_from == 15
    assert w.traded_bars == 10
    assert w.candles.open_time[w.trade_from] == t[40]
    assert w.candles.open_time[-1] == t[49]  # end is exclusive


def test_range_window_between_grid_points_and_open_end(history: Candles) -> None:
    t = history.open_time
    w = range_window(history, int(t[40]) + 1, None, 5)
    assert w.candles.first_row == 36
    assert w.trade_from == 5
    assert w.traded_bars == 59


def test_range_window_warmup_clamped(history: Candles) -> None:
    t = history.open_time
    w = range_window(history, int(t[5]), int(t[10]), 20)
    assert (w.candles.first_row, w.trade_from, w.traded_bars) == (0, 5, 5)


@pytest.mark.parametrize(("start", "end"), [(50, 50), (60, 40), (200, None)])
def test_range_window_empty(history: Candles, start: int, end: int | None) -> None:
    t0 = int(history.open_time[0])
    with pytest.raises(WindowError, match=r"no candles"):
        range_window(history, t0 + start * STEP_5M, None if end is None else t0 + end * STEP_5M, 10)


def test_a_bad_field_is_named_by_column_and_line_never_quoted(tmp_path: Path) -> None:
    # Ingest reads server files for clients: an error must not become a way to read them.
    secret = "root:$6$saltsalt$hashhashhash"
    path = _write_csv(tmp_path / "bad.csv", _with_line(3, f"{T0 + STEP_5M},105,{secret},100,1,2"))
    with pytest.raises(CandleDataError) as err:
        load_candles(path)
    assert str(err.value) == f"{path}, line 3: high is not a number"


def test_a_header_line_is_never_quoted(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "h.csv", list(GOOD_ROWS), header="user,password,uid,gid")
    with pytest.raises(CandleDataError) as err:
        load_candles(path)
    assert "password" not in str(err.value)
    assert "uid" not in str(err.value)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_candles_before_1970_are_refused_with_their_line(tmp_path: Path, fmt: str) -> None:
    rows = [f"{t},1,1,1,1,1" for t in (-2 * STEP_5M, -STEP_5M, 0, STEP_5M)]
    path = _write_csv(tmp_path / "old.csv", rows)
    if fmt == "parquet":
        pq.write_table(pa.table(_oracle(path)), tmp_path / "old.parquet")
        path = tmp_path / "old.parquet"
    with pytest.raises(CandleDataError, match=r"before 1970") as err:
        load_candles(path)
    assert err.value.where == (f"{path}, line 2" if fmt == "csv" else f"{path}, row 0")


def test_arrays_before_1970_are_refused() -> None:
    ones = [1.0, 1.0, 1.0]
    with pytest.raises(CandleDataError, match=r"row 0: timestamp is before 1970"):
        Candles.from_arrays(
            [-60_000, 0, 60_000], ones, ones, ones, ones, ones, timeframe_seconds=60
        )
