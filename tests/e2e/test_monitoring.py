"""Prometheus and the dashboards against the live system.

The whole system runs (ingest, registry, a trainer, the gateway) and Debian's `prometheus`
scrapes every process's metrics port on loopback every second, with the shipped alert rules
loaded. After a small job, a failed import and a refused API key, every query of every panel of
every shipped dashboard is evaluated through Prometheus' HTTP API: each must return data, and
the figures the dashboard shows must be what the API says.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import free_port, tail, upload_candles, wait_job
from tests.integration.conftest import Env
from tests.integration.flows import excerpt, running_system
from tests.integration.test_deploy_files import DASHBOARDS, DEPLOY
from tradepulse.common.contracts.training import PREDECESSOR_PAYLOAD

pytestmark = pytest.mark.integration

SCRAPE_S = 1
# What Grafana would put in the queries: $__rate_interval is at least 4 scrape intervals;
# $__range is the dashboard's time range, longer than this test's system has been up.
RATE_INTERVAL = "4s"
RANGE = "15m"
WITHIN_S = 40.0


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.geteuid() == 0:
            pytest.fail("prometheus is missing: run scripts/bootstrap (it installs Debian's)")
        pytest.skip(
            "prometheus is missing and this is not root: sudo apt-get install -y prometheus"
        )
    return found


class Prometheus:
    def __init__(self, url: str) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=10)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        reply = await self.client.get("/api/v1/query", params={"query": expr})
        assert reply.status_code == 200, f"{expr!r}: {reply.text}"
        result: list[dict[str, Any]] = reply.json()["data"]["result"]
        return result

    async def value(self, expr: str) -> float:
        result = await self.query(expr)
        assert len(result) == 1, f"{expr!r} gives {result}, not one value"
        return float(result[0]["value"][1])

    async def wait_for(self, expr: str, expected: float, within: float = WITHIN_S) -> None:
        """Until `expr` (one series) reads `expected`: gauges refresh every 10 s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen: object = None
        while loop.time() < deadline:
            result = await self.query(expr)
            if len(result) == 1 and float(result[0]["value"][1]) == expected:
                return
            seen = result
            await asyncio.sleep(0.5)
        raise AssertionError(f"{expr} is not {expected} after {within} s: {seen}")


