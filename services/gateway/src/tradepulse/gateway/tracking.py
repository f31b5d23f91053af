"""What this gateway process remembers for a short while, and nothing it owns:

- jobs it accepted in the last minute, shown as queued until a trainer's intake records them;
- the outcome of the ingest requests it published, read from the CandlesIngested and
  IngestFailed events, for `POST` (which waits a few seconds) and `GET /data/ingest/{id}`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tradepulse.common.contracts.market import CandlesIngested, DatasetKey, IngestFailed
from tradepulse.common.contracts.training import TrainingRequested

MAX_RECENT_JOBS = 20_000
MAX_INGESTS = 5_000
INGEST_TTL_S = 3600.0


@dataclass(frozen=True)
class RecentJob:
    request: TrainingRequested
    created_at: str
    accepted_at: float


class RecentJobs:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._jobs: OrderedDict[str, RecentJob] = OrderedDict()

    def add(self, request: TrainingRequested) -> None:
        self._prune()
        self._jobs[request.job_id] = RecentJob(
            request, datetime.now(UTC).isoformat(), time.monotonic()
        )
        while len(self._jobs) > MAX_RECENT_JOBS:
            self._jobs.popitem(last=False)

    def get(self, job_id: str) -> RecentJob | None:
        job = self._jobs.get(job_id)
        if job is None or time.monotonic() - job.accepted_at > self.ttl_s:
            return None
        return job

    def in_ensemble(self, ensemble_id: str) -> list[RecentJob]:
        """The recent jobs of one seed ensemble (a scan: ensembles are looked up rarely)."""
        self._prune()
        return [j for j in self._jobs.values() if j.request.ensemble_id == ensemble_id]

    def _prune(self) -> None:
        now = time.monotonic()
        while self._jobs:
            oldest = next(iter(self._jobs.values()))
            if now - oldest.accepted_at <= self.ttl_s:
                break
            self._jobs.popitem(last=False)


Outcome = CandlesIngested | IngestFailed


@dataclass
class IngestEntry:
    dataset: DatasetKey
    added_at: float
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class IngestTracker:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, IngestEntry] = OrderedDict()

    def expect(self, request_id: str, dataset: DatasetKey) -> IngestEntry:
        self._prune()
        entry = IngestEntry(dataset, time.monotonic())
        self._entries[request_id] = entry
        while len(self._entries) > MAX_INGESTS:
            self._entries.popitem(last=False)
        return entry

    def forget(self, request_id: str) -> None:
        self._entries.pop(request_id, None)

    def get(self, request_id: str) -> IngestEntry | None:
        return self._entries.get(request_id)

    def record(self, outcome: Outcome) -> None:
        entry = self._entries.get(outcome.request_id)
        if entry is not None and not entry.done.done():
            entry.done.set_result(outcome)

    def _prune(self) -> None:
        now = time.monotonic()
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.added_at <= INGEST_TTL_S:
                break
            self._entries.popitem(last=False)
