"""One replica's cancellation state: the cancels it heard of and the jobs it holds."""

from __future__ import annotations

import asyncio


class CancelRegistry:
    """Cancels arrive by broadcast (to every replica, not stored); a job's holder stops it
    when its event is set. A cancel heard before the job is held here (or by a replica that
    only runs its trials) is remembered, so a later hold starts cancelled and its trial work
    is skipped. The store's `cancel_requested` flag is the record; this only makes a cancel
    take effect at once instead of at the next read of the store."""

    def __init__(self) -> None:
        self._requested: set[str] = set()
        self._held: dict[str, asyncio.Event] = {}

    def hold(self, job_id: str) -> asyncio.Event | None:
        """Start holding a job: its cancel event (already set if a cancel was heard), or None
        if this replica holds it already (a duplicate delivery)."""
        if job_id in self._held:
            return None
        event = asyncio.Event()
        if job_id in self._requested:
            event.set()
        self._held[job_id] = event
        return event

    def release(self, job_id: str) -> None:
        self._held.pop(job_id, None)

    def cancel(self, job_id: str) -> None:
        """A cancel broadcast for the job: stop it if held here, skip its trial work."""
        self._requested.add(job_id)
        event = self._held.get(job_id)
        if event is not None:
            event.set()

    def requested(self, job_id: str) -> bool:
        return job_id in self._requested
