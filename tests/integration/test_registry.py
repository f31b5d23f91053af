"""The registry against the real NATS and PostgreSQL: the service runs as a subprocess.

JobCompleted events go in on the events stream; configurations come out through GetConfig /
ListConfigs and ConfigPromoted events on the same stream. Every outcome is polled against a
deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from tests.support.polling import wait_until
from tradepulse.common.bus import connect, publish
from tradepulse.common.contracts.base import INVALID_REQUEST, ErrorReply, Message
from tradepulse.common.contracts.market import DatasetKey
from tradepulse.common.contracts.registry import (
    ConfigPromoted,
    ConfigReply,
    ConfigsReply,
    ConfigView,
    GetConfig,
    ListConfigs,
)
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import (
    BacktestSettingsModel,
    DataWindow,
    JobCompleted,
    ValidationReport,
)
from tradepulse.common.db import apply_migrations, create_pool
from tradepulse.registry.handlers import Deps, record_job
from tradepulse.registry.lifecycle import Rules
from tradepulse.registry.metrics import RegistryMetrics
from tradepulse.registry.outbox import Outbox
from tradepulse.registry.repository import Repository

from .conftest import NATS_URL, Env

pytestmark = pytest.mark.integration

R = TypeVar("R", bound=Message)

FIRST_MS = 1_640_995_200_000  # 2022-01-01T00:00:00Z
FIVE_MINUTES_MS = 300_000
# Floats that a careless store loses: a sign, a type, a subnormal, a repeating fraction.
AWKWARD = {"neg_zero": -0.0, "big": 1e16, "tiny": 5e-324, "third": 1 / 3, "tenth": 0.1}


def job_completed(
    job_id: str,
    *,
    trades: int,
    sharpe: float | None,
    net_profit: float,
    symbol: str = "BTC/USDT",
    strategy: str = "LIQUIDITY_SWEEP",
) -> JobCompleted:
    """A JobCompleted as the trainer sends it, with the spec's metrics of the best trial."""
    content_hash = hashlib.sha256(f"{symbol}-candles".encode()).hexdigest()
    return JobCompleted(
        message_id=f"{job_id}.completed",
        job_id=job_id,
        strategy=strategy,
        dataset=DatasetKey(exchange="binance", symbol=symbol, timeframe="5m"),
        regime="any",
        optimizer="bayesian",
        seed=12345,
        objective="sharpe_ratio",
        n_iterations=40,
        best_trial=27,
        best_value=sharpe if sharpe is not None else 0.0,
        params={
            "key_level_lookback": 150,
            "min_level_touches": 3,
            "pierce_depth": 0.0021739130434782608,
            "volume_spike_threshold": 1.7000000000000002,
            "reversal_candles": 2,
            "min_distance_from_level": 0.0,
            "atr_multiplier_sl": 1.5,
            "risk_reward_ratio": 2.333333333333333,
            "max_holding_periods": 75,
        },
        metrics={
            "net_profit": net_profit,
            "net_profit_pct": net_profit / 100.0,
            "total_trades": trades,
            "long_trades": trades // 2,
            "short_trades": trades - trades // 2,
            "win_rate": 0.5416666666666666,
            "gross_win_rate": 0.5833333333333334,
            "gross_profit": 2104.7713022410337,
            "gross_loss": -904.2713022410337,
            "profit_factor": None,
            "avg_win": 161.9054847877718,
            "avg_loss": -82.20648202191215,
            "expectancy": 25.010416666666668,
            "largest_win": 402.1180340872681,
            "largest_loss": -151.4,
            "max_consecutive_losses": 4,
            "max_drawdown_pct": -6.283185307179586,
            "sharpe_ratio": sharpe,
            "sortino_ratio": 2.718281828459045,
            "cagr_pct": 14.142135623730951,
            "calmar_ratio": None,
            "exposure_pct": 37.5,
            "avg_holding_bars": 41.291666666666664,
            **AWKWARD,
        },
        fingerprint=hashlib.sha256(f"{job_id}-trades".encode()).hexdigest(),
        window=DataWindow(
            snapshot=f"binance/{symbol.replace('/', '-')}/5m/{content_hash[:16]}",
            content_hash=content_hash,
            begin=0,
            stop=6000,
            trade_from=300,
            first_ms=FIRST_MS,
            last_ms=FIRST_MS + 5999 * FIVE_MINUTES_MS,
        ),
        settings=BacktestSettingsModel(fee_rate=0.00075, slippage=0.0005),
        sampler="TPESampler",
        sampler_version="optuna-5.0.0",
        batch_size=8,
        code_version="0.1.0+g197867d",
    )


