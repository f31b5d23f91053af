"""Live streams share one gateway's subscriptions and reads (issue 11): 500 streams of one job
cost a couple of reads, not 500, and each NATS event is handed to every stream once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from nats.aio.msg import Msg

from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import JobProgress
from tradepulse.gateway.fanout import TERMINAL, LiveHub, job_key

STREAMS = 500


async def test_reads_asked_together_are_one_read_and_none_is_older_than_its_asker() -> None:
    hub = LiveHub(Names("tp"))
    reads: list[int] = []
    release = asyncio.Event()

    async def read() -> int:
        reads.append(len(reads))
        await release.wait()
        return len(reads)

    first = [asyncio.ensure_future(hub.shared("job", read)) for _ in range(STREAMS)]
    await asyncio.sleep(0)
    # These ask while the first read is under way: they share the next one, not that one.
    later = [asyncio.ensure_future(hub.shared("job", read)) for _ in range(STREAMS)]
    await asyncio.sleep(0)
    assert len(reads) == 1
    release.set()
    # The very first asker started read 1; everyone after it shares read 2, started when
    # read 1 ended: no answer is older than its question.
    answers = await asyncio.gather(*first)
    assert answers[0] == 1
    assert set(answers[1:]) == {2}
    assert set(await asyncio.gather(*later)) == {2}
    assert len(reads) == 2
    assert not hub._slots, "nothing is kept once the reads are done"


async def test_a_stream_that_goes_away_does_not_cancel_the_read_of_the_others() -> None:
    hub = LiveHub(Names("tp"))
    release = asyncio.Event()

    async def read() -> str:
        await release.wait()
        return "view"

    leaving = asyncio.ensure_future(hub.shared("job", read))
    staying = asyncio.ensure_future(hub.shared("job", read))
    await asyncio.sleep(0)
    leaving.cancel()
    release.set()
    assert await staying == "view"


def _msg(subject: str, data: bytes) -> Msg:
    return cast(Msg, SimpleNamespace(subject=subject, data=data))


async def test_each_event_reaches_every_stream_of_its_job_once() -> None:
    names = Names("tp")
    hub = LiveHub(names)
    queues = [hub.listen("job_a") for _ in range(STREAMS)]
    other = hub.listen("job_b")
    progress = JobProgress(
        job_id="job_a", status="running", progress=10.0, trials_done=1, n_iterations=10
    )
    await hub._on_progress(_msg(names.job_progress("job_a"), progress.to_bytes()))
    await hub._on_terminal(_msg(names.job_completed, b'{"job_id": "job_a"}'))
    for queue in queues:
        got: list[Any] = [queue.get_nowait(), queue.get_nowait()]
        assert got == [progress, TERMINAL]
        assert queue.empty()
    assert other.empty()
    for queue in queues:
        hub.leave("job_a", queue)
    assert set(hub.listeners) == {"job_b"}


async def test_streams_that_open_together_or_just_after_share_one_read() -> None:
    hub = LiveHub(Names("tp"), keep_s=60.0)
    reads: list[int] = []
    release = asyncio.Event()

    async def read() -> int:
        reads.append(len(reads))
        await release.wait()
        return len(reads)

    burst = [asyncio.ensure_future(hub.recent(job_key("job_a"), read)) for _ in range(STREAMS)]
    await asyncio.sleep(0)
    release.set()
    assert set(await asyncio.gather(*burst)) == {1}
    # Opened after it ended, within keep_s: no read of their own.
    assert await hub.recent(job_key("job_a"), read) == 1
    assert len(reads) == 1
    # A stream that follows (a poll) still reads afresh.
    assert await hub.shared(job_key("job_a"), read) == 2


async def test_a_view_read_before_the_job_ended_is_not_handed_to_a_stream_after() -> None:
    names = Names("tp")
    hub = LiveHub(names, keep_s=60.0)
    views = iter(["running", "completed", "completed"])
    release = asyncio.Event()

    async def read() -> str:
        await release.wait()
        return next(views)

    release.set()
    assert await hub.recent(job_key("job_a"), read) == "running"
    assert await hub.recent(job_key("job_a"), read) == "running", "kept"
    await hub._on_terminal(_msg(names.job_completed, b'{"job_id": "job_a"}'))
    assert await hub.recent(job_key("job_a"), read) == "completed"

    # The job ends while the read that streams wait for is under way: they read again.
    release.clear()
    hub.invalidate(job_key("job_b"))
    views = iter(["running", "completed"])
    under_way = asyncio.ensure_future(hub.recent(job_key("job_b"), read))
    await asyncio.sleep(0)
    joining = asyncio.ensure_future(hub.recent(job_key("job_b"), read))
    await asyncio.sleep(0)
    await hub._on_terminal(_msg(names.job_completed, b'{"job_id": "job_b"}'))
    release.set()
    assert await under_way == "running"  # the first asker's own read, started before the end
    assert await joining == "completed"
    assert await hub.recent(job_key("job_b"), read) == "completed"


async def test_a_stream_that_opens_finds_the_last_progress_of_its_job() -> None:
    names = Names("tp")
    hub = LiveHub(names)
    first = hub.listen("job_a")
    progress = JobProgress(
        job_id="job_a", status="running", progress=40.0, trials_done=4, n_iterations=10
    )
    await hub._on_progress(_msg(names.job_progress("job_a"), progress.to_bytes()))
    await hub._on_progress(_msg(names.job_progress("job_b"), progress.to_bytes()))
    assert hub.latest == {"job_a": progress}, "kept only for jobs that have streams"
    hub.leave("job_a", first)
    assert hub.latest == {}
