"""Files that become far more than they look: gzip and Parquet bombs, a sparse file of NULs.

Each is loaded in a child process that reports its peak resident memory above what it held
after importing the loaders (resource.getrusage: pyarrow's allocations are invisible to
tracemalloc), so one test's memory cannot hide behind another's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradepulse.quant import CandleDataError
from tradepulse.quant.candles import FileTooLargeError, LoadLimits, load_candles

T0 = 1640995200000
STEP_5M = 300_000
MB = 1024 * 1024
# One parser block plus the interpreter's noise; the unbounded loader took hundreds of MB here.
PEAK_LIMIT_MB = 64

CHILD = """
import json, resource, sys
from tradepulse.quant.candles import LoadLimits, load_candles, FileTooLargeError
from tradepulse.quant import CandleDataError
import pyarrow.csv, pyarrow.parquet
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
path, rows, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    c = load_candles(path, timeframe_seconds=300, limits=LoadLimits(rows, size))
    out = {"rows": len(c)}
except FileTooLargeError as exc:
    out = {"error": str(exc), "limit": exc.limit}
except CandleDataError as exc:
    out = {"error": str(exc), "limit": None}
out["peak_mb"] = (rss() - base) / 2**20
print(json.dumps(out))
"""


def _load_in_child(path: Path, limits: LoadLimits) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(limits.max_rows),
         str(limits.max_decompressed_bytes)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _load_here(path: Path, limits: LoadLimits) -> dict[str, object]:
    """As `_load_in_child`, in this process, for the tests that measure no memory."""
    try:
        return {"rows": len(load_candles(path, timeframe_seconds=300, limits=limits))}
    except FileTooLargeError as exc:
        return {"error": str(exc), "limit": exc.limit}
    except CandleDataError as exc:
        return {"error": str(exc), "limit": None}


def _gzip_stream(path: Path, chunks: object, level: int = 9) -> int:
    """Write the chunks as one gzip member, compressing on the fly; returns the text's size."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    size = 0
    with path.open("wb") as fh:
        for chunk in chunks:  # type: ignore[attr-defined]
            size += len(chunk)
            fh.write(packer.compress(chunk))
        fh.write(packer.flush())
    return size


def _rows_text(first: int, count: int) -> bytes:
    times = T0 + (first + np.arange(count, dtype=np.int64)) * STEP_5M
    return "".join(f"{t},100,101,99,100,1\n" for t in times.tolist()).encode()


def test_a_gzip_of_one_row_repeated_is_refused_at_its_first_repeat(tmp_path: Path) -> None:
    path = tmp_path / "bomb.csv.gz"
    block = f"{T0},100,101,99,100,1\n".encode() * (MB // 25)
    text = _gzip_stream(path, [b"timestamp,open,high,low,close,volume\n"] + [block] * 400)
    assert text > 400 * MB
    assert path.stat().st_size < 2 * MB
    out = _load_in_child(path, LoadLimits())
    assert out["error"] == f"{path}, line 3: duplicate timestamp (same as the previous row)"
    assert float(out["peak_mb"]) < PEAK_LIMIT_MB, out  # type: ignore[arg-type]


def test_a_gzip_of_valid_rows_past_the_byte_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.csv.gz"
    batch = 100_000
    chunks = [b"timestamp,open,high,low,close,volume\n"] + [
        _rows_text(i * batch, batch) for i in range(20)
    ]
    # Level 1: the rows' size is the point, not the ratio (level 9 took seconds more).
    text = _gzip_stream(path, chunks, level=1)
    limit = text // 4
    out = _load_in_child(path, LoadLimits(max_rows=10**9, max_decompressed_bytes=limit))
    assert out["limit"] == "bytes"
    assert out["error"] == (
        f"{path}: the file holds more than {limit} bytes of text once decompressed, more than "
        "one import may read; split it"
    )
    assert float(out["peak_mb"]) < PEAK_LIMIT_MB, out  # type: ignore[arg-type]
    # The same file within the limits: every row, at about 48 bytes each.
    whole = _load_in_child(path, LoadLimits(max_rows=2_000_000, max_decompressed_bytes=text))
    assert whole["rows"] == 2_000_000
    assert float(whole["peak_mb"]) < 2_000_000 * 48 * 2.5 / MB, whole  # type: ignore[arg-type]


def test_csv_rows_past_the_row_limit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b"timestamp,open,high,low,close,volume\n" + _rows_text(0, 5000))
    out = _load_here(path, LoadLimits(max_rows=4999))
    assert out["limit"] == "rows"
    assert "more than 4999 candles" in str(out["error"])
    assert _load_here(path, LoadLimits(max_rows=5000))["rows"] == 5000


