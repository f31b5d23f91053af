"""Operator status changes in the registry, against the real NATS and PostgreSQL.

Every change, allowed or refused, goes through the lifecycle's transition table; an allowed one
is one history entry (reason, actor) and one ConfigPromoted, published exactly once through
the outbox; two concurrent changes of one configuration never fork its history.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import get_args

import asyncpg
import pytest

from tests.support.polling import wait_until
from tradepulse.common.contracts.registry import (
    ChangeStatus,
    ChangeStatusReply,
    ConfigPromoted,
    ConfigStatus,
)
from tradepulse.common.contracts.subjects import Names
from tradepulse.registry.handlers import Deps, change_status, config_id_for, record_job
from tradepulse.registry.lifecycle import TRANSITIONS

from .conftest import Env
from .test_registry import (
    Client,
    failing_publish,
    job_completed,
    registry_deps,
    running_registry,
    unsent,
)

pytestmark = pytest.mark.integration

STATUSES: tuple[ConfigStatus, ...] = get_args(ConfigStatus)
# How to walk a configuration born CANDIDATE (or DISCOVERY) to each status.
ROUTES: dict[ConfigStatus, tuple[bool, tuple[ConfigStatus, ...]]] = {
    "DISCOVERY": (False, ()),
    "CANDIDATE": (True, ()),
    "PAPER": (True, ("PAPER",)),
    "LIVE": (True, ("PAPER", "LIVE")),
    "RETIRED": (True, ("RETIRED",)),
}


def ask(config_id: str, status: ConfigStatus, reason: str = "operator says so") -> ChangeStatus:
    return ChangeStatus(config_id=config_id, status=status, reason=reason, actor="alice")


async def sent(subject: str, message: ConfigPromoted) -> object:
    return None


async def born(deps: Deps, name: str, status: ConfigStatus) -> str:
    """A configuration walked to `status` through allowed changes; returns its id."""
    candidate, route = ROUTES[status]
    event = job_completed(name, trades=45 if candidate else 5, sharpe=1.0, net_profit=10.0)
    assert await record_job(event, deps)
    config_id = config_id_for(name)
    for step in route:
        reply = await change_status(ask(config_id, step, f"walk to {step}"), deps)
        assert reply.changed, reply
    return config_id


async def history(dsn: str, config_id: str) -> list[tuple[int, str | None, str, str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT seq, from_status, to_status, reason, actor FROM registry.status_history
               WHERE config_id = $1 ORDER BY seq""",
            config_id,
        )
    finally:
        await conn.close()
    return [(r["seq"], r["from_status"], r["to_status"], r["reason"], r["actor"]) for r in rows]


async def outbox(dsn: str, config_id: str) -> list[ConfigPromoted]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT payload FROM registry.outbox WHERE message_id LIKE $1 ORDER BY id",
            f"{config_id}.%",
        )
    finally:
        await conn.close()
    return [ConfigPromoted.from_bytes(r["payload"]) for r in rows]


async def test_every_transition_of_the_table_is_allowed_or_refused_as_it_says(
    database: str,
) -> None:
    async with registry_deps(database, Names("tunit"), sent) as deps:
        for source in STATUSES:
            for target in STATUSES:
                config_id = await born(deps, f"job-{source}-{target}", source)
                before = await history(database, config_id)
                reply = await change_status(ask(config_id, target, "table check"), deps)
                after = await history(database, config_id)
                if target == source:
                    assert (reply.changed, reply.refused, reply.status) == (False, None, source)
                    assert after == before
                elif target in TRANSITIONS[source]:
                    assert (reply.changed, reply.refused, reply.status) == (True, None, target)
                    assert reply.allowed == sorted(TRANSITIONS[target])
                    assert after == [
                        *before,
                        (len(before) + 1, source, target, "table check", "alice"),
                    ]
                else:
                    assert (reply.changed, reply.refused, reply.status) == (
                        False,
                        "forbidden",
                        source,
                    ), (source, target)
                    assert reply.allowed == sorted(TRANSITIONS[source])
                    assert f"from {source} to {target}" in reply.detail
                    assert after == before
                # One event per history entry, each with the entry's fields, none twice.
                events = await outbox(database, config_id)
                assert [(e.from_status, e.to_status, e.reason, e.actor) for e in events] == [
                    (h[1], h[2], h[3], h[4]) for h in after
                ]
                assert [e.message_id for e in events] == [f"{config_id}.{h[0]}" for h in after]


