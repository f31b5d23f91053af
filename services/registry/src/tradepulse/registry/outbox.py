"""Publishes the events committed to the outbox table, at least once and in commit order.

A ConfigPromoted is written in the transaction that changes the status, then published and
marked sent. A crash (or NATS away) between the two leaves the row unsent; `run` publishes
it again at start and every `interval` seconds. The message id is fixed when the row is
written, so JetStream drops a repeat inside its duplicate window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tradepulse.common.contracts.registry import ConfigPromoted
from tradepulse.common.logging import get_logger
from tradepulse.registry.metrics import RegistryMetrics
from tradepulse.registry.repository import Repository

Publish = Callable[[str, ConfigPromoted], Awaitable[object]]

BATCH = 100

log = get_logger(__name__)


class Outbox:
    def __init__(self, repo: Repository, publish: Publish, metrics: RegistryMetrics) -> None:
        self._repo = repo
        self._publish = publish
        self._metrics = metrics
        # One flush at a time per process keeps the events of a configuration in order.
        self._lock = asyncio.Lock()

    async def flush(self) -> int:
        """Publish every unsent event, oldest first; returns how many were published.

        Stops at the first failure (the error propagates); what was published stays sent.
        """
        published = 0
        async with self._lock:
            while rows := await self._repo.unsent(BATCH):
                for row in rows:
                    await self._publish(row.subject, ConfigPromoted.from_bytes(row.payload))
                    await self._repo.mark_sent(row.id)
                    self._metrics.events_published.inc()
                    published += 1
        return published

    async def try_flush(self) -> int:
        """`flush`, logging a failure instead of raising: the periodic run will retry."""
        try:
            return await self.flush()
        except Exception:
            log.exception("outbox_flush_failed")
            return 0

    async def run(self, interval: float) -> None:
        """Flush now (events a previous run committed but never published), then periodically."""
        while True:
            await self.try_flush()
            await asyncio.sleep(interval)
