"""The real system for the dashboard's scripts (screenshots, benchmark): its own NATS
namespace and database, the services, a gateway, and candles uploaded as a user does; all of
it removed afterwards. Outside pytest, with the integration suite's helpers."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import SHARED_CANDLES
from tests.e2e.conftest import RunningGateway, running_gateway, upload_candles, wait_job
from tests.integration.conftest import ADMIN_DSN, NATS_URL, _dsn_for
from tests.integration.flows import excerpt, running_system
from tradepulse.common.bus import connect, ensure_streams, stream_configs
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import PREDECESSOR_PAYLOAD


@dataclass
class Stack:
    gateway: RunningGateway
    client: httpx.AsyncClient

    async def job(self, **fields: Any) -> dict[str, Any]:
        """Start a job (the predecessor's payload with `fields`) and wait for its end."""
        reply = await self.client.post(
            "/api/v2/training/start", json={**PREDECESSOR_PAYLOAD, "regime": "any", **fields}
        )
        assert reply.status_code == 202, reply.text
        return await wait_job(self.client, reply.json()["job_id"], within=900)

    async def config_of(self, job_id: str) -> dict[str, Any]:
        for _ in range(600):
            job = (await self.client.get(f"/api/v2/training/job/{job_id}")).json()
            if job.get("config_id"):
                config: dict[str, Any] = (
                    await self.client.get(f"/api/v2/configs/{job['config_id']}")
                ).json()
                return config
            await asyncio.sleep(0.1)
        raise TimeoutError(f"job {job_id} got no configuration")


@asynccontextmanager
async def dashboard_stack(rows: int, trainers: int = 1) -> AsyncIterator[Stack]:
    """The system with the first `rows` candles of the shared BTC file uploaded."""
    names = Names(f"dash{uuid.uuid4().hex[:8]}")
    database = f"tp_dash_{uuid.uuid4().hex[:10]}"
    nc = await connect(NATS_URL, "dashboard-stack")
    js = nc.jetstream()
    await ensure_streams(js, names)
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    try:
        with tempfile.TemporaryDirectory(prefix="tp-dash-") as tmp_name:
            tmp = Path(tmp_name)
            data = excerpt(SHARED_CANDLES, rows, tmp / "btc_5m.csv")
            async with (
                running_system(
                    tmp,
                    names,
                    trainers=trainers,
                    nats_url=NATS_URL,
                    database_url=_dsn_for(database),
                ),
                running_gateway(tmp, names, NATS_URL) as gateway,
                gateway.client(timeout=120) as client,
            ):
                await upload_candles(client, data)
                yield Stack(gateway, client)
    finally:
        for stream in (c.name for c in stream_configs(names) if c.name is not None):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        for bucket in (names.candles_bucket, names.uploads_bucket):
            with contextlib.suppress(Exception):
                await js.delete_object_store(bucket)
        await nc.close()
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