def exact(values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Values with their types and reprs: -0.0 != 0.0 and 1e16 != 10**16 here."""
    return [(k, type(v).__name__, repr(v)) for k, v in values.items()]


@dataclass
class Client:
    """The test's side of the bus: publish events, ask the registry, read its events."""

    nc: NatsClient
    js: JetStreamContext
    names: Names

    async def ask(self, subject: str, body: bytes) -> bytes:
        reply = await self.nc.request(subject, body, timeout=5.0)
        return reply.data

    async def get(self, **query: str) -> ConfigReply:
        return ConfigReply.from_bytes(
            await self.ask(self.names.get_config, GetConfig(**query).to_bytes())
        )

    async def config(self, job_id: str) -> ConfigView | None:
        return (await self.get(job_id=job_id)).config

    async def configs(self, **query: Any) -> ConfigsReply:
        return ConfigsReply.from_bytes(
            await self.ask(self.names.list_configs, ListConfigs(**query).to_bytes())
        )

    async def job_ids(self, **query: Any) -> list[str]:
        return [c.job_id for c in (await self.configs(**query)).items]

    async def publish_job(self, event: JobCompleted) -> int:
        ack = await publish(self.js, self.names.job_completed, event)
        assert not ack.duplicate, "the test means a new stream message, not a JetStream repeat"
        return int(ack.seq)

    async def promotions(self) -> list[tuple[str | None, ConfigPromoted]]:
        """Every ConfigPromoted on the events stream, with its Nats-Msg-Id."""
        info = await self.js.stream_info(
            self.names.events_stream, subjects_filter=self.names.config_promoted
        )
        count = (info.state.subjects or {}).get(self.names.config_promoted, 0)
        found: list[tuple[str | None, ConfigPromoted]] = []
        if count == 0:
            return found
        sub = await self.js.pull_subscribe(
            self.names.config_promoted, stream=self.names.events_stream
        )
        try:
            while len(found) < count:
                for m in await sub.fetch(count - len(found), timeout=5.0):
                    found.append(
                        ((m.headers or {}).get("Nats-Msg-Id"), ConfigPromoted.from_bytes(m.data))
                    )
                    await m.ack()
        finally:
            await sub.unsubscribe()
        return found

    async def jobs_consumed_through(self, seq: int) -> bool:
        """The registry's durable consumer has delivered and settled every message up to seq."""
        info = await self.js.consumer_info(
            self.names.events_stream, self.names.registry_jobs_durable
        )
        return bool(
            info.delivered.stream_seq >= seq and info.num_pending == 0 and info.num_ack_pending == 0
        )


@asynccontextmanager
async def client(names: Names) -> AsyncIterator[Client]:
    nc = await connect(NATS_URL, "registry-test")
    try:
        yield Client(nc=nc, js=nc.jetstream(), names=names)
    finally:
        await nc.close()


def assert_healthy_log(text: str) -> None:
    """A healthy run, idle or busy, logs no error and no traceback."""
    for line in text.splitlines():
        entry = json.loads(line)
        assert entry["level"] in ("info", "warning"), line
        assert "exception" not in entry, line


@asynccontextmanager
async def running_registry(env: Env, log_path: Path) -> AsyncIterator[Client]:
    """The service as a subprocess, answering pings; stopped with SIGTERM, which must exit 0."""
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tradepulse.registry",
            env=env.as_environ(REGISTRY_OUTBOX_INTERVAL_S="0.5", TP_REPLICA="registry-1"),
            stdout=log,
            stderr=log,
        )
        try:
            async with client(env.names) as c:

                async def answers_ping() -> bool:
                    if proc.returncode is not None:
                        output = await asyncio.to_thread(log_path.read_text)
                        raise AssertionError(f"registry exited: {output}")
                    try:
                        return await c.ask(env.names.ping("registry"), b"") == b"registry-1"
                    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                        return False

                await wait_until(answers_ping, within=30.0, message="the registry to answer ping")
                yield c
            proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(proc.wait(), 20.0)
            assert returncode == 0, await asyncio.to_thread(log_path.read_text)
            assert_healthy_log(await asyncio.to_thread(log_path.read_text))
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_a_finished_job_becomes_a_configuration_and_is_announced(
    env: Env, tmp_path: Path
) -> None:
    few = job_completed("job-few-trades", trades=12, sharpe=2.5, net_profit=310.25)
    many = job_completed("job-many-trades", trades=45, sharpe=1.25, net_profit=1200.5)
    async with running_registry(env, tmp_path / "registry.log") as c:
        await c.publish_job(few)
        await c.publish_job(many)

        for event, status in ((few, "DISCOVERY"), (many, "CANDIDATE")):
            config = await wait_until(
                partial(c.config, event.job_id),
                within=15.0,
                message=f"{event.job_id}'s configuration",
            )
            assert (
                config.config_id == "cfg_" + hashlib.sha256(event.job_id.encode()).hexdigest()[:16]
            )
            assert config.status == status
            assert (config.strategy, config.dataset, config.regime) == (
                event.strategy,
                event.dataset,
                event.regime,
            )
            assert (config.optimizer, config.seed, config.objective) == (
                "bayesian",
                12345,
                "sharpe_ratio",
            )
            assert exact(config.params) == exact(event.params)
            assert exact(config.metrics) == exact(event.metrics)
            assert config.window == event.window
            assert config.settings == event.settings
            assert (
                config.fingerprint,
                config.sampler,
                config.sampler_version,
                config.code_version,
            ) == (
                event.fingerprint,
                "TPESampler",
                "optuna-5.0.0",
                "0.1.0+g197867d",
            )
            [change] = config.history
            assert (change.from_status, change.to_status) == (None, status)
            assert "total_trades" in change.reason
            assert (await c.get(config_id=config.config_id)).config == config

        async def both_announced() -> list[tuple[str | None, ConfigPromoted]]:
            found = await c.promotions()
            return found if len(found) == 2 else []

        announced = await wait_until(
            both_announced, within=15.0, message="two ConfigPromoted events"
        )
        by_job = {p.job_id: (msg_id, p) for msg_id, p in announced}
        for event, status in ((few, "DISCOVERY"), (many, "CANDIDATE")):
            msg_id, promoted = by_job[event.job_id]
            stored = await c.config(event.job_id)
            assert stored is not None
            assert msg_id == promoted.message_id == f"{stored.config_id}.1"
            assert (promoted.config_id, promoted.from_status, promoted.to_status) == (
                stored.config_id,
                None,
                status,
            )
            assert (promoted.reason, promoted.at) == (
                stored.history[0].reason,
                stored.history[0].at,
            )