async def test_an_unknown_configuration_is_not_found(database: str) -> None:
    async with registry_deps(database, Names("tunit"), sent) as deps:
        reply = await change_status(ask("cfg_nope", "RETIRED"), deps)
    assert (reply.status, reply.changed, reply.refused, reply.allowed) == (
        None,
        False,
        "not_found",
        [],
    )


@asynccontextmanager
async def two_replicas(dsn: str) -> AsyncIterator[tuple[Deps, Deps]]:
    """Two registries' dependencies, each with its own pool, like two replicas."""
    names = Names("tunit")
    async with registry_deps(dsn, names, sent) as a, registry_deps(dsn, names, sent) as b:
        yield a, b


@pytest.mark.parametrize("round_", range(8))
async def test_two_concurrent_changes_one_wins_and_the_history_never_forks(
    database: str, round_: int
) -> None:
    async with two_replicas(database) as (a, b):
        config_id = await born(a, f"job-race-{round_}", "PAPER")
        # From PAPER both are allowed; after either one, the other is not: LIVE -> CANDIDATE
        # and CANDIDATE -> LIVE are both outside the table. Whichever order the database
        # takes them in, exactly one change happens.
        first, second = await asyncio.gather(
            change_status(ask(config_id, "LIVE", "go live"), a),
            change_status(ask(config_id, "CANDIDATE", "back to the bench"), b),
        )
    replies = [first, second]
    winners = [r for r in replies if r.changed]
    losers = [r for r in replies if not r.changed]
    assert len(winners) == 1
    assert len(losers) == 1
    [winner], [loser] = winners, losers
    assert loser.refused in {"forbidden", "conflict"}
    assert winner.status is not None
    assert loser.status == winner.status
    assert loser.allowed == sorted(TRANSITIONS[winner.status])
    entries = await history(database, config_id)
    assert [e[0] for e in entries] == [1, 2, 3]
    assert [(e[1], e[2]) for e in entries] == [
        (None, "CANDIDATE"),
        ("CANDIDATE", "PAPER"),
        ("PAPER", winner.status),
    ]
    assert len(await outbox(database, config_id)) == 3


async def test_a_change_on_a_stale_status_writes_nothing(database: str) -> None:
    async with registry_deps(database, Names("tunit"), sent) as deps:
        config_id = await born(deps, "job-stale", "PAPER")

        def never(seq: int, job_id: str) -> ConfigPromoted:
            raise AssertionError("no event may be made for a change that lost")

        # As if the status read was CANDIDATE, but PAPER committed since.
        lost = await deps.repo.apply_status_change(
            config_id, "CANDIDATE", "RETIRED", never, deps.names.config_promoted
        )
        assert lost is None
        assert await deps.repo.current_status(config_id) == "PAPER"
    assert len(await history(database, config_id)) == 2


async def test_the_same_target_twice_concurrently_is_one_change(database: str) -> None:
    async with two_replicas(database) as (a, b):
        config_id = await born(a, "job-twice-live", "PAPER")
        replies = await asyncio.gather(
            change_status(ask(config_id, "LIVE", "go live"), a),
            change_status(ask(config_id, "LIVE", "go live"), b),
        )
    assert sorted(r.changed for r in replies) == [False, True]
    assert all(r.refused is None and r.status == "LIVE" for r in replies)
    assert [e[2] for e in await history(database, config_id)] == ["CANDIDATE", "PAPER", "LIVE"]


async def change(c: Client, body: bytes) -> dict[str, object]:
    return dict(json.loads(await c.ask(c.names.change_status, body)))


