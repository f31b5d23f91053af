"""The `Bus` contract, one suite for the NATS bus and the in-memory one of the unit tests.

A test module subclasses `BusContract` and gives a `bus_backend` fixture: the in-memory bus
in tests/unit/test_trainer_store.py, both it and NATS in
tests/integration/test_trainer_store_contract.py. What is only NATS's (reconnects, the
stream's duplicate window) the process-level fault tests prove.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from tradepulse.common.contracts.market import CoverageQuery, CoverageReply
from tradepulse.common.contracts.training import JobFailed, TrialCompleted
from tradepulse.trainer.ports import Bus

from .trainer_fakes import MemoryBus, eventually
from .trainer_store_contract import trial


@dataclass
class BusBackend:
    bus: Bus
    # Message ids of the job events stored so far, in order.
    stored_ids: Callable[[], Awaitable[list[str]]]
    # From now on, coverage queries are answered with this reply.
    serve_coverage: Callable[[CoverageReply], Awaitable[None]]
    # Job ids whose cancel broadcast reached a listener, in order.
    cancels_heard: Callable[[], list[str]]


def memory_bus_backend() -> BusBackend:
    bus = MemoryBus()

    async def stored_ids() -> list[str]:
        return [e.message_id for e in bus.events]

    async def serve(reply: CoverageReply) -> None:
        bus.coverage_reply = reply

    return BusBackend(bus, stored_ids, serve, lambda: bus.cancels)


QUERY = CoverageQuery(exchange="binance", symbol="BTC/USDT", timeframe="5m")


class BusContract:
    async def test_announced_results_reach_the_listeners_of_their_job_only(
        self, bus_backend: BusBackend
    ) -> None:
        bus = bus_backend.bus
        heard: list[TrialCompleted] = []
        sub = await bus.subscribe_trials("job-a", heard.append)
        await bus.announce_trials([trial("job-b", 0, 1.0)])
        await bus.announce_trials([trial("job-a", 1, 2.0), trial("job-a", 2, 2.5)])
        await eventually(lambda: len(heard) == 2)
        assert heard == [trial("job-a", 1, 2.0), trial("job-a", 2, 2.5)], "each, in order"
        await sub.unsubscribe()
        await bus.announce_trials([trial("job-a", 3, 3.0)])
        later: list[TrialCompleted] = []
        await bus.subscribe_trials("job-a", later.append)
        await bus.announce_trials([trial("job-a", 4, 4.0)])
        await eventually(lambda: len(later) == 1)
        assert heard == [trial("job-a", 1, 2.0), trial("job-a", 2, 2.5)], "none after unsubscribing"

    async def test_a_durable_publish_is_stored_once_per_message_id(
        self, bus_backend: BusBackend
    ) -> None:
        bus = bus_backend.bus
        failed = JobFailed(message_id="job-a.failed", job_id="job-a", reason="why")
        await bus.publish_event(failed)
        await bus.publish_event(failed.model_copy(update={"reason": "again"}))
        await bus.publish_event(JobFailed(message_id="job-b.failed", job_id="job-b", reason=""))
        assert await bus_backend.stored_ids() == ["job-a.failed", "job-b.failed"]

    async def test_coverage_is_asked_of_ingest(self, bus_backend: BusBackend) -> None:
        with pytest.raises(ConnectionError, match="does not answer coverage queries"):
            await bus_backend.bus.coverage(QUERY)
        reply = CoverageReply(datasets=[])
        await bus_backend.serve_coverage(reply)
        assert (await bus_backend.bus.coverage(QUERY)).datasets == []

    async def test_a_cancel_is_broadcast(self, bus_backend: BusBackend) -> None:
        await bus_backend.bus.broadcast_cancel("job-a")
        await eventually(lambda: bus_backend.cancels_heard() == ["job-a"])
