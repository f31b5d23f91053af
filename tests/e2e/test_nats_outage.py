"""NATS goes down under the gateway: a job submitted then is refused with 503 and nothing is
stored; once NATS is back, new jobs are accepted and run.

The test owns its NATS server (the embedded one `tradepulse up` uses), so it decides how long
the outage lasts; a supervised server would be restarted within half a second.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from tests.integration.conftest import Env
from tests.integration.flows import excerpt, running_system
from tests.support.polling import wait_until
from tradepulse.cli.embedded import NatsServer, free_port
from tradepulse.common.contracts.training import PREDECESSOR_PAYLOAD

from .conftest import running_gateway, upload_candles, wait_job

START = "/api/v2/training/start"


async def wait_ready(client: httpx.AsyncClient, within: float = 60) -> None:
    async def ready() -> bool:
        return (await client.get("/ready")).status_code == 200

    await wait_until(ready, within=within, interval=0.2, message="the system back")


async def test_nats_down_means_503_and_nothing_stored_then_jobs_run_again(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 6_000, tmp_path / "btc_5m.csv")
    nats = NatsServer(
        tmp_path / "nats", free_port(set()), secrets.token_hex(12), tmp_path / "nats.log"
    )
    await nats.start()
    try:
        async with (
            running_system(
                tmp_path, env.names, trainers=1, nats_url=nats.url, database_url=env.database_url
            ),
            running_gateway(
                tmp_path, env.names, nats.url, {"GATEWAY_PUBLISH_TIMEOUT_S": "1"}
            ) as gateway,
            gateway.client() as client,
        ):
            await outage(client, nats, data)
    finally:
        await nats.stop()


async def outage(client: httpx.AsyncClient, nats: NatsServer, data: Path) -> None:
    await upload_candles(client, data)
    first = await client.post(START, json=PREDECESSOR_PAYLOAD)
    assert first.status_code == 202, first.text
    assert (await wait_job(client, first.json()["job_id"]))["status"] == "completed"

    await nats.stop()
    refused = await client.post(START, json={**PREDECESSOR_PAYLOAD, "seed": 1})
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) > 0
    body = refused.json()
    assert "NATS" in body["detail"]
    # Reads need NATS too, and say so rather than hang.
    read = await client.get(f"/api/v2/training/job/{first.json()['job_id']}")
    assert read.status_code in (503, 504), read.text
    assert (await client.get("/ready")).status_code == 503
    assert (await client.get("/health")).status_code == 200

    await nats.start()
    await wait_ready(client)
    jobs = (await client.get("/api/v2/training/jobs")).json()
    assert [j["job_id"] for j in jobs["jobs"]] == [first.json()["job_id"]], (
        "the refused job must not have been stored"
    )
    for job_id in body.get("unconfirmed_job_ids", []):
        assert (await client.get(f"/api/v2/training/job/{job_id}")).status_code == 404

    again = await client.post(START, json={**PREDECESSOR_PAYLOAD, "seed": 2})
    assert again.status_code == 202, again.text
    done = await wait_job(client, again.json()["job_id"], within=60)
    assert done["status"] == "completed", done["error"]
