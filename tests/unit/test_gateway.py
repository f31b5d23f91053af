"""The gateway's own rules that need no server: settings and keys, authentication before
anything else, body limits, request normalisation, the OpenAPI document.

The app runs in-process (httpx's ASGI transport, no lifespan, so no NATS): what needs the
services answers 503 here; the end-to-end tests cover it with the real services.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import ValidationError

from tradepulse.common.contracts.base import INVALID_REQUEST, NOT_FOUND, UNAVAILABLE, ErrorReply
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import (
    OPTIMIZERS,
    PREDECESSOR_PAYLOAD,
    JobProgress,
    JobReply,
    JobsReply,
    JobView,
)
from tradepulse.gateway.app import create_app
from tradepulse.gateway.auth import key_hash
from tradepulse.gateway.backend import Backend
from tradepulse.gateway.errors import InvalidInputError, NotFoundError, UnavailableError
from tradepulse.gateway.fanout import LiveHub
from tradepulse.gateway.live import MISSING_POLLS, JobStream, open_stream
from tradepulse.gateway.paging import fetch_pages
from tradepulse.gateway.routes.training import list_jobs
from tradepulse.gateway.schemas.training import EnsembleBody, TrainingBody, queued_view
from tradepulse.gateway.settings import ConfigurationError, GatewaySettings
from tradepulse.gateway.tracking import RecentJobs
from tradepulse.quant import OBJECTIVES, REGIMES, SETTING_BOUNDS

KEY = "s3cret-key"
PREDECESSOR = PREDECESSOR_PAYLOAD


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> GatewaySettings:
    for name in ("TRADEPULSE_API_KEYS", "GATEWAY_OPEN_READS", "TP_ENV", "GATEWAY_MAX_BODY_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:9")  # nothing listens: no NATS here
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return GatewaySettings()


async def client_for(config: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(settings(monkeypatch, TRADEPULSE_API_KEYS=f"other, {KEY} ,")):
        yield c


def test_only_the_digests_of_the_keys_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    config = settings(monkeypatch, TRADEPULSE_API_KEYS=f"other,{KEY}")
    assert config.api_key_hashes == (key_hash("other"), key_hash(KEY))
    assert KEY not in repr(config)
    assert KEY not in config.model_dump_json()


@pytest.mark.parametrize("published", ["tradepulse-dev-key", "change-me"])
def test_production_refuses_a_key_published_in_the_repository(
    monkeypatch: pytest.MonkeyPatch, published: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"holds '{published}', a key published"):
        create_app(
            settings(monkeypatch, TP_ENV="production", TRADEPULSE_API_KEYS=f"{KEY},{published}")
        )
    create_app(settings(monkeypatch, TP_ENV="development", TRADEPULSE_API_KEYS=published))
    create_app(settings(monkeypatch, TP_ENV="production", TRADEPULSE_API_KEYS=KEY))


def test_production_without_keys_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="TRADEPULSE_API_KEYS"):
        create_app(settings(monkeypatch, TP_ENV="production"))
    env = {"TP_ENV": "production", "TRADEPULSE_API_KEYS": "", "LOG_JSON": "1", "PATH": "/usr/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "tradepulse.gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "no default key" in run.stderr
    assert "Traceback" not in run.stderr


async def test_without_keys_in_development_mutations_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async for c in client_for(settings(monkeypatch)):
        reply = await c.post(
            "/api/v2/training/start", json=PREDECESSOR, headers={"Authorization": "Bearer x"}
        )
        assert reply.status_code == 401
        assert "TRADEPULSE_API_KEYS" in reply.json()["detail"]
        assert (await c.get("/health")).status_code == 200


async def test_the_key_is_checked_before_the_body_is_read(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        reply = await client.post(
            "/api/v2/training/start",
            content=b"{not json" + b"x" * 2_000_000,
            headers={**headers, "content-type": "application/json"},
        )
        assert reply.status_code == 401, headers
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert reply.json()["request_id"] == reply.headers["x-request-id"]


async def test_reads_need_a_key_unless_open(monkeypatch: pytest.MonkeyPatch) -> None:
    async for c in client_for(settings(monkeypatch, TRADEPULSE_API_KEYS=KEY)):
        assert (await c.get("/api/v2/strategies")).status_code == 401
        ok = await c.get("/api/v2/strategies", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
    async for c in client_for(
        settings(monkeypatch, TRADEPULSE_API_KEYS=KEY, GATEWAY_OPEN_READS="true")
    ):
        assert (await c.get("/api/v2/strategies")).status_code == 200
        assert (await c.post("/api/v2/training/start", json=PREDECESSOR)).status_code == 401


async def test_oversized_bodies_get_413(monkeypatch: pytest.MonkeyPatch) -> None:
    async for c in client_for(
        settings(monkeypatch, TRADEPULSE_API_KEYS=KEY, GATEWAY_MAX_BODY_BYTES="1000")
    ):
        reply = await c.post(
            "/api/v2/training/start",
            json={**PREDECESSOR, "note": "x" * 2000},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert reply.status_code == 413
        assert "1000 bytes" in reply.json()["detail"]


async def test_without_nats_commands_answer_503_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.post(
        "/api/v2/training/start", json=PREDECESSOR, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert reply.status_code == 503
    assert reply.headers["retry-after"]
    assert (await client.get("/ready")).status_code == 503


async def test_strategies_list_the_search_space(client: httpx.AsyncClient) -> None:
    body = (
        await client.get("/api/v2/strategies", headers={"Authorization": f"Bearer {KEY}"})
    ).json()
    [sweep] = body["strategies"]
    assert sweep["name"] == "LIQUIDITY_SWEEP"
    lookback = next(p for p in sweep["params"] if p["name"] == "key_level_lookback")
    assert (lookback["type"], lookback["low"], lookback["high"], lookback["step"]) == (
        "int",
        50,
        300,
        50,
    )
    assert "cmaes" in body["optimizers"]
    assert "sharpe_ratio" in body["objectives"]


async def test_openapi_documents_the_bearer_key_and_every_route(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    start = spec["paths"]["/api/v2/training/start"]["post"]
    assert start["security"] == [{"HTTPBearer": []}]
    for path in (
        "/api/v2/training/jobs",
        "/api/v2/training/job/{job_id}/events",
        "/api/v2/training/ensemble",
        "/api/v2/configs/{config_id}",
        "/api/v2/data/upload",
        "/api/v2/data/coverage",
        "/api/v2/strategies",
        "/ready",
    ):
        assert path in spec["paths"], path
    assert (await client.get("/metrics")).text.count("tradepulse_gateway_http_requests_total")
    dashboard = await client.get("/")
    assert dashboard.status_code == 200
    assert dashboard.headers["content-type"].startswith("text/html")


async def test_the_openapi_document_shows_the_cores_bounds_and_words(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    settings_schema = schemas["BacktestSettingsBody"]["properties"]
    assert set(settings_schema) == set(SETTING_BOUNDS)
    for name, bound in SETTING_BOUNDS.items():
        low = "exclusiveMinimum" if bound.low_open else "minimum"
        high = "exclusiveMaximum" if bound.high_open else "maximum"
        assert (settings_schema[name][low], settings_schema[name][high]) == (bound.low, bound.high)
    body = schemas["TrainingBody"]["properties"]
    assert tuple(body["objective"]["enum"]) == OBJECTIVES
    assert tuple(body["regime"]["enum"]) == REGIMES
    assert tuple(body["optimizer"]["enum"]) == OPTIMIZERS


def test_the_predecessors_payload_is_accepted_and_names_are_normalised() -> None:
    body = TrainingBody.model_validate(
        {
            **PREDECESSOR,
            "exchange": "BinanceUS",
            "symbol": "btc/usdt",
            "strategy": "liquidity_sweep",
        }
    )
    request = body.to_request("job_1")
    assert request.dataset.exchange == "binanceus"
    assert request.dataset.symbol == "BTC/USDT"
    assert request.strategy == "LIQUIDITY_SWEEP"
    assert (request.seed, request.lookback_candles, request.regime) == (12345, 1000, "sideways")
    without_seed = {k: v for k, v in PREDECESSOR.items() if k != "seed"}
    assert TrainingBody.model_validate(without_seed).seed == 42
    ranged = TrainingBody.model_validate(
        {**without_seed, "lookback_candles": None, "start": "2018-01-01", "end": "2018-02-01"}
    ).to_request("job_2")
    assert (ranged.start_ms, ranged.end_ms) == (1514764800000, 1517443200000)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seed": "12345"}, "seed"),
        ({"seed": 1.0}, "seed"),
        ({"n_iterations": 100_001}, "n_iterations"),
        ({"timeframe": "5 minutes"}, "timeframe"),
        ({"exchange": "binance us"}, "exchange"),
        ({"strategy": "MOON"}, "strategy"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingBody.model_validate({**PREDECESSOR, **change})
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


# Every value the core refuses, one per setting and end: the bounds are the core's
# (tradepulse.quant.SETTING_BOUNDS); test_vocabulary checks the layers agree on all of them.
CORE_REFUSES = [
    ("initial_capital", 1e13),
    ("initial_capital", 0),
    ("fee_rate", 1.0),
    ("fee_rate", -0.001),
    ("slippage", 1),
    ("risk_per_trade", -1e-9),
    ("risk_per_trade", 1e12 * 1.0000001),
    ("max_leverage", 1e13),
    ("max_leverage", "3"),
    ("fee_rate", True),
]


@pytest.mark.parametrize(("name", "value"), CORE_REFUSES)
async def test_a_setting_the_core_refuses_is_a_422_naming_it_before_nats_is_asked(
    client: httpx.AsyncClient, name: str, value: object
) -> None:
    # Without NATS a valid job is a 503: a 422 here was decided before anything was sent.
    reply = await client.post(
        "/api/v2/training/start",
        json={**PREDECESSOR, "settings": {name: value}},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert reply.status_code == 422, reply.text
    assert [e["field"] for e in reply.json()["errors"]] == [f"settings.{name}"]


class _Replying:
    """A NATS connection whose every request is answered with `data`."""

    is_connected = True

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def request(self, subject: str, payload: bytes, **options: float) -> SimpleNamespace:
        return SimpleNamespace(data=self.data)


@pytest.mark.parametrize(
    ("data", "expected", "status"),
    [
        (
            ErrorReply(error="no such window", code=INVALID_REQUEST).to_bytes(),
            InvalidInputError,
            422,
        ),
        (ErrorReply(error="no job 'x'", code=NOT_FOUND).to_bytes(), NotFoundError, 404),
        (ErrorReply(error="database away", code=UNAVAILABLE).to_bytes(), UnavailableError, 503),
        (b"not a message", UnavailableError, 503),
    ],
)
async def test_a_services_error_keeps_its_kind_across_the_bus(
    monkeypatch: pytest.MonkeyPatch, data: bytes, expected: type[Exception], status: int
) -> None:
    backend: Backend = create_app(settings(monkeypatch)).state.gateway.backend
    backend.nc = cast(NatsClient, _Replying(data))
    with pytest.raises(expected) as caught:
        await backend.request("tp.rpc.x", JobReply(job=None), JobsReply, service="trainer")
    assert getattr(caught.value, "status_code", None) == status
    if status != 503:
        assert ErrorReply.from_bytes(data).error in str(caught.value)


def test_ensemble_seeds() -> None:
    assert EnsembleBody.model_validate({**PREDECESSOR, "n_seeds": 3}).seed_list() == [
        12345,
        12346,
        12347,
    ]
    listed = {k: v for k, v in PREDECESSOR.items() if k != "seed"}
    assert EnsembleBody.model_validate({**listed, "seeds": [5, 1]}).seed_list() == [5, 1]
    for bad in ({**PREDECESSOR, "seeds": [1, 2]}, {**listed, "seeds": [1, 1]}, listed):
        with pytest.raises(ValidationError):
            EnsembleBody.model_validate(bad)


async def test_pages_are_fetched_in_chunks_and_joined_in_order() -> None:
    asked: list[tuple[int, int]] = []

    async def fetch(offset: int, limit: int) -> tuple[int, list[int]]:
        asked.append((offset, limit))
        return 1_100, list(range(offset, min(offset + limit, 1_100)))

    total, items = await fetch_pages(fetch, 50, 1000, 250)
    assert (total, items) == (1_100, list(range(50, 1050)))
    assert sorted(asked) == [(50, 250), (300, 250), (550, 250), (800, 250)]
    asked.clear()
    total, items = await fetch_pages(fetch, 1_000, 1000, 250)
    assert (total, items) == (1_100, list(range(1000, 1100)))
    assert asked == [(1000, 250)]


class _Gone:
    """The gateway's view of a system in which no trainer knows the job (one handler's
    stand-in: the flows themselves are tested against real NATS in tests/e2e)."""

    def __init__(self) -> None:
        self.names = Names("tp")
        self.settings = SimpleNamespace(sse_poll_s=0.01)
        self.recent_jobs = RecentJobs(ttl_s=60)
        self.metrics = SimpleNamespace(
            live_streams=SimpleNamespace(inc=lambda: None, dec=lambda: None)
        )
        self.backend = self
        self.streams = LiveHub(self.names)

    async def request(self, subject: str, message: object, reply: type, service: str) -> object:
        return JobReply(job=None)


def _queued_job() -> JobView:
    request = TrainingBody.model_validate(PREDECESSOR).to_request("job_live_test")
    return queued_view(request, "2026-01-01T00:00:00Z")


async def test_a_live_stream_ends_once_no_trainer_knows_its_job() -> None:
    gw = _Gone()
    stream = JobStream(gw, "job_live_test", _queued_job())  # type: ignore[arg-type]
    events = [e async for e in stream.events()]
    assert b"event: state" in events[0]
    # The read right after subscribing is the first of the misses.
    assert events[1:] == [b": keep-alive\n\n"] * (MISSING_POLLS - 1)
    assert not gw.streams.listeners, "the stream stopped listening"


class _Running(_Gone):
    """Trainers that know the job as running at 10 %; counts their reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.view = _queued_job().model_copy(
            update={"status": "running", "progress": 10.0, "trials_done": 2}
        )

    async def request(self, subject: str, message: object, reply: type, service: str) -> object:
        self.reads += 1
        return JobReply(job=self.view)


