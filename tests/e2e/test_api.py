"""The HTTP API end to end: the gateway process, the real services, NATS and PostgreSQL,
driven with httpx the way the predecessor's users drive it with curl."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.flows import excerpt
from tests.support.bus import wait_drained
from tests.support.polling import wait_until
from tradepulse.common.bus import connect

from .conftest import (
    SharedSystem,
    all_trials,
    running_gateway,
    wait_job,
)

TRADEPULSE = Path(sys.executable).parent / "tradepulse"


def outcome(trials: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must be identical between two runs of one request: not timings or replicas."""
    return [
        (t["number"], t["params"], t["state"], t["value"], t["metrics"], t["fingerprint"])
        for t in trials
    ]


async def start(client: httpx.AsyncClient, payload: dict[str, Any]) -> str:
    reply = await client.post("/api/v2/training/start", json=payload)
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["status"] == "queued"
    assert reply.headers["location"] == f"/api/v2/training/job/{body['job_id']}"
    job_id: str = body["job_id"]
    return job_id


async def config_of(client: httpx.AsyncClient, job_id: str, within: float = 30) -> dict[str, Any]:
    """The job's configuration, once the registry has made it (GET job shows its id)."""

    async def config_id() -> str | None:
        job = (await client.get(f"/api/v2/training/job/{job_id}")).json()
        made: str | None = job["config_id"]
        return made

    made = await wait_until(config_id, within=within, message=f"a configuration for {job_id}")
    reply = await client.get(f"/api/v2/configs/{made}")
    assert reply.status_code == 200, reply.text
    config: dict[str, Any] = reply.json()
    return config


async def sse_events(
    client: httpx.AsyncClient, job_id: str, within: float = 60
) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the job's stream, until the server ends it."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with (
        asyncio.timeout(within),
        client.stream("GET", f"/api/v2/training/job/{job_id}/events") as reply,
    ):
        assert reply.status_code == 200, await reply.aread()
        assert reply.headers["content-type"].startswith("text/event-stream")
        name, data = "", ""
        async for line in reply.aiter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
            elif line == "" and name:
                events.append((name, json.loads(data)))
                name, data = "", ""
    return events


