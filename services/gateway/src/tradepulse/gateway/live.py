"""A job's live progress as server-sent events.

Events, in order: `state` (the job as it is, first), then `progress` (percent never goes
down), `best` (a new best trial, with its parameters and metrics), and one closing event
named after the terminal status (`completed`, `failed`, `cancelled`) carrying the final job;
the stream then ends. A completed job's last `progress` is 100.0. Comment lines (`: ...`)
keep idle connections open.

The events come from NATS (the job's progress subject and the terminal-event subjects), through
the gateway's one set of subscriptions (fanout.LiveHub), and every read of the job is shared
with the other streams of the same job; the job is also fetched every `poll_s` seconds, so an
event missed while NATS reconnected only delays the stream, never stalls it. A stream that
opens reads nothing of its own: it starts from the view the streams opened with it share
(`LiveHub.recent`), whose `state` event is encoded once for all of them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from tradepulse.common.contracts.training import (
    TERMINAL_STATUSES,
    JobProgress,
    JobView,
)
from tradepulse.common.logging import get_logger
from tradepulse.gateway.errors import ApiError, NotFoundError
from tradepulse.gateway.fanout import Event, job_key
from tradepulse.gateway.jobs import config_id_of, find_job
from tradepulse.gateway.schemas.training import BestSoFar, job_out
from tradepulse.gateway.state import Gateway

FINAL_STATE_WAIT_S = 3.0
# Polls in a row (one per GATEWAY_SSE_POLL_S) that find no such job before a stream ends.
MISSING_POLLS = 3

log = get_logger(__name__)


class JobStream:
    def __init__(self, gw: Gateway, job_id: str, first: JobView) -> None:
        self.gw = gw
        self.job_id = job_id
        self.view = first
        self.progress = -1.0
        self.trials_done = -1
        self.best_trial: int | None = None
        self.seq = 0
        self.missing = 0

    def _event(self, name: str, data: Any) -> bytes:
        return self._encoded(name, json.dumps(data, separators=(",", ":"), allow_nan=False))

    def _encoded(self, name: str, payload: str) -> bytes:
        self.seq += 1
        return f"id: {self.seq}\nevent: {name}\ndata: {payload}\n\n".encode()

    def _state(self, view: JobView, config_id: str | None) -> bytes:
        return self._encoded(
            "state",
            self._shared_text(
                "state", (view, config_id), lambda: job_out(view, config_id).model_dump()
            ),
        )

    def _shared_text(self, kind: str, token: tuple[Any, ...], build: Callable[[], Any]) -> str:
        """The JSON of `build()` (JSON-ready data), encoded once for all the streams of the job
        that send the same `token` (the same view, the same progress) one after the other
        (LiveHub.encoded); the text depends on nothing but the token and the job."""
        hub = self.gw.streams
        made = hub.encoded.get((self.job_id, kind))
        if made is not None and made[0] == token:
            return made[1]
        text = json.dumps(build(), separators=(",", ":"), allow_nan=False)
        if self.job_id in hub.listeners:
            hub.encoded[(self.job_id, kind)] = (token, text)
        return text

    async def _fetch(self) -> JobView | None:
        try:
            view = await shared_view(self.gw, self.job_id)
        except ApiError as exc:
            log.info("live_fetch_failed", job_id=self.job_id, error=exc.detail)
            return None
        self.missing = 0 if view is not None else self.missing + 1
        return view

    def _progress_event(
        self,
        progress: float,
        status: str,
        trials_done: int,
        best_value: float | None,
        best_trial: int | None,
    ) -> bytes | None:
        value = round(progress, 1)
        if value < self.progress or (value == self.progress and trials_done <= self.trials_done):
            return None
        self.progress = value
        self.trials_done = max(self.trials_done, trials_done)
        n_iterations = self.view.n_iterations
        token = (value, status, trials_done, best_value, best_trial, n_iterations)
        return self._encoded(
            "progress",
            self._shared_text(
                "progress",
                token,
                lambda: {
                    "job_id": self.job_id,
                    "status": status,
                    "progress": value,
                    "trials_done": trials_done,
                    "n_iterations": n_iterations,
                    "best_value": best_value,
                    "best_trial": best_trial,
                },
            ),
        )

    async def _best_event(self, best_trial: int | None) -> bytes | None:
        if best_trial is None or best_trial == self.best_trial:
            return None
        view = await self._fetch()
        if view is None or view.best_trial is None:
            return None
        self.view = view
        self.best_trial = view.best_trial
        best = BestSoFar(
            value=view.best_value,
            trial=view.best_trial,
            params=view.best_params,
            metrics=view.best_metrics,
        )
        return self._event("best", best.model_dump())

    async def _from_view(self, view: JobView) -> AsyncIterator[bytes]:
        self.view = view
        event = self._progress_event(
            view.progress, view.status, view.trials_done, view.best_value, view.best_trial
        )
        if event is not None and view.status not in TERMINAL_STATUSES:
            yield event
        best = await self._best_event(view.best_trial)
        if best is not None:
            yield best

    async def _final(self) -> AsyncIterator[bytes]:
        """The closing events, from the job as stored once its terminal event arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINAL_STATE_WAIT_S
        view = await self._fetch() or self.view
        while view.status not in TERMINAL_STATUSES and loop.time() < deadline:
            await asyncio.sleep(0.05)
            view = await self._fetch() or view
        best = await self._best_event(view.best_trial)
        if best is not None:
            yield best
        if view.status == "completed":
            event = self._progress_event(
                100.0, view.status, view.trials_done, view.best_value, view.best_trial
            )
            if event is not None:
                yield event
        config_id = await shared_config_id(self.gw, view)
        yield self._event(view.status, job_out(view, config_id).model_dump())

    async def events(self) -> AsyncGenerator[bytes, None]:
        self.gw.metrics.live_streams.inc()
        hub = self.gw.streams
        queue = hub.listen(self.job_id)
        try:
            # Taken after listening: a terminal event since the view was read drops it (the
            # stream then waits for a read after its own start), and what progress it missed
            # is in `hub.latest` (see fanout).
            opened = await opening_view(self.gw, self.job_id)
            self.missing = 0 if opened is not None else 1
            view = opened or self.view
            self.view = view
            self.progress = round(view.progress, 1)
            self.trials_done = view.trials_done
            self.best_trial = view.best_trial
            config_id = await shared_config_id(self.gw, view)
            yield self._state(view, config_id)
            if view.status in TERMINAL_STATUSES:
                yield self._event(view.status, job_out(view, config_id).model_dump())
                return
            poll_s = self.gw.settings.sse_poll_s
            latest = hub.latest.get(self.job_id)
            pending: list[Event] = [] if latest is None else [latest]
            while True:
                try:
                    item = pending.pop() if pending else await asyncio.wait_for(queue.get(), poll_s)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    polled = await self._fetch()
                    if polled is None:
                        if self.missing >= MISSING_POLLS:
                            # No trainer knows the job any more (and it is no longer one this
                            # gateway just accepted): end the stream rather than beat forever.
                            log.warning("live_job_gone", job_id=self.job_id)
                            return
                        continue
                    if polled.status in TERMINAL_STATUSES:
                        self.view = polled
                        async for event in self._final():
                            yield event
                        return
                    async for event in self._from_view(polled):
                        yield event
                    continue
                if isinstance(item, JobProgress):
                    if item.status in TERMINAL_STATUSES:
                        continue  # the terminal event follows and closes the stream
                    update = self._progress_event(
                        item.progress,
                        item.status,
                        item.trials_done,
                        item.best_value,
                        item.best_trial,
                    )
                    if update is not None:
                        yield update
                    best = await self._best_event(item.best_trial)
                    if best is not None:
                        yield best
                else:
                    async for event in self._final():
                        yield event
                    return
        finally:
            self.gw.metrics.live_streams.dec()
            hub.leave(self.job_id, queue)


async def shared_view(gw: Gateway, job_id: str) -> JobView | None:
    """The job as the trainers have it, read once for all the streams asking together."""
    return await gw.streams.shared(job_key(job_id), lambda: find_job(gw, job_id))


async def opening_view(gw: Gateway, job_id: str) -> JobView | None:
    """The job for a stream that opens: the read under way or one just ended, unless the job
    ended since (`LiveHub.recent`)."""
    return await gw.streams.recent(job_key(job_id), lambda: find_job(gw, job_id))


async def shared_config_id(gw: Gateway, view: JobView) -> str | None:
    if view.status != "completed" or view.job_id in gw.config_ids:
        return await config_id_of(gw, view)
    return await gw.streams.shared(("config", view.job_id), lambda: config_id_of(gw, view))


async def open_stream(gw: Gateway, job_id: str) -> JobStream:
    """A stream of the job, or 404 if no trainer (and not this gateway) knows it."""
    first = await opening_view(gw, job_id)
    if first is None:
        raise NotFoundError(f"no job {job_id!r}")
    return JobStream(gw, job_id, first)