async def test_the_same_job_twice_is_one_configuration_and_one_event(
    env: Env, tmp_path: Path
) -> None:
    event = job_completed("job-twice", trades=45, sharpe=1.25, net_profit=1200.5)
    again = event.model_copy(update={"message_id": "job-twice.completed.resent"})
    async with running_registry(env, tmp_path / "registry.log") as c:
        await c.publish_job(event)
        # A body no registry can read is dropped, not redelivered ahead of the real repeat.
        await c.js.publish(
            env.names.job_completed, b'{"job_id": "half"}', headers={"Nats-Msg-Id": "broken"}
        )
        last = await c.publish_job(again)
        await wait_until(
            lambda: c.jobs_consumed_through(last),
            within=15.0,
            message="the registry to settle all three",
        )

        listed = await c.configs()
        assert listed.total == 1
        assert [item.job_id for item in listed.items] == ["job-twice"]
        assert len(listed.items[0].history) == 1
        promotions = await c.promotions()
        assert [(p.job_id, p.to_status) for _, p in promotions] == [("job-twice", "CANDIDATE")]


async def test_list_filters_sorts_and_pages(env: Env, tmp_path: Path) -> None:
    events = [
        job_completed("a", trades=45, sharpe=1.5, net_profit=1200.5),
        job_completed("b", trades=12, sharpe=2.25, net_profit=300.0),
        job_completed("c", trades=80, sharpe=-0.2, net_profit=-150.25, symbol="ETH/USDT"),
        job_completed(
            "d", trades=30, sharpe=None, net_profit=10.0, symbol="ETH/USDT", strategy="OTHER"
        ),
        job_completed("e", trades=5, sharpe=0.75, net_profit=2500.0, strategy="OTHER"),
    ]
    async with running_registry(env, tmp_path / "registry.log") as c:
        for event in events:
            await c.publish_job(event)

        async def all_stored() -> bool:
            return (await c.configs()).total == len(events)

        await wait_until(all_stored, within=15.0, message="five configurations")

        assert sorted(await c.job_ids(status="CANDIDATE")) == ["a", "c", "d"]
        assert sorted(await c.job_ids(status="DISCOVERY")) == ["b", "e"]
        assert await c.job_ids(status="LIVE") == []
        assert sorted(await c.job_ids(min_sharpe=1.0)) == ["a", "b"]
        assert sorted(await c.job_ids(min_sharpe=-0.2)) == ["a", "b", "c", "e"]
        assert sorted(await c.job_ids(min_trades=30)) == ["a", "c", "d"]
        assert sorted(await c.job_ids(symbol="ETH/USDT")) == ["c", "d"]
        assert sorted(await c.job_ids(strategy="OTHER")) == ["d", "e"]
        assert await c.job_ids(status="CANDIDATE", symbol="BTC/USDT") == ["a"]

        # A configuration without the sort metric comes last either way.
        assert await c.job_ids(sort="sharpe_ratio") == ["b", "a", "e", "c", "d"]
        assert await c.job_ids(sort="sharpe_ratio", descending=False) == ["c", "e", "a", "b", "d"]
        assert await c.job_ids(sort="net_profit", descending=False) == ["c", "d", "b", "a", "e"]
        assert await c.job_ids(sort="total_trades") == ["c", "a", "d", "b", "e"]
        created = [item.created_at for item in (await c.configs(sort="created_at")).items]
        assert created == sorted(created, reverse=True)

        page = await c.configs(sort="sharpe_ratio", limit=2, offset=1)
        assert (page.total, [i.job_id for i in page.items]) == (5, ["a", "e"])
        assert all(len(i.history) == 1 for i in page.items)
        beyond = await c.configs(offset=10)
        assert (beyond.total, beyond.items) == (5, [])


