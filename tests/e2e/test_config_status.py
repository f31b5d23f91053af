"""Operators' status changes end to end: the gateway process with named and unnamed keys, the
real registry, trainer and ingest, NATS and PostgreSQL, driven over HTTP and by the CLI.

Configurations come from small real jobs. The registry is told to need more trades than any
job makes, so every configuration is born DISCOVERY; each source status of the table is then
reached by a sequence of allowed changes. Every ConfigPromoted is read from the events stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from nats.aio.msg import Msg

from tests.integration.conftest import Env
from tests.integration.flows import excerpt, running_system
from tests.support.polling import wait_until
from tradepulse.common.bus import connect
from tradepulse.common.contracts.registry import ConfigPromoted
from tradepulse.common.contracts.training import PREDECESSOR_PAYLOAD
from tradepulse.registry.lifecycle import TRANSITIONS

from .conftest import running_gateway, upload_candles, wait_job

TRADEPULSE = Path(sys.executable).parent / "tradepulse"
STATUSES = ("DISCOVERY", "CANDIDATE", "PAPER", "LIVE", "RETIRED")
# The registry's transition table (services/registry lifecycle.py), written out as the oracle:
# nothing ever goes back to DISCOVERY, RETIRED is final.
TABLE: Mapping[str, frozenset[str]] = {
    "DISCOVERY": frozenset({"CANDIDATE", "RETIRED"}),
    "CANDIDATE": frozenset({"PAPER", "RETIRED"}),
    "PAPER": frozenset({"LIVE", "CANDIDATE", "RETIRED"}),
    "LIVE": frozenset({"PAPER", "RETIRED"}),
    "RETIRED": frozenset(),
}
ALICE = "ops-alice"
# Races are run until the loser of one was a genuine conflict (both replicas read PAPER), at
# least MIN_RACES and at most MAX_RACES times; in trials, most races were conflicts.
MIN_RACES, MAX_RACES = 3, 20
# More trades than any job makes: every configuration is born DISCOVERY.
REGISTRY_ENV = {"registry": {"REGISTRY_MIN_TRADES_CANDIDATE": "1000000000"}}


def digest8(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class Operators:
    """Two clients of one gateway: a key named ALICE and an unnamed one; every change made is
    recorded as (from, to, reason, actor), per configuration, in the order it was made."""

    def __init__(self, url: str, named: str, unnamed: str) -> None:
        self.clients = {
            ALICE: httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {named}"}, timeout=30
            ),
            digest8(unnamed): httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {unnamed}"}, timeout=30
            ),
        }
        self.changes: dict[str, list[tuple[str, str, str, str]]] = {}
        self.edges: set[tuple[str, str]] = set()
        self.refused: set[tuple[str, str]] = set()

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def post(self, config_id: str, status: str, reason: str, actor: str) -> httpx.Response:
        return await self.clients[actor].post(
            f"/api/v2/configs/{config_id}/status", json={"status": status, "reason": reason}
        )

    def recorded(self, config_id: str, body: dict[str, Any], src: str, reason: str) -> None:
        self.changes.setdefault(config_id, []).append(
            (src, body["status"], reason.strip(), body["actor"])
        )

    async def probe(self, config_id: str, current: str, actor: str = ALICE) -> None:
        """At `current`: each target the table forbids is a 409 naming what is allowed, and
        asking for `current` again is a 200 that changes nothing."""
        allowed = sorted(TABLE[current])
        for target in STATUSES:
            if target in TABLE[current]:
                continue  # a change: `move` makes those
            reply = await self.post(config_id, target, f"try {current} -> {target}", actor)
            body = reply.json()
            if target == current:
                assert reply.status_code == 200, reply.text
                assert (body["status"], body["changed"], body["allowed"]) == (
                    current,
                    False,
                    allowed,
                )
            else:
                assert reply.status_code == 409, reply.text
                assert (body["refused"], body["status"], body["allowed"]) == (
                    "forbidden",
                    current,
                    allowed,
                )
                assert ", ".join(allowed) in body["detail"] or not allowed
                self.refused.add((current, target))

    async def move(self, config_id: str, path: list[str], actor: str = ALICE) -> None:
        """Walk `path` (its first status is the current one), probing every status on it."""
        for src, dst in itertools.pairwise(path):
            await self.probe(config_id, src, actor)
            reason = f"  step {len(self.changes.get(config_id, []))}: {src} to {dst}  "
            reply = await self.post(config_id, dst, reason, actor)
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert (body["status"], body["changed"], body["allowed"], body["actor"]) == (
                dst,
                True,
                sorted(TABLE[dst]),
                actor,
            )
            self.recorded(config_id, body, src, reason)
            self.edges.add((src, dst))
        await self.probe(config_id, path[-1], actor)


async def configs_of_new_jobs(client: httpx.AsyncClient, seeds: list[int]) -> list[str]:
    job_ids = []
    for seed in seeds:
        payload = {**PREDECESSOR_PAYLOAD, "seed": seed}
        reply = await client.post("/api/v2/training/start", json=payload)
        assert reply.status_code == 202, reply.text
        job_ids.append(reply.json()["job_id"])
    config_ids = []
    for job_id in job_ids:
        job = await wait_job(client, job_id)
        assert job["status"] == "completed", job.get("error")

        async def config_id(job_id: str = job_id) -> str | None:
            found: str | None = (await client.get(f"/api/v2/training/job/{job_id}")).json()[
                "config_id"
            ]
            return found

        config_ids.append(await wait_until(config_id, within=30, message=f"config of {job_id}"))
    return config_ids


async def unsent(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM registry.outbox WHERE sent_at IS NULL"
        )
    finally:
        await conn.close()
    return count


async def cli(url: str, key: str, *argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(TRADEPULSE),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TRADEPULSE_URL": url, "TRADEPULSE_API_KEY": key},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_the_oracle_is_the_registrys_table() -> None:
    assert {s: t for s, t in TRANSITIONS.items() if s is not None} == TABLE


async def test_operators_walk_the_whole_table_over_http_and_each_change_is_announced_once(
    env: Env, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 6_000, tmp_path / "btc_5m.csv")
    named, unnamed = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    unnamed_actor = digest8(unnamed)
    nc = await connect(env.nats_url, "test-config-status")
    announced: list[Msg] = []

    async def on_promoted(msg: Msg) -> None:
        announced.append(msg)

    # From the stream's first message on: every ConfigPromoted the events stream holds.
    sub = await nc.jetstream().subscribe(
        env.names.config_promoted,
        stream=env.names.events_stream,
        ordered_consumer=True,
        cb=on_promoted,
    )
    try:
        async with (
            running_system(
                tmp_path,
                env.names,
                trainers=1,
                nats_url=env.nats_url,
                database_url=env.database_url,
                environment=REGISTRY_ENV,
            ),
            # A second registry replica: one replica answers its requests one at a time, two
            # can read the same status at once and race to the conditional update.
            running_system(
                tmp_path,
                env.names,
                trainers=0,
                nats_url=env.nats_url,
                database_url=env.database_url,
                services=("registry",),
                environment=REGISTRY_ENV,
            ),
            running_gateway(
                tmp_path,
                env.names,
                env.nats_url,
                {"TRADEPULSE_API_KEYS": f"{ALICE}={named}, {unnamed}"},
            ) as gateway,
        ):
            ops = Operators(gateway.url, named, unnamed)
            try:
                client = ops.clients[ALICE]
                await upload_candles(client, data)
                ids = await configs_of_new_jobs(client, [12345, 123, 7, 42, 2026])
                for config_id in ids:
                    config = (await client.get(f"/api/v2/configs/{config_id}")).json()
                    assert config["status"] == "DISCOVERY", config

                # Four paths that end RETIRED cover the table's every allowed change.
                d_r, d_c_r, d_c_p_r, long, race = ids
                await ops.move(d_r, ["DISCOVERY", "RETIRED"])
                await ops.move(d_c_r, ["DISCOVERY", "CANDIDATE", "RETIRED"])
                await ops.move(d_c_p_r, ["DISCOVERY", "CANDIDATE", "PAPER", "RETIRED"])
                path = ["DISCOVERY", "CANDIDATE", "PAPER", "CANDIDATE", "PAPER", "LIVE"]
                await ops.move(long, [*path, "PAPER", "LIVE", "RETIRED"], unnamed_actor)
                allowed = {(s, t) for s, targets in TABLE.items() for t in targets}
                forbidden = {(s, t) for s in STATUSES for t in STATUSES if s != t} - allowed
                assert ops.edges == allowed
                assert ops.refused == forbidden

                # Two changes at once with different targets, neither reachable from the
                # other: one wins, the other is refused (a conflict, or forbidden if it read
                # the winner's status), and the history has exactly the winner's entry.
                await ops.move(race, ["DISCOVERY", "CANDIDATE", "PAPER"])
                refusals: list[str] = []
                for round_ in range(MAX_RACES):
                    if round_ >= MIN_RACES and "conflict" in refusals:
                        break
                    live, back = await asyncio.gather(
                        ops.post(race, "LIVE", f"race {round_}: go live", ALICE),
                        ops.post(race, "CANDIDATE", f"race {round_}: back", unnamed_actor),
                    )
                    assert sorted((live.status_code, back.status_code)) == [200, 409], (
                        live.text,
                        back.text,
                    )
                    won, lost = (live, back) if live.status_code == 200 else (back, live)
                    winner = won.json()
                    assert winner["changed"] is True
                    refusal = lost.json()
                    assert refusal["refused"] in ("conflict", "forbidden")
                    refusals.append(refusal["refused"])
                    assert (refusal["status"], refusal["allowed"]) == (
                        winner["status"],
                        sorted(TABLE[winner["status"]]),
                    )
                    reason = f"race {round_}: " + ("go live" if won is live else "back")
                    ops.recorded(race, winner, "PAPER", reason)
                    await ops.move(race, [winner["status"], "PAPER"])
                assert "conflict" in refusals, refusals

                # Unknown ids, bad bodies, no key.
                missing = await ops.post("cfg_0000000000000000", "LIVE", "why not", ALICE)
                assert missing.status_code == 404, missing.text
                malformed = await ops.post("no%20such", "LIVE", "why not", ALICE)
                assert malformed.status_code == 404, malformed.text
                for body, field in (
                    ({"status": "LIVE", "reason": "ok"}, "reason"),
                    ({"status": "LIVE", "reason": " " * 10}, "reason"),
                    ({"status": "LIVE", "reason": "x" * 501}, "reason"),
                    ({"status": "LIVE"}, "reason"),
                    ({"status": "MOON", "reason": "why not"}, "status"),
                ):
                    bad = await client.post(f"/api/v2/configs/{race}/status", json=body)
                    assert bad.status_code == 422, bad.text
                    assert [e["field"] for e in bad.json()["errors"]] == [field]
                anonymous = await httpx.AsyncClient(base_url=gateway.url).post(
                    f"/api/v2/configs/{race}/status", json={"status": "LIVE", "reason": "why"}
                )
                assert anonymous.status_code == 401

                # The CLI: a change, a refusal naming the allowed targets, the history.
                code, out, err = await cli(
                    gateway.url, named, "promote", race, "--to", "live", "--reason", "by hand"
                )
                assert (code, err) == (0, ""), err
                assert out == (
                    f"{race} went from PAPER to LIVE (by {ALICE}); LIVE may go to PAPER, RETIRED\n"
                )
                ops.recorded(race, {"status": "LIVE", "actor": ALICE}, "PAPER", "by hand")
                code, out, err = await cli(
                    gateway.url, unnamed, "promote", race, "--to", "CANDIDATE", "--reason", "undo"
                )
                assert code == 2
                assert out == ""
                assert err == (
                    "tradepulse promote: a configuration cannot go from LIVE to CANDIDATE; "
                    "allowed: PAPER, RETIRED (HTTP 409)\n"
                )
                code, out, err = await cli(gateway.url, unnamed, "retire", race, "--reason", "done")
                assert (code, err) == (0, ""), err
                ops.recorded(race, {"status": "RETIRED", "actor": unnamed_actor}, "LIVE", "done")
                code, out, err = await cli(gateway.url, named, "config", race)
                assert code == 0, err
                assert f"LIVE -> RETIRED  by {unnamed_actor}  done\n" in out
                assert f"PAPER -> LIVE  by {ALICE}  by hand\n" in out

                # Each configuration's history: its birth, then exactly the changes made, one
                # chain (every entry starts where the one before it ended).
                histories: dict[str, list[dict[str, Any]]] = {}
                for config_id in ids:
                    config = (await client.get(f"/api/v2/configs/{config_id}")).json()
                    history = config["history"]
                    assert (history[0]["from_status"], history[0]["to_status"]) == (
                        None,
                        "DISCOVERY",
                    )
                    assert history[0]["actor"] == "registry"
                    assert [
                        (h["from_status"], h["to_status"], h["reason"], h["actor"])
                        for h in history[1:]
                    ] == ops.changes[config_id]
                    for before, after in itertools.pairwise(history):
                        assert after["from_status"] == before["to_status"]
                    assert config["status"] == history[-1]["to_status"] == "RETIRED"
                    histories[config_id] = history
            finally:
                await ops.close()

            # Exactly one ConfigPromoted per history entry: once the outbox has nothing left
            # to send, the stream holds them all and nothing will be published again.
            expected = sum(len(h) for h in histories.values())
            await wait_until(
                lambda: unsent(env.database_url),
                within=30,
                message="the registry's outbox to drain",
                until=lambda n: n == 0,
            )

        async def stream_count() -> int:
            info = await nc.jetstream().stream_info(
                env.names.events_stream, subjects_filter=env.names.config_promoted
            )
            return int((info.state.subjects or {}).get(env.names.config_promoted, 0))

        assert await stream_count() == expected

        async def delivered() -> int:
            return len(announced)

        await wait_until(
            delivered,
            within=30,
            message=f"{expected} ConfigPromoted delivered",
            until=lambda n: n >= expected,
        )
        assert len(announced) == expected
        events = [ConfigPromoted.from_bytes(m.data) for m in announced]
        assert len({e.message_id for e in events}) == expected
        for config_id, history in histories.items():
            mine = [e for e in events if e.config_id == config_id]
            assert [(e.from_status, e.to_status, e.reason, e.actor, e.at) for e in mine] == [
                (h["from_status"], h["to_status"], h["reason"], h["actor"], h["at"])
                for h in history
            ]
    finally:
        await sub.unsubscribe()
        await nc.close()
