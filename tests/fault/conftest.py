"""Fault tests use the same real servers and per-test isolation as the integration tests."""

from tests.integration.conftest import (
    database,
    env,
    names,
    quick_redelivery,
    shared_with_candles,
    system_with_candles,
)

__all__ = [
    "database",
    "env",
    "names",
    "quick_redelivery",
    "shared_with_candles",
    "system_with_candles",
]