def report(dsr: float | None, pbo: float | None) -> ValidationReport:
    """A job's validation report with the given headline figures (others fixed, awkward)."""
    return ValidationReport.model_validate(
        {
            "n_trials": 40,
            "sharpe_variance": 1 / 3 * 1e-4,
            "expected_max_sharpe": 4.123456789,
            "expected_max_sharpe_per_bar": 0.0127,
            "selected": {
                "trial": 27,
                "sharpe_per_bar": 0.1,
                "returns": 5699,
                "skew": -0.0,
                "kurtosis": None,
            },
            "psr": 0.99,
            "dsr": dsr,
            "pbo": None
            if pbo is None
            else {
                "blocks": 16,
                "sets": 12870,
                "pbo": pbo,
                "prob_oos_loss": 0.25,
                "degradation": {"slope": -0.5, "intercept": 5e-324, "r2": None},
                "logit_quantiles": {"5": -2.5, "25": -1.0, "50": 0.1, "75": 1.0, "95": 3.0},
                "logit_histogram": [0] * 12 + [12870] + [0] * 11,
            },
        }
    )


async def test_configs_keep_the_report_and_filter_and_sort_by_dsr_and_pbo(
    env: Env, tmp_path: Path
) -> None:
    reports = {
        "a": report(0.97, 0.2),
        "b": report(0.5, 0.6),
        "c": report(None, None),
        "d": None,
        "e": report(0.99, None),
    }
    async with running_registry(env, tmp_path / "registry.log") as c:
        for job_id, validation in reports.items():
            event = job_completed(job_id, trades=40, sharpe=1.0, net_profit=1.0)
            await c.publish_job(event.model_copy(update={"validation": validation}))

        async def all_stored() -> bool:
            return (await c.configs()).total == len(reports)

        await wait_until(all_stored, within=15.0, message="five configurations")
        for job_id, validation in reports.items():
            config = await c.config(job_id)
            assert config is not None
            assert config.validation == validation, job_id
        # A null figure passes no filter and sorts last either way.
        assert sorted(await c.job_ids(min_dsr=0.95)) == ["a", "e"]
        assert sorted(await c.job_ids(max_pbo=0.5)) == ["a"]
        assert await c.job_ids(min_dsr=0.95, max_pbo=0.5) == ["a"]
        assert (await c.job_ids(sort="dsr"))[:3] == ["e", "a", "b"]
        assert sorted((await c.job_ids(sort="dsr"))[3:]) == ["c", "d"]
        assert (await c.job_ids(sort="dsr", descending=False))[:3] == ["b", "a", "e"]
        assert (await c.job_ids(sort="pbo", descending=False))[:2] == ["a", "b"]


