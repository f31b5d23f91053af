"""Live streams share one gateway's NATS subscriptions and reads (issue 11).

With a subscription set and a job read per stream, 200 streams opened together on one job
made 200 reads at once (up to 30 % were 504 after 5 s), and every terminal event of every job
was delivered once per open stream. Here one gateway subscribes once, to every job's progress
(`<prefix>.evt.training.progress.*`) and to the three terminal subjects, and hands each event
to the streams of its job in memory. Reads are shared too (`shared`): streams that ask for the
same thing while a read of it is under way wait for the *next* read, started as soon as that
one ends, and all share it; so a stream never gets an answer older than its own request (a
stream that registered, then read, misses nothing) and a job sees at most two reads of a kind
at a time, however many streams follow it.

A stream that opens needs no read of its own (`recent`): it takes the read under way or one that
ended at most `keep_s` ago, the same for every stream of a burst, so that 500 streams opened
together cost one read. Such a view can be older than the stream's subscription, which is safe
because what happened in between is known here: a terminal event of the job drops the views kept
of it (and the one being read), so a stream never starts from a view that missed its end, and
the job's last progress event (`latest`) brings a stream that opens up to date at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import JobProgress

QUEUE_SIZE = 256
TERMINAL = "terminal"
# A finished read is handed to streams that open within this long (see the module's docstring).
KEEP_S = 1.0

T = TypeVar("T")

Event = JobProgress | str


@dataclass
class _Slot:
    running: asyncio.Future[Any] | None = None
    queued: asyncio.Future[Any] | None = None
    make: Callable[[], Awaitable[Any]] | None = None
    task: asyncio.Future[Any] | None = None
    # No terminal event of the key's job since the running read started: its answer may be kept.
    current: bool = True


def job_key(job_id: str) -> tuple[str, str]:
    """The key of a job's view in `LiveHub.shared` and `LiveHub.recent`."""
    return ("job", job_id)


@dataclass
class LiveHub:
    names: Names
    keep_s: float = KEEP_S
    listeners: dict[str, set[asyncio.Queue[Event]]] = field(default_factory=dict)
    # The last progress event of each job that has streams.
    latest: dict[str, JobProgress] = field(default_factory=dict)
    # Per job with streams and kind of event: what the last one was made of, and its JSON, so
    # that 500 streams encode it once (live.JobStream._shared_text).
    encoded: dict[tuple[str, str], tuple[tuple[Any, ...], str]] = field(default_factory=dict)
    _slots: dict[Hashable, _Slot] = field(default_factory=dict)
    _kept: dict[Hashable, tuple[float, Any]] = field(default_factory=dict)

    async def setup(self, nc: NatsClient) -> None:
        """Subscribe once per connection (nats-py renews subscriptions after a reconnect)."""
        await nc.subscribe(self.names.job_progress("*"), cb=self._on_progress)
        for subject in (self.names.job_completed, self.names.job_failed, self.names.job_cancelled):
            await nc.subscribe(subject, cb=self._on_terminal)

    def listen(self, job_id: str) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self.listeners.setdefault(job_id, set()).add(queue)
        return queue

    def leave(self, job_id: str, queue: asyncio.Queue[Event]) -> None:
        queues = self.listeners.get(job_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.listeners[job_id]
                self.latest.pop(job_id, None)
                for kind in ("state", "progress"):
                    self.encoded.pop((job_id, kind), None)

    def _deliver(self, job_id: str, event: Event) -> None:
        for queue in self.listeners.get(job_id, ()):
            with contextlib.suppress(asyncio.QueueFull):  # the stream's next poll catches up
                queue.put_nowait(event)

    async def _on_progress(self, msg: Msg) -> None:
        job_id = msg.subject.rsplit(".", 1)[-1]
        if job_id not in self.listeners:
            return
        try:
            event = JobProgress.from_bytes(msg.data)
        except ValueError:
            return
        self.latest[job_id] = event
        self._deliver(job_id, event)

    async def _on_terminal(self, msg: Msg) -> None:
        if not (self.listeners or self._kept or self._slots):
            return
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        job_id = body.get("job_id") if isinstance(body, dict) else None
        if isinstance(job_id, str):
            self.invalidate(job_key(job_id))
            self._deliver(job_id, TERMINAL)

    def invalidate(self, key: Hashable) -> None:
        """Forget what was read of `key`, and keep nothing of the read under way."""
        self._kept.pop(key, None)
        slot = self._slots.get(key)
        if slot is not None:
            slot.current = False

    async def recent(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """A read of `key` that ended at most `keep_s` ago, or the one under way, unless the
        key was invalidated since it started; else `shared(key, make)`."""
        kept = self._kept.get(key)
        if kept is not None and asyncio.get_running_loop().time() - kept[0] <= self.keep_s:
            value: T = kept[1]
            return value
        slot = self._slots.get(key)
        if slot is not None and slot.running is not None and slot.current:
            value = await asyncio.shield(slot.running)
            kept = self._kept.get(key)
            if kept is not None and kept[1] is value:
                return value
        return await self.shared(key, make)

    async def shared(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """`await make()`, shared with every caller of the same `key` that asks before the read
        it joins has started (see the module's docstring)."""
        slot = self._slots.setdefault(key, _Slot())
        if slot.queued is None:
            slot.queued = asyncio.get_running_loop().create_future()
            slot.make = make
        future = slot.queued
        if slot.running is None:
            self._start(key, slot)
        # Shielded: a stream that goes away must not cancel the read the others wait for.
        result: T = await asyncio.shield(future)
        return result

    def _start(self, key: Hashable, slot: _Slot) -> None:
        future, make = slot.queued, slot.make
        assert future is not None
        assert make is not None
        slot.queued, slot.make, slot.running = None, None, future
        slot.current = True
        # Retrieved here, so that a read nobody waits for any more logs no "never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

        def done(task: asyncio.Future[Any]) -> None:
            if task.cancelled():
                future.cancel()
            elif (error := task.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(task.result())
                if slot.current:
                    self._keep(key, task.result())
            slot.running = slot.task = None
            if slot.queued is not None:
                self._start(key, slot)
            else:
                self._slots.pop(key, None)

        slot.task = asyncio.ensure_future(make())
        slot.task.add_done_callback(done)

    def _keep(self, key: Hashable, value: Any) -> None:
        loop = asyncio.get_running_loop()
        entry = (loop.time(), value)
        self._kept[key] = entry

        def expire() -> None:
            if self._kept.get(key) is entry:
                del self._kept[key]

        loop.call_later(self.keep_s, expire)