async def test_operators_change_statuses_through_the_service_and_each_change_is_announced_once(
    env: Env, tmp_path: Path
) -> None:
    event = job_completed("job-operated", trades=45, sharpe=1.5, net_profit=900.0)
    config_id = config_id_for(event.job_id)
    async with running_registry(env, tmp_path / "registry.log") as c:
        await c.publish_job(event)
        await wait_until(lambda: c.config(event.job_id), within=30.0, message="the configuration")

        async def status(target: ConfigStatus, reason: str) -> ChangeStatusReply:
            return ChangeStatusReply.from_bytes(
                await c.ask(env.names.change_status, ask(config_id, target, reason).to_bytes())
            )

        paper = await status("PAPER", "walk-forward reviewed by hand")
        assert (paper.changed, paper.status, paper.allowed) == (
            True,
            "PAPER",
            ["CANDIDATE", "LIVE", "RETIRED"],
        )
        live = await status("LIVE", "two weeks of paper trading match the backtest")
        assert (live.changed, live.status) == (True, "LIVE")
        again = await status("LIVE", "clicked twice")
        assert (again.changed, again.refused, again.status) == (False, None, "LIVE")
        forbidden = await status("CANDIDATE", "undo")
        assert (forbidden.refused, forbidden.status, forbidden.allowed) == (
            "forbidden",
            "LIVE",
            ["PAPER", "RETIRED"],
        )
        unknown = ChangeStatusReply.from_bytes(
            await c.ask(env.names.change_status, ask("cfg_missing", "LIVE").to_bytes())
        )
        assert unknown.refused == "not_found"

        # The reason is required, 3..500 characters; an actor is required too.
        base = {"config_id": config_id, "status": "RETIRED", "actor": "alice"}
        for reason in ("ab", "  ab  ", "x" * 501):
            reply = await change(c, json.dumps({**base, "reason": reason}).encode())
            assert reply["code"] == "invalid_request"
            assert "reason" in str(reply["error"])
        assert "actor" in str(
            (await change(c, b'{"config_id": "x", "status": "LIVE", "reason": "why"}'))["error"]
        )
        assert "status" in str(
            (await change(c, json.dumps({**base, "status": "MOON", "reason": "why"}).encode()))[
                "error"
            ]
        )
        retired = await status("RETIRED", " " + "x" * 500 + " ")
        assert retired.changed

        config = await c.config(event.job_id)
        assert config is not None
        assert config.status == "RETIRED"
        assert [(h.from_status, h.to_status, h.actor) for h in config.history] == [
            (None, "CANDIDATE", "registry"),
            ("CANDIDATE", "PAPER", "alice"),
            ("PAPER", "LIVE", "alice"),
            ("LIVE", "RETIRED", "alice"),
        ]
        assert config.history[2].reason == "two weeks of paper trading match the backtest"
        assert config.history[3].reason == "x" * 500
        assert [i.config_id for i in (await c.configs(status="RETIRED")).items] == [config_id]

        async def all_announced() -> list[tuple[str | None, ConfigPromoted]]:
            found = await c.promotions()
            return found if len(found) >= 4 else []

        await wait_until(all_announced, within=30.0, message="four ConfigPromoted events")
        await wait_until(
            lambda: unsent_is_empty(env.database_url), within=30.0, message="the outbox to drain"
        )
        announced = await c.promotions()
        assert [msg_id for msg_id, _ in announced] == [f"{config_id}.{i}" for i in (1, 2, 3, 4)]
        for (msg_id, promoted), entry in zip(announced, config.history, strict=True):
            assert promoted.message_id == msg_id
            assert (
                promoted.from_status,
                promoted.to_status,
                promoted.reason,
                promoted.actor,
                promoted.at,
            ) == (entry.from_status, entry.to_status, entry.reason, entry.actor, entry.at)
            assert datetime.fromisoformat(promoted.at)


async def unsent_is_empty(dsn: str) -> bool:
    return await unsent(dsn) == []


async def test_a_change_made_while_nats_is_away_is_published_later_exactly_once(
    database: str,
) -> None:
    names = Names("tunit")
    async with registry_deps(database, names, failing_publish()) as deps:
        config_id = await born(deps, "job-offline", "CANDIDATE")
        reply = await change_status(ask(config_id, "PAPER", "reviewed offline"), deps)
        assert reply.changed
    assert await unsent(database) == [f"{config_id}.1", f"{config_id}.2"]

    published: list[ConfigPromoted] = []

    async def record(subject: str, message: ConfigPromoted) -> object:
        assert subject == names.config_promoted
        published.append(message)
        return None

    async with registry_deps(database, names, record) as deps:
        assert await deps.outbox.flush() == 2
        assert await deps.outbox.flush() == 0
        # Asking again for the status it has now writes and publishes nothing.
        again = await change_status(ask(config_id, "PAPER", "reviewed offline"), deps)
        assert (again.changed, again.refused) == (False, None)
        assert await deps.outbox.flush() == 0
    assert [(m.message_id, m.to_status, m.actor) for m in published] == [
        (f"{config_id}.1", "CANDIDATE", "registry"),
        (f"{config_id}.2", "PAPER", "alice"),
    ]
