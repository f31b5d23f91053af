"""Driving the system over NATS the way a client does: ingest, submit, wait, query.

Everything goes through the services' subjects (no table is read), and every wait polls or
listens against a deadline.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient

from tests.support.polling import wait_until
from tradepulse.cli.supervisor import Config, ServiceSpec, System
from tradepulse.common.bus import connect, publish
from tradepulse.common.contracts.market import (
    CandlesIngested,
    DatasetKey,
    IngestFailed,
    IngestRequested,
)
from tradepulse.common.contracts.registry import ConfigReply, ConfigView, GetConfig
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import (
    TERMINAL_STATUSES,
    GetJob,
    JobReply,
    JobView,
    ListTrials,
    TrainingRequested,
    TrialsReply,
    TrialView,
)

from ..conftest import SHARED_DATA

BTC = DatasetKey(exchange="binance", symbol="BTC/USDT", timeframe="5m")


def excerpt(shared: Path, rows: int, dest: Path) -> Path:
    """The header and the first `rows` candles of the shared file, unchanged."""
    with gzip.open(shared, "rt") as src, dest.open("w") as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    return dest


@asynccontextmanager
async def running_system(
    tmp: Path,
    names: Names,
    *,
    trainers: int,
    nats_url: str | None,
    database_url: str | None,
    services: tuple[str, ...] = ("ingest", "registry", "trainer"),
    environment: Mapping[str, Mapping[str, str]] | None = None,
) -> AsyncIterator[System]:
    """`environment` adds variables per service, e.g. {"gateway": {"GATEWAY_PORT": ...}}."""
    extra = {s: dict(v) for s, v in (environment or {}).items()}
    # Ingest reads server paths only inside its roots: the tests' files and the shared data.
    extra.setdefault("ingest", {}).setdefault(
        "INGEST_FILE_ROOT", os.pathsep.join([tempfile.gettempdir(), str(SHARED_DATA)])
    )
    specs = [
        ServiceSpec(
            s, replicas=trainers if s == "trainer" else 1, environment=dict(extra.get(s, {}))
        )
        for s in services
    ]
    config = Config(
        data_dir=tmp / f"system-{uuid.uuid4().hex[:6]}",
        services=specs,
        namespace=names.prefix,
        nats_url=nats_url,
        database_url=database_url,
    )
    async with System.start(config) as system:
        await system.wait_ready(within=90)
        yield system


class Client:
    """A NATS client of the system: what the gateway will do, minus HTTP."""

    def __init__(self, nc: NatsClient, names: Names) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.names = names

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, names: Names) -> AsyncIterator[Client]:
        nc = await connect(url, "test-client")
        try:
            yield cls(nc, names)
        finally:
            await nc.close()

    async def ingest_file(self, path: Path, dataset: DatasetKey = BTC) -> CandlesIngested:
        request = IngestRequested(
            request_id=uuid.uuid4().hex, dataset=dataset, source="file", path=str(path)
        )
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def on_event(msg: Any) -> None:
            model = CandlesIngested if msg.subject == self.names.candles_ingested else IngestFailed
            event = model.from_bytes(msg.data)
            if event.request_id == request.request_id and not outcome.done():
                outcome.set_result(event)

        subs = [
            await self.nc.subscribe(self.names.candles_ingested, cb=on_event),
            await self.nc.subscribe(self.names.ingest_failed, cb=on_event),
        ]
        try:
            await publish(self.js, self.names.ingest_requested, request)
            result = await asyncio.wait_for(outcome, 60)
        finally:
            for sub in subs:
                await sub.unsubscribe()
        if isinstance(result, IngestFailed):
            raise AssertionError(f"ingest failed: {result.reason}")
        assert isinstance(result, CandlesIngested)
        return result

    async def submit(self, request: TrainingRequested) -> None:
        await publish(self.js, self.names.training_requested, request)

    async def job(self, job_id: str) -> JobView | None:
        reply = await self.nc.request(
            self.names.get_job, GetJob(job_id=job_id).to_bytes(), timeout=10
        )
        return JobReply.from_bytes(reply.data).job

    async def wait_job(
        self,
        job_id: str,
        *,
        statuses: tuple[str, ...] = tuple(TERMINAL_STATUSES),
        within: float = 120,
    ) -> JobView:
        async def probe() -> JobView | None:
            try:
                return await self.job(job_id)
            except (TimeoutError, OSError):
                return None  # a trainer restarting; ask again
            except Exception as exc:
                if "no responders" not in str(exc).lower() and "timeout" not in str(exc).lower():
                    raise
                return None

        view = await wait_until(
            probe,
            within=within,
            message=f"job {job_id} in {statuses}",
            until=lambda v: v is not None and v.status in statuses,
        )
        assert view is not None
        return view

    async def wait_trials_done(self, job_id: str, at_least: int, within: float = 60) -> JobView:
        view = await wait_until(
            lambda: self.job(job_id),
            within=within,
            interval=0.02,
            message=f"job {job_id} with {at_least} trials done",
            until=lambda v: v is not None and v.trials_done >= at_least,
        )
        assert view is not None
        return view

    async def trials(self, job_id: str) -> list[TrialView]:
        out: list[TrialView] = []
        while True:
            reply = await self.nc.request(
                self.names.list_trials,
                ListTrials(job_id=job_id, limit=250, offset=len(out)).to_bytes(),
                timeout=10,
            )
            page = TrialsReply.from_bytes(reply.data)
            out.extend(page.trials)
            if len(out) >= page.total or not page.trials:
                return out

    async def config_for_job(self, job_id: str, within: float = 30) -> ConfigView:
        async def probe() -> ConfigView | None:
            reply = await self.nc.request(
                self.names.get_config, GetConfig(job_id=job_id).to_bytes(), timeout=10
            )
            return ConfigReply.from_bytes(reply.data).config

        config = await wait_until(probe, within=within, message=f"a configuration for job {job_id}")
        assert config is not None
        return config


def training_request(**fields: object) -> TrainingRequested:
    """A job on the BTC dataset with a fresh id; `fields` override the defaults."""
    defaults: dict[str, object] = {
        "job_id": f"job-{uuid.uuid4().hex[:12]}",
        "dataset": BTC,
        "lookback_candles": 5000,
        "optimizer": "random",
        "n_iterations": 40,
        "seed": 12345,
        "batch_size": 8,
    }
    return TrainingRequested.model_validate({**defaults, **fields})


def outcome(trials: list[TrialView]) -> list[tuple[Any, ...]]:
    """What must be identical between two runs of one request: not timings or replicas."""
    return [(t.number, t.params, t.state, t.value, t.metrics, t.fingerprint) for t in trials]


async def summary_of_up(up: asyncio.subprocess.Process, within: float) -> str:
    """What `tradepulse up` prints until its summary; kills it if it gets no further."""
    assert up.stdout is not None
    out: list[str] = []
    try:
        async with asyncio.timeout(within):
            while not out or "stops everything" not in out[-1]:
                line = await up.stdout.readline()
                if not line:
                    _, err = await up.communicate()
                    raise AssertionError(f"up exited early: {''.join(out)} {err.decode()}")
                out.append(line.decode())
    except BaseException:
        if up.returncode is None:
            up.kill()
            await up.wait()
        raise
    return "".join(out)
