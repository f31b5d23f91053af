"""The in-memory job store and bus against their contracts (PostgreSQL and NATS run the same
suites in tests/integration/test_trainer_store_contract.py)."""

from __future__ import annotations

import pytest

from .trainer_bus_contract import BusBackend, BusContract, memory_bus_backend
from .trainer_store_contract import Backend, StoreContract, memory_backend


@pytest.fixture
def backend() -> Backend:
    return memory_backend()


@pytest.fixture
def bus_backend() -> BusBackend:
    return memory_bus_backend()


class TestMemoryJobStore(StoreContract):
    pass


class TestMemoryBus(BusContract):
    pass
