"""Fixtures shared by every test folder.

The shared BTC candles are read from `../shared/data` beside the checkout, never copied into
the repository; tests that need them skip with a reason when the folder is absent.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.services"]

# The longest tests, run first: `make test` hands each xdist worker half of the collection in
# order and idle workers steal from the end of the other's queue, so a long test collected
# late would run alone at the end, its length added to the suite's wall time.
LONGEST_FIRST = ("tests/fault/test_nats_cluster.py::",)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_CANDLES = SHARED_DATA / "binance_BTC-USDT_5m.csv.gz"
EXCERPT_ROWS = 6_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))


@pytest.fixture(scope="session")
def shared_candles_path() -> Path:
    if not SHARED_CANDLES.is_file():
        pytest.skip(f"the shared BTC candles are not at {SHARED_CANDLES}")
    return SHARED_CANDLES


@pytest.fixture(scope="session")
def candles_excerpt(shared_candles_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The header and the first 6,000 rows of the shared file, unchanged, as a plain CSV."""
    path = tmp_path_factory.mktemp("excerpt") / "btc_5m_excerpt.csv"
    with gzip.open(shared_candles_path, "rt") as src, path.open("w") as dst:
        for i, line in enumerate(src):
            if i > EXCERPT_ROWS:
                break
            dst.write(line)
    return path
