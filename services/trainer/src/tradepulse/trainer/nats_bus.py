"""The trainer's `Bus` on NATS, and JetStream messages as `Delivery`s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from tradepulse.common.bus import publish
from tradepulse.common.contracts.market import CoverageQuery, CoverageReply
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import (
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgress,
    TrialCompleted,
    TrialsCompleted,
    TrialWork,
)
from tradepulse.trainer.ports import JobEvent, Subscription


class NatsBus:
    """`coverage_wait`: how long ingest may take to answer before the job is retried later."""

    def __init__(
        self, nc: NatsClient, js: JetStreamContext, names: Names, coverage_wait: float
    ) -> None:
        self.nc = nc
        self.js = js
        self.names = names
        self.coverage_wait = coverage_wait

    def _subject(self, event: JobEvent) -> str:
        match event:
            case JobProgress():
                return self.names.job_progress(event.job_id)
            case JobCompleted():
                return self.names.job_completed
            case JobFailed():
                return self.names.job_failed
            case JobCancelled():
                return self.names.job_cancelled

    async def publish_event(self, event: JobEvent) -> None:
        await publish(self.js, self._subject(event), event)

    async def publish_work(self, work: TrialWork) -> None:
        await publish(self.js, self.names.trial_work, work)

    async def announce_trials(self, results: list[TrialCompleted]) -> None:
        job_id = results[0].job_id
        message = TrialsCompleted(
            message_id=f"{job_id}.trials.{results[0].number}-{results[-1].number}.done",
            job_id=job_id,
            results=results,
        )
        await self.nc.publish(
            self.names.trial_completed(job_id),
            message.to_bytes(),
            headers={"Nats-Msg-Id": message.message_id},
        )

    async def subscribe_trials(
        self, job_id: str, on_result: Callable[[TrialCompleted], None]
    ) -> Subscription:
        async def callback(msg: Msg) -> None:
            try:
                results = TrialsCompleted.from_bytes(msg.data).results
            except ValidationError:
                # One trial alone, as a replica of an earlier version announces it.
                results = [TrialCompleted.from_bytes(msg.data)]
            for result in results:
                on_result(result)

        return await self.nc.subscribe(self.names.trial_completed(job_id), cb=callback)

    async def broadcast_cancel(self, job_id: str) -> None:
        await self.nc.publish(self.names.cancel_broadcast(job_id), b"")

    async def coverage(self, query: CoverageQuery) -> CoverageReply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.coverage_wait
        while True:
            try:
                msg = await self.nc.request(self.names.coverage, query.to_bytes(), timeout=5)
                return CoverageReply.from_bytes(msg.data)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
                if loop.time() >= deadline:
                    raise ConnectionError(
                        "the ingest service does not answer coverage queries"
                    ) from exc
                await asyncio.sleep(1.0)


class JetStreamDelivery:
    """A pulled JetStream message as a `Delivery`."""

    def __init__(self, msg: Msg) -> None:
        self.msg = msg

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def attempt(self) -> int:
        return self.msg.metadata.num_delivered or 1

    async def ack(self) -> None:
        await self.msg.ack()

    async def ack_sync(self) -> None:
        await self.msg.ack_sync()

    async def nak(self, delay: float | None = None) -> None:
        await self.msg.nak(delay=delay)

    async def term(self) -> None:
        await self.msg.term()

    async def in_progress(self) -> None:
        await self.msg.in_progress()