@asynccontextmanager
async def running_prometheus(tmp: Path, targets: dict[str, list[str]]) -> AsyncIterator[Prometheus]:
    port = free_port()
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(DEPLOY / "prometheus" / "rules" / "*.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": addresses}]}
            for job, addresses in targets.items()
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            prometheus_binary(),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            assert process.returncode is None, tail(log)
            try:
                if (await prometheus.client.get("/-/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert asyncio.get_running_loop().time() < deadline, tail(log)
            await asyncio.sleep(0.2)
        yield prometheus
    finally:
        await prometheus.client.aclose()
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from walk(panel.get("panels", []))

    yield from walk(dashboard["panels"])


def as_query(expr: str) -> str:
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)


def panel_query(dashboard: dict[str, Any], title: str) -> str:
    (panel,) = [p for p in panels(dashboard) if p.get("title") == title]
    (target,) = panel["targets"]
    return as_query(target["expr"])


async def upload_failing(client: httpx.AsyncClient, path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        reply = await client.post(
            "/api/v2/data/upload",
            files={"file": (path.name, fh, "text/csv")},
            data={"exchange": "binanceus", "symbol": "ETH/USDT", "timeframe": "5m"},
        )
    # A file that fails while the gateway waits is answered 422 at once, else polled.
    assert reply.status_code in (200, 202, 422), reply.text
    outcome: dict[str, Any] = reply.json()["ingest"] if reply.status_code == 422 else reply.json()
    deadline = asyncio.get_running_loop().time() + 30
    while outcome["status"] == "pending":
        assert asyncio.get_running_loop().time() < deadline, outcome
        await asyncio.sleep(0.1)
        outcome = (await client.get(f"/api/v2/data/ingest/{outcome['request_id']}")).json()
    return outcome


async def test_every_dashboard_panel_has_data_that_agrees_with_the_api(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    key = secrets.token_urlsafe(24)
    port = free_port()
    gateway_env = {"GATEWAY_PORT": str(port), "TRADEPULSE_API_KEYS": key}
    async with running_system(
        tmp_path,
        env.names,
        trainers=1,
        nats_url=env.nats_url,
        database_url=env.database_url,
        services=("ingest", "registry", "trainer", "gateway"),
        environment={"gateway": gateway_env},
    ) as system:
        targets: dict[str, list[str]] = {}
        for proc in system.processes.values():
            assert proc.metrics_port, f"{proc.name} serves no metrics"
            targets.setdefault(proc.service, []).append(f"127.0.0.1:{proc.metrics_port}")
        assert set(targets) == {"ingest", "registry", "trainer", "gateway"}
        async with (
            running_prometheus(tmp_path, targets) as prometheus,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ) as api,
        ):
            await prometheus.wait_for("count(up == 1)", sum(map(len, targets.values())))
            # Counters that nothing has touched yet read 0, not "no data".
            failed_imports = 'sum(tradepulse_ingest_requests_total{outcome="failed"})'
            assert await prometheus.value(failed_imports) == 0

            # A small job, a failed import and a refused key.
            data = excerpt(shared_candles_path, 6_000, tmp_path / "btc_5m.csv")
            await upload_candles(api, data)
            payload = {**PREDECESSOR_PAYLOAD, "n_iterations": 20}
            started = await api.post("/api/v2/training/start", json=payload)
            assert started.status_code == 202, started.text
            job = await wait_job(api, started.json()["job_id"], within=60)
            assert job["status"] == "completed", job
            bad = tmp_path / "bad.csv"
            bad.write_text(data.read_text().splitlines()[0] + "\nnot,a,candle,at,all,x\n")
            failed = await upload_failing(api, bad)
            assert failed["status"] == "failed", failed
            refused = await api.get(
                "/api/v2/training/jobs", headers={"Authorization": "Bearer wrong-key"}
            )
            assert refused.status_code == 401, refused.text

            # What the API says, then the same figures from Prometheus.
            jobs = {
                status: (await api.get("/api/v2/training/jobs", params={"status": status})).json()[
                    "total"
                ]
                for status in ("queued", "running", "completed", "failed")
            }
            configs = (await api.get("/api/v2/configs")).json()["total"]
            assert jobs["completed"] == 1
            assert configs == 1
            (dashboard,) = [
                json.loads(p.read_text()) for p in DASHBOARDS if p.name == "tradepulse.json"
            ]
            # The trainer refreshes its job gauge every 10 s.
            await prometheus.wait_for('max(tradepulse_jobs{status="completed"})', jobs["completed"])
            assert await prometheus.value(panel_query(dashboard, "Jobs running")) == jobs["running"]
            assert await prometheus.value(panel_query(dashboard, "Jobs queued")) == jobs["queued"]
            assert await prometheus.value('max(tradepulse_jobs{status="failed"})') == jobs["failed"]
            await prometheus.wait_for(failed_imports, 1)
            await prometheus.wait_for("sum(tradepulse_gateway_auth_failures_total)", 1)
            in_range = panel_query(dashboard, "Configurations created in range")
            created = await prometheus.query(in_range)
            assert round(sum(float(s["value"][1]) for s in created)) == configs, created
            auth = await prometheus.value(panel_query(dashboard, "Auth failures in range"))
            assert round(auth) == 1
            assert await prometheus.value(panel_query(dashboard, "Trainer replicas")) == 1

            # Every panel query of every dashboard returns data.
            empty = []
            for path in DASHBOARDS:
                for panel in panels(json.loads(path.read_text())):
                    for target in panel.get("targets", []):
                        result = await prometheus.query(as_query(target["expr"]))
                        if not result:
                            empty.append(f"{path.name}: {panel['title']}: {target['expr']}")
            assert not empty, "no data:\n" + "\n".join(empty)

            # The rules load and evaluate; on a healthy system none fires.
            rules = (await prometheus.client.get("/api/v1/rules")).json()["data"]["groups"]
            assert {g["name"] for g in rules} == {"tradepulse.recording", "tradepulse.alerts"}
            for group in rules:
                for rule in group["rules"]:
                    assert rule["health"] == "ok", rule
            firing = await prometheus.query('ALERTS{alertstate="firing"}')
            assert firing == [], firing
