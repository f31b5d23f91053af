"""End-to-end fixtures: the gateway as a real uvicorn process beside the real services, called
over HTTP exactly as a user does.

The NATS namespace and database fixtures are the integration suite's (each test its own).
Tests that neither kill nor reconfigure a process share one running system per pytest worker
instead (`shared_system`): starting one costs seconds of imports and migrations in five
processes, which a dozen tests would pay again each. They keep apart by market: each gets a
symbol of its own, so that what it uploads, trains and lists is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import NATS_URL, Env, database, env, names, new_database, new_names
from tests.integration.flows import running_system
from tests.support.held import held
from tests.support.polling import wait_until
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import PREDECESSOR_PAYLOAD, TERMINAL_STATUSES

__all__ = ["database", "env", "names"]

READY_WITHIN_S = 60.0
STOP_WITHIN_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class RunningGateway:
    url: str
    key: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self, *, authorized: bool = True, timeout: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers=self.auth if authorized else {}, timeout=timeout
        )

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


@asynccontextmanager
async def running_gateway(
    tmp: Path, names: Names, nats_url: str, extra_env: Mapping[str, str] | None = None
) -> AsyncIterator[RunningGateway]:
    """`python -m tradepulse.gateway` on a free port; yields once it is ready (NATS and every
    service answering), stops it with SIGTERM afterwards."""
    port = free_port()
    key = secrets.token_urlsafe(24)
    log_path = tmp / f"gateway-{port}.log"
    environ = {
        **os.environ,
        "NATS_URL": nats_url,
        "TP_NAMESPACE": names.prefix,
        "TRADEPULSE_API_KEYS": f"{secrets.token_urlsafe(24)},{key}",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "TP_REPLICA": "gateway-test",
        "METRICS_PORT": "0",
        "LOG_JSON": "1",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tradepulse.gateway",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=environ,
        )
    gateway = RunningGateway(f"http://127.0.0.1:{port}", key, process, log_path)
    try:
        await wait_ready(gateway)
        yield gateway
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_WITHIN_S)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_ready(gateway: RunningGateway, within: float = READY_WITHIN_S) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:

        async def readiness() -> str:
            """'ready', or what the gateway answered instead."""
            if gateway.process.returncode is not None:
                raise AssertionError(
                    f"the gateway exited with {gateway.process.returncode}:\n{tail(gateway.log_path)}"
                )
            try:
                reply = await client.get("/ready")
            except httpx.TransportError as exc:
                return repr(exc)
            return "ready" if reply.status_code == 200 else reply.text

        await wait_until(
            readiness, within=within, message="the gateway ready", until=lambda r: r == "ready"
        )


async def upload_candles(
    client: httpx.AsyncClient,
    path: Path,
    *,
    exchange: str = "binanceus",
    symbol: str = "BTC/USDT",
    timeframe: str = "5m",
) -> dict[str, Any]:
    """Upload a candle file as a user does; returns the import's outcome once it is known."""
    with path.open("rb") as fh:
        reply = await client.post(
            "/api/v2/data/upload",
            files={"file": (path.name, fh, "text/csv")},
            data={"exchange": exchange, "symbol": symbol, "timeframe": timeframe},
        )
    assert reply.status_code in (200, 202), reply.text
    first: dict[str, Any] = reply.json()

    async def poll() -> dict[str, Any]:
        polled = await client.get(f"/api/v2/data/ingest/{first['request_id']}")
        assert polled.status_code == 200, polled.text
        answer: dict[str, Any] = polled.json()
        return answer

    outcome = first
    if outcome["status"] == "pending":
        outcome = await wait_until(
            poll,
            within=60,
            message="the import's outcome",
            until=lambda o: o["status"] != "pending",
        )
    assert outcome["status"] == "succeeded", outcome
    return outcome


