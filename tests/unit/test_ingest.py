"""The ingest service's pure parts: range planning, snapshot names, the COPY codec, file paths,
the reasons a request given up on is refused with."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import nats.errors
import numpy as np
import pytest

from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.errors import InvalidRequestError
from tradepulse.ingest.datasets import snapshot_name
from tradepulse.ingest.errors import ExchangeUnavailableError, give_up_reason
from tradepulse.ingest.exchange import plan_range
from tradepulse.ingest.files import resolve
from tradepulse.ingest.repository import COLUMNS, decode_copy, encode_copy
from tradepulse.ingest.settings import IngestSettings
from tradepulse.quant import Candles

TF = 300_000
NOW = 1_700_000_100_000  # on the 5m grid


def _plan(
    *, since_ms: int | None = None, until_ms: int | None = None, last_stored_ms: int | None = None
) -> tuple[int, int]:
    return plan_range(
        timeframe_ms=TF,
        since_ms=since_ms,
        until_ms=until_ms,
        last_stored_ms=last_stored_ms,
        now_ms=NOW,
        default_lookback=10,
    )


def test_a_new_dataset_without_since_gets_the_last_closed_candles() -> None:
    since, until = _plan()
    # The candle opening at NOW is still forming; the last closed one opened at NOW - TF.
    assert until == NOW - TF + 1
    assert since == NOW - 10 * TF


def test_a_pull_resumes_after_the_last_stored_candle_unless_since_is_later() -> None:
    last = NOW - 100 * TF
    assert _plan(last_stored_ms=last)[0] == last + TF
    assert _plan(last_stored_ms=last, since_ms=last - 50 * TF)[0] == last + TF
    assert _plan(last_stored_ms=last, since_ms=last)[0] == last + TF
    assert _plan(last_stored_ms=last, since_ms=last + 7 * TF)[0] == last + 7 * TF


def test_until_never_reaches_a_candle_that_has_not_closed() -> None:
    assert _plan(since_ms=0, until_ms=NOW + 10 * TF) == (0, NOW - TF + 1)
    assert _plan(since_ms=0, until_ms=NOW - 5 * TF) == (0, NOW - 5 * TF)


def test_snapshot_names_are_nats_safe_and_content_addressed() -> None:
    key = DatasetKey(exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1h")
    name = snapshot_name(key, "ab" * 32)
    assert name == "binanceusdm.BTC-USDT-USDT.1h.abababababababab"


def test_the_binary_copy_codec_round_trips_exactly() -> None:
    rng = np.random.default_rng(3)
    n = 257
    close = rng.uniform(100, 200, n)
    candles = Candles.from_arrays(
        1_600_000_000_000 + TF * np.arange(n),
        close,
        close * 1.01,
        close * 0.99,
        close,
        rng.uniform(0, 5, n),
        timeframe_seconds=300,
    )
    columns = decode_copy(encode_copy(candles))
    for name, column in zip(COLUMNS, columns, strict=True):
        np.testing.assert_array_equal(column, getattr(candles, name))
    with pytest.raises(ValueError, match="COPY"):
        decode_copy(encode_copy(candles)[:-3])


def test_file_paths_stay_inside_the_roots(tmp_path: Path) -> None:
    first, second = tmp_path / "imports", tmp_path / "shared"
    (first / "sub").mkdir(parents=True)
    second.mkdir()
    (first / "sub" / "btc.csv").write_text("x")
    (second / "eth.csv").write_text("x")
    roots = (first, second)
    assert resolve("sub/btc.csv", roots) == first.resolve() / "sub" / "btc.csv"
    assert resolve(str(second / "eth.csv"), roots) == second.resolve() / "eth.csv"
    assert resolve("eth.csv", roots) == second.resolve() / "eth.csv"
    for outside in ("../elsewhere.csv", "/etc/passwd", "nothing.csv", "sub"):
        with pytest.raises(InvalidRequestError) as err:
            resolve(outside, roots)
        assert str(err.value) == f"no candle file {outside!r} in the folders imports may read"


def test_without_a_root_no_server_path_is_read() -> None:
    with pytest.raises(InvalidRequestError, match="imports by server path are off"):
        resolve("/etc/passwd", ())


def test_a_link_is_followed_before_the_root_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "imports"
    root.mkdir()
    (tmp_path / "outside.csv").write_text("x")
    (root / "in.csv").symlink_to(tmp_path / "outside.csv")
    (root / "loop.csv").symlink_to(root / "loop.csv")
    for name in ("in.csv", "loop.csv"):
        with pytest.raises(InvalidRequestError, match="no candle file"):
            resolve(name, (root,))


@pytest.mark.parametrize("path", ["a\x00b.csv", "n" * 256 + ".csv", "d/" * 2048 + "x.csv"])
def test_impossible_paths_are_invalid_at_once(tmp_path: Path, path: str) -> None:
    with pytest.raises(InvalidRequestError, match="not a possible file name"):
        resolve(path, (tmp_path,))


def test_file_roots_are_a_colon_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_FILE_ROOT", "/srv/imports:/srv/shared:")
    assert IngestSettings().file_roots() == (Path("/srv/imports"), Path("/srv/shared"))
    monkeypatch.delenv("INGEST_FILE_ROOT")
    assert IngestSettings().file_roots() == ()
    assert IngestSettings().load_limits().max_rows == 50_000_000


SECRET = "/tmp/tradepulse-upload-x1y2/upload.csv.gz: int too large, password=hunter2"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (ExchangeUnavailableError(SECRET), "the exchange kept failing with network errors"),
        (asyncpg.exceptions.UniqueViolationError(SECRET), "the candle database was unavailable"),
        (asyncpg.exceptions.InterfaceError(SECRET), "the candle database was unavailable"),
        (asyncpg.exceptions.CannotConnectNowError(SECRET), "the candle database was unavailable"),
        (nats.errors.TimeoutError(), "NATS (the message bus and its object store) was unavailable"),
        (ConnectionError(SECRET), "NATS (the message bus and its object store) was unavailable"),
        (MemoryError(SECRET), "the ingest service ran out of memory"),
        (
            OSError(28, "No space left on device", SECRET),
            "the ingest service could not read or write",
        ),
        (
            PermissionError(13, "Permission denied", SECRET),
            "the ingest service could not read or write",
        ),
        (ValueError(SECRET), "an internal error in the ingest service stopped the import"),
        (IndexError(SECRET), "an internal error in the ingest service stopped the import"),
    ],
)
def test_a_request_given_up_on_is_refused_with_a_fixed_text_for_its_kind(
    error: Exception, says: str
) -> None:
    reason = give_up_reason(error, 5)
    assert reason.startswith(f"gave up after 5 attempts: {says}"), reason
    # None of the exception's own text: no server path, no Python or database internals.
    for leak in ("/tmp", "tradepulse-upload", "hunter2", "int too large", type(error).__name__):
        assert leak not in reason, (leak, reason)
