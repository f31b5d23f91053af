"""The in-memory job store against the `JobStore` contract (PostgreSQL runs the same suite in
tests/integration/test_trainer_store_contract.py)."""

from __future__ import annotations

import pytest

from .trainer_store_contract import Backend, StoreContract, memory_backend


@pytest.fixture
def backend() -> Backend:
    return memory_backend()


class TestMemoryJobStore(StoreContract):
    pass