async def test_streams_that_open_together_read_once_and_catch_up_with_the_last_progress() -> None:
    gw = _Running()
    first = await open_stream(gw, "job_live_test")  # type: ignore[arg-type]
    others = [await open_stream(gw, "job_live_test") for _ in range(9)]  # type: ignore[arg-type]
    assert gw.reads == 1, "one read for all the streams opened together"
    watching = gw.streams.listen("job_live_test")  # another stream, already open
    progress = JobProgress(
        job_id="job_live_test", status="running", progress=40.0, trials_done=8, n_iterations=20
    )
    await gw.streams._on_progress(
        cast(
            Msg,
            SimpleNamespace(
                subject=gw.names.job_progress("job_live_test"), data=progress.to_bytes()
            ),
        )
    )
    heads = []
    for stream in [first, *others]:
        events = stream.events()
        heads.append([await anext(events), await anext(events)])
        await events.aclose()
    assert gw.reads == 1, "the streams start from the read their opening made"
    for state, caught_up in heads:
        assert b"event: state" in state
        assert b'"progress":10.0' in state
        assert b"event: progress" in caught_up
        assert b'"progress":40.0' in caught_up
    assert all(head == heads[0] for head in heads), "the same bytes for every stream"
    gw.streams.leave("job_live_test", watching)
    assert not gw.streams.listeners
    assert not gw.streams.encoded
    assert not gw.streams.latest


class _SlowRegistry:
    """Trainers list completed jobs at once; the registry never answers in time."""

    def __init__(self, views: list[JobView]) -> None:
        self.names = Names("tp")
        self.config_ids: dict[str, str] = {}
        self.views = views
        self.backend = self

    async def request(self, subject: str, message: object, reply: type, service: str) -> object:
        if service == "trainer":
            return JobsReply(total=len(self.views), jobs=self.views)
        await asyncio.sleep(30)
        raise AssertionError("the list should not wait for this")


async def test_a_slow_registry_costs_the_job_list_its_config_ids_not_minutes() -> None:
    done = _queued_job().model_copy(update={"status": "completed", "progress": 100.0})
    views = [done.model_copy(update={"job_id": f"job_{i}"}) for i in range(40)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    page = await list_jobs(_SlowRegistry(views), None, limit=40)  # type: ignore[arg-type]
    # The budget is 2 s; without it, 40 lookups at 16 at a time would wait 3 x 30 s.
    assert loop.time() - started < 20
    assert [j.job_id for j in page.jobs] == [v.job_id for v in views]
    assert {j.config_id for j in page.jobs} == {None}