def _constant_parquet(path: Path, rows: int, group: int = 1_000_000) -> None:
    """`rows` copies of one candle, a row group at a time: a few hundred KB on disk."""
    one = pa.table(
        {name: pa.array(np.full(group, value)) for name, value in (
            ("timestamp", T0), ("open", 100.0), ("high", 101.0), ("low", 99.0),
            ("close", 100.0), ("volume", 1.0))}
    )  # fmt: skip
    with pq.ParquetWriter(path, one.schema) as writer:
        for _ in range(rows // group):
            writer.write_table(one, row_group_size=group)


@pytest.fixture(scope="module")
def constant_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8,000,000 copies of one candle (written once for the module's two Parquet bombs)."""
    path = tmp_path_factory.mktemp("parquet") / "bomb.parquet"
    _constant_parquet(path, 8_000_000)
    return path


def test_a_parquet_row_bomb_is_refused_from_its_footer(constant_parquet: Path) -> None:
    path = constant_parquet
    assert path.stat().st_size < 2 * MB
    out = _load_in_child(path, LoadLimits(max_rows=5_000_000))
    assert out["limit"] == "rows"
    assert out["error"] == (
        f"{path}: the file holds 8000000 candles, more than the 5000000 one import may hold; "
        "split it"
    )
    assert float(out["peak_mb"]) < PEAK_LIMIT_MB, out  # type: ignore[arg-type]


def test_a_parquet_of_one_candle_repeated_is_refused_at_its_second_row(
    constant_parquet: Path,
) -> None:
    path = constant_parquet
    out = _load_in_child(path, LoadLimits())
    assert out["error"] == f"{path}, row 1: duplicate timestamp (same as the previous row)"
    assert float(out["peak_mb"]) < PEAK_LIMIT_MB, out  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["nul.csv", "nul.parquet"])
def test_a_sparse_gigabyte_of_nul_bytes_costs_one_block(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with path.open("wb") as fh:
        fh.truncate(1024 * MB)  # sparse: no disk used
    out = _load_in_child(path, LoadLimits())
    assert out["limit"] is None
    expected = (
        f"{path}, line 1: a line is longer than 1048576 bytes: not a file of candle rows"
        if name.endswith(".csv")
        else f"{path}: cannot read the file as Parquet"
    )
    assert out["error"] == expected
    assert float(out["peak_mb"]) < PEAK_LIMIT_MB, out  # type: ignore[arg-type]


def test_a_plain_csv_larger_than_the_byte_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_bytes(b"timestamp,open,high,low,close,volume\n" + _rows_text(0, 50_000))
    out = _load_here(path, LoadLimits(max_decompressed_bytes=path.stat().st_size - 1))
    assert out["limit"] == "bytes"
    exact = _load_here(path, LoadLimits(max_decompressed_bytes=path.stat().st_size))
    assert exact["rows"] == 50_000


def test_limits_default_to_fifty_million_rows() -> None:
    assert LoadLimits().max_rows == 50_000_000
    with pytest.raises(ValueError, match="positive"):
        LoadLimits(max_rows=0)