async def wait_job(
    client: httpx.AsyncClient,
    job_id: str,
    statuses: tuple[str, ...] = tuple(TERMINAL_STATUSES),
    within: float = 120,
) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        reply = await client.get(f"/api/v2/training/job/{job_id}")
        assert reply.status_code == 200, reply.text
        job: dict[str, Any] = reply.json()
        return job

    return await wait_until(
        poll,
        within=within,
        message=f"job {job_id} in {statuses}",
        until=lambda job: job["status"] in statuses,
    )


async def all_trials(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = []
    while True:
        reply = await client.get(
            f"/api/v2/training/job/{job_id}/trials", params={"limit": 1000, "offset": len(trials)}
        )
        assert reply.status_code == 200, reply.text
        page = reply.json()
        trials.extend(page["trials"])
        if len(trials) >= page["total"] or not page["trials"]:
            return trials


# One system per worker, shared ------------------------------------------------------------------

SHARED_START_WITHIN_S = 300.0
# Short ack waits and leases, as the tests that restart nothing but cancel jobs want them.
SHARED_TRAINER_ENV = {
    "TRAINER_JOB_ACK_WAIT": "3",
    "TRAINER_TRIAL_ACK_WAIT": "3",
    "TRAINER_LEASE_SECONDS": "4",
}


@dataclass(frozen=True)
class SharedStack:
    """Ingest, registry, two trainers and a gateway in a namespace and database of their own."""

    env: Env
    gateway: RunningGateway


@asynccontextmanager
async def _stack(data_dir: Path) -> AsyncIterator[SharedStack]:
    async with (
        new_names() as names,
        new_database() as database_url,
        running_system(
            data_dir,
            names,
            trainers=2,
            nats_url=NATS_URL,
            database_url=database_url,
            environment={"trainer": SHARED_TRAINER_ENV},
        ),
        running_gateway(data_dir, names, NATS_URL) as gateway,
    ):
        yield SharedStack(Env(names, NATS_URL, database_url), gateway)


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack]:
    """Started on first use in this worker, stopped at the end of its session (held in a loop
    of its own: tests/support/held.py)."""
    data_dir = tmp_path_factory.mktemp("shared-system")
    with held(lambda: _stack(data_dir), within=SHARED_START_WITHIN_S, name="shared-system") as s:
        yield s


@dataclass(frozen=True)
class SharedSystem:
    """The worker's shared system as one test sees it: its own market on it."""

    env: Env
    gateway: RunningGateway
    symbol: str

    @property
    def market(self) -> dict[str, str]:
        return {"exchange": "binanceus", "symbol": self.symbol, "timeframe": "5m"}

    def payload(self, **changes: Any) -> dict[str, Any]:
        """The predecessor's job on this test's market; `changes` override its fields."""
        return {**PREDECESSOR_PAYLOAD, "symbol": self.symbol, **changes}

    async def upload(self, client: httpx.AsyncClient, path: Path) -> dict[str, Any]:
        return await upload_candles(client, path, symbol=self.symbol)


async def _active_jobs(client: httpx.AsyncClient) -> list[str]:
    """The ids of the jobs queued or running."""
    active = []
    for status in ("queued", "running"):
        reply = await client.get("/api/v2/training/jobs", params={"status": status, "limit": 1000})
        assert reply.status_code == 200, reply.text
        active += [job["job_id"] for job in reply.json()["jobs"]]
    return active


@pytest.fixture
async def shared_system(shared_stack: SharedStack) -> SharedSystem:
    """The shared system, every replica answering and no job of an earlier test queued or
    running (what a failed one left behind is cancelled), with a symbol no other test uses
    (as BASE/USDT: any market the API accepts)."""
    gateway = shared_stack.gateway
    await wait_ready(gateway)
    async with gateway.client() as client:
        for job_id in await _active_jobs(client):
            reply = await client.post(f"/api/v2/training/job/{job_id}/cancel")
            assert reply.status_code in (200, 202, 409), reply.text
        await wait_until(
            lambda: _active_jobs(client),
            within=120,
            message="the shared system idle (no job of an earlier test queued or running)",
            until=lambda active: not active,
        )
    symbol = f"T{uuid.uuid4().hex[:10].upper()}/USDT"
    return SharedSystem(shared_stack.env, gateway, symbol)