async def test_bad_requests_get_an_error_naming_the_problem(env: Env, tmp_path: Path) -> None:
    async with running_registry(env, tmp_path / "registry.log") as c:

        async def error(subject: str, body: bytes) -> dict[str, str]:
            reply = ErrorReply.from_bytes(await c.ask(subject, body))
            assert reply.code == INVALID_REQUEST, reply
            return {"error": reply.error, "code": reply.code}

        names = env.names
        assert (await error(names.list_configs, b"not json"))["code"] == "invalid_request"
        assert "limit" in (await error(names.list_configs, b'{"limit": 0}'))["error"]
        assert "sort" in (await error(names.list_configs, b'{"sort": "luck"}'))["error"]
        assert "colour" in (await error(names.list_configs, b'{"colour": "red"}'))["error"]
        assert "exactly one" in (await error(names.get_config, b"{}"))["error"]
        both = GetConfig(config_id="cfg_0", job_id="job").to_bytes()
        assert "exactly one" in (await error(names.get_config, both))["error"]
        newer = b'{"schema_version": 99, "job_id": "x"}'
        assert "schema_version 99" in (await error(names.get_config, newer))["error"]

        assert (await c.get(job_id="never-ran")).config is None
        empty = await c.configs()
        assert (empty.total, empty.items) == (0, [])


async def test_an_event_from_a_newer_producer_waits_instead_of_being_dropped(
    env: Env, tmp_path: Path
) -> None:
    body = json.loads(job_completed("job-v2", trades=45, sharpe=1.0, net_profit=1.0).to_bytes())
    body["schema_version"] = 2
    log_path = tmp_path / "registry.log"
    async with running_registry(env, log_path) as c:
        ack = await c.js.publish(
            env.names.job_completed, json.dumps(body).encode(), headers={"Nats-Msg-Id": "v2"}
        )

        async def handled() -> bool:
            return "message_newer_schema" in await asyncio.to_thread(log_path.read_text)

        await wait_until(handled, within=15.0, message="the registry to put the event back")
        info = await c.js.consumer_info(env.names.events_stream, env.names.registry_jobs_durable)
        # Held for redelivery (to an upgraded replica), neither acknowledged nor terminated.
        assert info.num_ack_pending == 1
        assert info.ack_floor.stream_seq < ack.seq
        assert await c.config("job-v2") is None


