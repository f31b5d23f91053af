"""The running system that integration and fault tests share, one per pytest worker.

A plugin (tests/conftest.py lists it in `pytest_plugins`) rather than a fixture of a folder's
conftest: a session fixture that two conftests import would be two fixtures, each with its own
instance, and the worker would start two systems.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.integration.conftest import NATS_URL, QUICK_REDELIVERY, Env, new_database, new_names
from tests.integration.flows import running_system
from tests.support.held import held

SHARED_TRAINERS = 2


@asynccontextmanager
async def _shared_services(data_dir: Path) -> AsyncIterator[Env]:
    async with (
        new_names() as names,
        new_database() as database_url,
        running_system(
            data_dir,
            names,
            trainers=SHARED_TRAINERS,
            nats_url=NATS_URL,
            database_url=database_url,
            environment={"trainer": QUICK_REDELIVERY},
        ),
    ):
        yield Env(names, NATS_URL, database_url)


@pytest.fixture(scope="session")
def shared_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Ingest, registry and two trainers (short ack waits and leases), started on first use in
    this worker and stopped at the end of its session (held in a loop of its own:
    tests/support/held.py)."""
    data_dir = tmp_path_factory.mktemp("shared-services")
    with held(lambda: _shared_services(data_dir), within=300, name="shared-services") as env:
        yield env
