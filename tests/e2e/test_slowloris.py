"""Slowloris (issue 11): half-open connections without a key must not starve keyed clients.

The gateway runs with a hard limit of 1,200 file descriptors (as a small container would);
2,000 connections that send half a request line and headers, and never the rest, are held
open on loopback. `/ready` and a keyed request must still answer, and every half-open
connection is closed by the gateway once GATEWAY_HEADER_TIMEOUT_S has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.integration.conftest import Env

from .conftest import STOP_WITHIN_S, RunningGateway, SharedSystem, free_port, wait_ready

HALF_OPEN = 2_000
FD_LIMIT = 1_200
HEADER_TIMEOUT_S = 2.0
ANSWER_WITHIN_S = 5.0
CLOSED_WITHIN_S = HEADER_TIMEOUT_S + 15.0
PARTIAL = b"GET /api/v2/training/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

LAUNCH = (
    "import resource, runpy; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT})); "
    "runpy.run_module('tradepulse.gateway', run_name='__main__')"
)


@asynccontextmanager
async def limited_gateway(tmp: Path, env: Env) -> AsyncIterator[RunningGateway]:
    port = free_port()
    key = secrets.token_urlsafe(24)
    log_path = tmp / f"gateway-{port}.log"
    environ = {
        **os.environ,
        "NATS_URL": env.nats_url,
        "TP_NAMESPACE": env.names.prefix,
        "TRADEPULSE_API_KEYS": key,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "METRICS_PORT": "0",
        "LOG_JSON": "1",
    }
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            LAUNCH,
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


async def half_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(PARTIAL)
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> None:
    """Returns once the gateway has closed the connection (EOF, or a reset)."""
    with contextlib.suppress(OSError):
        while await reader.read(1024):
            pass


async def test_half_open_connections_do_not_starve_keyed_clients(
    shared_system: SharedSystem, tmp_path: Path
) -> None:
    # The worker's shared services behind a gateway of the test's own, the one with the limit.
    async with limited_gateway(tmp_path, shared_system.env) as gateway:
        port = int(gateway.url.rsplit(":", 1)[1])
        connections = []
        try:
            for _ in range(HALF_OPEN):
                connections.append(await half_open(port))
            async with gateway.client(timeout=ANSWER_WITHIN_S) as client:
                ready = await client.get("/ready")
                assert ready.status_code == 200, ready.text
                keyed = await client.get("/api/v2/strategies")
                assert keyed.status_code == 200, keyed.text
            async with asyncio.timeout(CLOSED_WITHIN_S):
                await asyncio.gather(*(closed_by_server(r) for r, _ in connections))
            assert gateway.process.returncode is None, "the gateway is still running"
        finally:
            for _, writer in connections:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