def failing_publish(after: int = 0) -> Callable[[str, ConfigPromoted], Awaitable[object]]:
    """A publisher that succeeds `after` times, then fails like NATS being away."""
    calls = 0

    async def publish(subject: str, message: ConfigPromoted) -> object:
        nonlocal calls
        calls += 1
        if calls > after:
            raise ConnectionError(f"could not publish to {subject}")
        return None

    return publish


@asynccontextmanager
async def registry_deps(
    dsn: str, names: Names, publish_fn: Callable[[str, ConfigPromoted], Awaitable[object]]
) -> AsyncIterator[Deps]:
    pool = await create_pool(dsn)
    try:
        await apply_migrations(pool, "registry", "tradepulse.registry.migrations")
        repo = Repository(pool)
        metrics = RegistryMetrics(CollectorRegistry())
        yield Deps(
            repo=repo,
            outbox=Outbox(repo, publish_fn, metrics),
            names=names,
            rules=Rules(),
            metrics=metrics,
        )
    finally:
        await pool.close()


async def unsent(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT message_id FROM registry.outbox WHERE sent_at IS NULL ORDER BY id"
        )
    finally:
        await conn.close()
    return [r["message_id"] for r in rows]


async def test_outbox_publishes_in_commit_order_and_resumes_after_a_failure(database: str) -> None:
    names = Names("tunit")
    jobs = [job_completed(f"job-{i}", trades=10 * i, sharpe=1.0, net_profit=1.0) for i in range(4)]
    async with registry_deps(database, names, failing_publish()) as deps:
        for job in jobs:
            assert await record_job(job, deps)
        assert not await record_job(jobs[0], deps)
    committed = await unsent(database)
    assert len(committed) == 4

    sent: list[tuple[str, ConfigPromoted]] = []
    flaky = failing_publish(after=1)

    async def record(subject: str, message: ConfigPromoted) -> object:
        await flaky(subject, message)
        sent.append((subject, message))
        return None

    async with registry_deps(database, names, record) as deps:
        with pytest.raises(ConnectionError):
            await deps.outbox.flush()
        assert await unsent(database) == committed[1:]

    async def reliable(subject: str, message: ConfigPromoted) -> object:
        sent.append((subject, message))
        return None

    async with registry_deps(database, names, reliable) as deps:
        assert await deps.outbox.flush() == 3
        assert await deps.outbox.flush() == 0
    assert await unsent(database) == []
    assert [m.message_id for _, m in sent] == committed
    assert {s for s, _ in sent} == {names.config_promoted}
    assert [(m.job_id, m.to_status) for _, m in sent] == [
        ("job-0", "DISCOVERY"),
        ("job-1", "DISCOVERY"),
        ("job-2", "DISCOVERY"),
        ("job-3", "CANDIDATE"),
    ]


async def test_the_service_publishes_at_start_what_a_crash_left_unsent(
    env: Env, tmp_path: Path
) -> None:
    event = job_completed("job-crashed", trades=3, sharpe=0.5, net_profit=5.0)
    # The first run committed the configuration, then died before its publish got through.
    async with registry_deps(env.database_url, env.names, failing_publish()) as deps:
        assert await record_job(event, deps)
    [pending] = await unsent(env.database_url)

    async with running_registry(env, tmp_path / "registry.log") as c:

        async def announced() -> list[tuple[str | None, ConfigPromoted]]:
            return await c.promotions()

        [(msg_id, promoted)] = await wait_until(
            announced, within=15.0, message="the replayed ConfigPromoted"
        )
        assert msg_id == pending == promoted.message_id
        assert (promoted.job_id, promoted.from_status, promoted.to_status) == (
            "job-crashed",
            None,
            "DISCOVERY",
        )

        async def marked_sent() -> bool:
            return await unsent(env.database_url) == []

        await wait_until(marked_sent, within=15.0, message="the outbox row to be marked sent")
        # The replay keeps the original event; the job's configuration is not made again.
        config = (await c.get(job_id="job-crashed")).config
        assert config is not None
        assert config.history[0].at == promoted.at