async def test_the_predecessors_payloads_reproduce_and_match_the_cli_backtest(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 6_000, tmp_path / "btc_5m.csv")
    env, gateway = shared_system.env, shared_system.gateway
    async with gateway.client() as client:
        uploaded = await shared_system.upload(client, data)
        assert uploaded["dataset"]["rows"] == 6_000
        assert uploaded["dataset"]["exchange"] == "binanceus"
        # Another gateway replica, which did not send the import, knows its outcome too.
        async with (
            running_gateway(tmp_path, env.names, env.nats_url) as other,
            other.client() as elsewhere,
        ):
            seen = await elsewhere.get(f"/api/v2/data/ingest/{uploaded['request_id']}")
            assert seen.status_code == 200, seen.text
            assert seen.json() == uploaded
            unknown = await elsewhere.get("/api/v2/data/ingest/ing_0123456789abcdef")
            assert unknown.status_code == 404, unknown.text

        runs = {
            label: await start(client, shared_system.payload(seed=seed))
            for label, seed in (("a", 12345), ("b", 12345), ("c", 123))
        }
        jobs = {label: await wait_job(client, job_id) for label, job_id in runs.items()}
        for job in jobs.values():
            assert job["status"] == "completed", job["error"]
            assert job["progress"] == 100.0
            assert job["trials_done"] == 20
            assert job["regime"] == "sideways"
            assert job["best"] is not None
            assert job["created_at"] <= job["started_at"] <= job["finished_at"]
        trials = {label: await all_trials(client, job_id) for label, job_id in runs.items()}
        assert [t["number"] for t in trials["a"]] == list(range(20))
        assert outcome(trials["a"]) == outcome(trials["b"])
        assert outcome(trials["a"]) != outcome(trials["c"])
        assert jobs["a"]["best"] == jobs["b"]["best"]

        configs = {label: await config_of(client, job_id) for label, job_id in runs.items()}
        assert configs["a"]["fingerprint"] == configs["b"]["fingerprint"]
        assert configs["a"]["metrics"] == configs["b"]["metrics"]
        assert configs["a"]["config_id"] != configs["b"]["config_id"]
        assert configs["a"]["lineage"]["seed"] == 12345
        assert configs["a"]["history"][0]["from_status"] is None

        listed = await client.get(
            "/api/v2/configs",
            params={
                "symbol": shared_system.symbol,
                "strategy": "LIQUIDITY_SWEEP",
                "sort": "sharpe_ratio",
            },
        )
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert page["total"] == 3
        assert {c["config_id"] for c in page["items"]} == {c["config_id"] for c in configs.values()}
        sharpes = [c["metrics"]["sharpe_ratio"] for c in page["items"]]
        assert sharpes == sorted(sharpes, reverse=True)
        ascending = await client.get(
            "/api/v2/configs",
            params={"symbol": shared_system.symbol, "sort": "created_at", "order": "asc"},
        )
        created = [c["created_at"] for c in ascending.json()["items"]]
        assert len(created) == 3
        assert created == sorted(created)

        listed_jobs = (
            await client.get(
                "/api/v2/training/jobs",
                params={"status": "completed", "symbol": shared_system.symbol},
            )
        ).json()
        assert listed_jobs["total"] == 3
        assert {j["job_id"] for j in listed_jobs["jobs"]} == set(runs.values())
        assert all(j["config_id"] for j in listed_jobs["jobs"])

    config = configs["a"]
    cli = await asyncio.create_subprocess_exec(
        str(TRADEPULSE),
        "backtest",
        "--data",
        str(data),
        "--params",
        json.dumps(config["params"]),
        "--regime",
        "sideways",
        "--last",
        "1000",
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await cli.communicate()
    assert cli.returncode == 0
    backtest = json.loads(stdout)
    assert backtest["fingerprint"] == config["fingerprint"]
    assert backtest["metrics"] == config["metrics"]


async def test_live_progress_cancel_and_ensemble(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 4_000, tmp_path / "btc_5m.csv")
    env = shared_system.env
    async with shared_system.gateway.client() as client:
        await shared_system.upload(client, data)

        # Live progress: opened right after the 202, followed to the end of the stream.
        job_id = await start(
            client,
            shared_system.payload(n_iterations=1000, lookback_candles=3000, batch_size=16),
        )
        events = await sse_events(client, job_id)
        names = [name for name, _ in events]
        assert names[0] == "state"
        assert names[-1] == "completed"
        progress = [body["progress"] for name, body in events if name == "progress"]
        assert len(set(progress)) >= 3, events
        assert progress == sorted(progress), f"progress went backwards: {progress}"
        assert progress[-1] == 100.0
        assert "best" in names
        assert events[-1][1]["status"] == "completed"
        # One page of up to 1,000 trials, whatever the services' own page size.
        page = (
            await client.get(f"/api/v2/training/job/{job_id}/trials", params={"limit": 1000})
        ).json()
        assert page["total"] == 1000
        assert [t["number"] for t in page["trials"]] == list(range(1000))
        # A finished job's stream: its state and its end, at once.
        replay = await sse_events(client, job_id, within=10)
        assert [name for name, _ in replay] == ["state", "completed"]

        # Cancel a running job: cancelled within about a second, and its trials stop.
        long_job = await start(
            client,
            shared_system.payload(n_iterations=100_000, lookback_candles=3000, batch_size=16),
        )

        async def long_job_state() -> dict[str, Any]:
            state: dict[str, Any] = (await client.get(f"/api/v2/training/job/{long_job}")).json()
            return state

        await wait_until(
            long_job_state,
            within=60,
            interval=0.05,
            message="the long job running with 32 trials done",
            until=lambda job: job["status"] == "running" and job["trials_done"] >= 32,
        )
        sent = time.monotonic()
        reply = await client.post(f"/api/v2/training/job/{long_job}/cancel")
        took = time.monotonic() - sent
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"job_id": long_job, "status": "cancelled"}
        assert took < 1.5, f"cancel took {took:.2f} s"
        stored = (
            await client.get(f"/api/v2/training/job/{long_job}/trials", params={"limit": 1})
        ).json()["total"]
        # Once the trials queue is drained, whatever was sent before the cancel is stored or
        # dropped: the count read next is final.
        bus = await connect(env.nats_url, "test-drain")
        try:
            n = env.names
            await wait_drained(bus.jetstream(), [(n.trials_stream, n.trainer_trials_durable)])
        finally:
            await bus.close()
        later = (
            await client.get(f"/api/v2/training/job/{long_job}/trials", params={"limit": 1})
        ).json()["total"]
        assert later <= stored + 16, "trials must stop"
        again = await client.post(f"/api/v2/training/job/{long_job}/cancel")
        assert again.status_code == 200
        done = await client.post(f"/api/v2/training/job/{job_id}/cancel")
        assert done.status_code == 409, done.text

        # Ensemble: one job per seed, all run.
        reply = await client.post(
            "/api/v2/training/ensemble", json=shared_system.payload(seed=7, n_seeds=3)
        )
        assert reply.status_code == 202, reply.text
        ensemble = reply.json()
        assert ensemble["seeds"] == [7, 8, 9]
        assert len(set(ensemble["job_ids"])) == 3
        finished = [await wait_job(client, j) for j in ensemble["job_ids"]]
        assert [j["status"] for j in finished] == ["completed"] * 3
        assert [j["seed"] for j in finished] == [7, 8, 9]
        listed = (
            await client.get(
                "/api/v2/training/jobs",
                params={"status": "cancelled", "symbol": shared_system.symbol},
            )
        ).json()
        assert [j["job_id"] for j in listed["jobs"]] == [long_job]
