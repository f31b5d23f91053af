"""Operators' status changes without a server: the gateway's key names, its route to the
registry (the registry's answers stood in for by hand-made ChangeStatusReply), the history it
shows, and the CLI's `promote`, `retire` and `config` against a stand-in gateway.

Against the real gateway, registry, NATS and PostgreSQL: tests/e2e/test_config_status.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tradepulse.cli import configs, status
from tradepulse.cli.client import Gateway, GatewayError
from tradepulse.cli.main import build_parser, main
from tradepulse.common.contracts.base import Message
from tradepulse.common.contracts.registry import (
    ChangeStatus,
    ChangeStatusReply,
    ConfigReply,
    ConfigStatus,
    ConfigView,
)
from tradepulse.gateway.app import create_app
from tradepulse.gateway.auth import ApiKeys, AuthFailure, NamedKey, key_hash
from tradepulse.gateway.settings import GatewaySettings, parse_keys

ALICE_KEY = "alice-s3cret-key"
UNNAMED_KEY = "s3cret-key-without-a-name"
CONFIG_ID = "cfg_0123456789abcdef"


def digest8(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def settings(monkeypatch: pytest.MonkeyPatch, keys: str) -> GatewaySettings:
    for name in ("GATEWAY_OPEN_READS", "TP_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:9")  # nothing listens: no NATS here
    monkeypatch.setenv("TRADEPULSE_API_KEYS", keys)
    return GatewaySettings()


# Key names ----------------------------------------------------------------------------------


def test_named_and_unnamed_keys_mix_and_only_digests_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = settings(monkeypatch, f" alice = {ALICE_KEY} ,{UNNAMED_KEY},, ops.bob@x=k2 ")
    assert config.api_keys == (
        NamedKey("alice", key_hash(ALICE_KEY)),
        NamedKey(digest8(UNNAMED_KEY), key_hash(UNNAMED_KEY)),
        NamedKey("ops.bob@x", key_hash("k2")),
    )
    assert config.api_key_hashes == (key_hash(ALICE_KEY), key_hash(UNNAMED_KEY), key_hash("k2"))
    shown = repr(config) + str(config.model_dump())
    assert ALICE_KEY not in shown
    assert UNNAMED_KEY not in shown


def test_a_key_containing_equals_is_given_a_name() -> None:
    assert parse_keys("b64=QUJD==") == (NamedKey("b64", key_hash("QUJD==")),)


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        (f"al ice={ALICE_KEY}", "entry 1 is not `name=key`"),
        (f"x,={ALICE_KEY}", "entry 2 is not `name=key`"),
        ("alice=", "entry 1 is not `name=key`"),
        (f"{ALICE_KEY}/+==", "a key containing '=' must be given a name"),
        ("QUJD==", "a key containing '=' must be given a name"),
        (f"registry={ALICE_KEY}", "names the registry's own status changes"),
        (f"alice={ALICE_KEY},bob={ALICE_KEY}", "entry 2 repeats an earlier key"),
        (f"alice={ALICE_KEY},alice=other", "the name 'alice' is taken"),
        (f"{UNNAMED_KEY},{digest8(UNNAMED_KEY)}=other", "is taken by an earlier key"),
    ],
)
def test_key_lists_that_cannot_name_each_key_are_refused_without_showing_a_key(
    monkeypatch: pytest.MonkeyPatch, keys: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(monkeypatch, keys)
    message = str(caught.value)
    assert reason in message
    assert ALICE_KEY not in message
    assert UNNAMED_KEY not in message


def test_verify_answers_the_name_of_the_matching_key() -> None:
    keys = ApiKeys(parse_keys(f"alice={ALICE_KEY},{UNNAMED_KEY}"))
    assert keys.verify(f"Bearer {ALICE_KEY}") == "alice"
    assert keys.verify(f"bearer  {UNNAMED_KEY} ") == digest8(UNNAMED_KEY)
    refused = keys.verify("Bearer alice")
    assert isinstance(refused, AuthFailure)
    assert refused.detail == "invalid API key"


# The route ----------------------------------------------------------------------------------


class Registry:
    """Stands in for Backend.request: records what the gateway asks, answers `reply`."""

    def __init__(self, reply: Message) -> None:
        self.reply = reply
        self.asked: list[tuple[str, Message]] = []

    async def request(
        self, subject: str, message: Message, reply_type: type[Message], **_: Any
    ) -> Message:
        self.asked.append((subject, message))
        assert isinstance(self.reply, reply_type)
        return self.reply


async def gateway_with(
    monkeypatch: pytest.MonkeyPatch, registry: Registry
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(monkeypatch, f"alice={ALICE_KEY},{UNNAMED_KEY}"))
    monkeypatch.setattr(app.state.gateway.backend, "request", registry.request)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://gateway",
        headers={"Authorization": f"Bearer {ALICE_KEY}"},
    ) as client:
        yield client


def reply(
    current: ConfigStatus | None,
    *,
    changed: bool = False,
    refused: Any = None,
    detail: str = "",
    allowed: list[ConfigStatus] | None = None,
) -> ChangeStatusReply:
    return ChangeStatusReply(
        config_id=CONFIG_ID,
        status=current,
        changed=changed,
        refused=refused,
        detail=detail,
        allowed=allowed or [],
    )


PATH = f"/api/v2/configs/{CONFIG_ID}/status"


async def test_a_change_is_asked_of_the_registry_with_the_keys_name_as_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(
        reply("LIVE", changed=True, detail="went from PAPER to LIVE", allowed=["PAPER", "RETIRED"])
    )
    async for client in gateway_with(monkeypatch, registry):
        answer = await client.post(PATH, json={"status": " live", "reason": "  paper held up  "})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "config_id": CONFIG_ID,
            "status": "LIVE",
            "changed": True,
            "detail": "went from PAPER to LIVE",
            "allowed": ["PAPER", "RETIRED"],
            "actor": "alice",
        }
        unnamed = await client.post(
            PATH,
            json={"status": "LIVE", "reason": "again"},
            headers={"Authorization": f"Bearer {UNNAMED_KEY}"},
        )
        assert unnamed.status_code == 200, unnamed.text
        assert unnamed.json()["actor"] == digest8(UNNAMED_KEY)
    (subject, first), (_, second) = registry.asked
    assert subject.endswith(".rpc.registry.change_status")
    assert isinstance(first, ChangeStatus)
    assert (first.config_id, first.status, first.reason, first.actor) == (
        CONFIG_ID,
        "LIVE",
        "paper held up",
        "alice",
    )
    assert isinstance(second, ChangeStatus)
    assert second.actor == digest8(UNNAMED_KEY)


async def test_the_same_status_again_is_a_200_that_changed_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(reply("PAPER", detail="is already PAPER", allowed=["CANDIDATE"]))
    async for client in gateway_with(monkeypatch, registry):
        answer = await client.post(PATH, json={"status": "PAPER", "reason": "retry"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] is False


@pytest.mark.parametrize(
    ("refusal", "detail", "expected"),
    [
        (
            "forbidden",
            "a configuration cannot go from LIVE to CANDIDATE; allowed: PAPER, RETIRED",
            "a configuration cannot go from LIVE to CANDIDATE; allowed: PAPER, RETIRED",
        ),
        (
            "conflict",
            "another change committed first",
            "another change committed first; LIVE may go to PAPER, RETIRED",
        ),
    ],
)
async def test_a_refused_change_is_a_409_with_the_allowed_targets(
    monkeypatch: pytest.MonkeyPatch, refusal: str, detail: str, expected: str
) -> None:
    registry = Registry(reply("LIVE", refused=refusal, detail=detail, allowed=["PAPER", "RETIRED"]))
    async for client in gateway_with(monkeypatch, registry):
        answer = await client.post(PATH, json={"status": "CANDIDATE", "reason": "why not"})
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["detail"] == expected
    assert (body["refused"], body["status"], body["allowed"]) == (
        refusal,
        "LIVE",
        ["PAPER", "RETIRED"],
    )


async def test_a_final_status_says_it_may_go_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(reply("RETIRED", refused="conflict", detail="retired meanwhile"))
    async for client in gateway_with(monkeypatch, registry):
        answer = await client.post(PATH, json={"status": "LIVE", "reason": "why not"})
    assert answer.status_code == 409
    assert answer.json()["detail"] == "retired meanwhile; RETIRED is final: it may go nowhere"


async def test_unknown_configurations_are_404(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(reply(None, refused="not_found", detail="no configuration"))
    async for client in gateway_with(monkeypatch, registry):
        unknown = await client.post(PATH, json={"status": "LIVE", "reason": "why not"})
        malformed = await client.post(
            "/api/v2/configs/not%20an%20id/status", json={"status": "LIVE", "reason": "why not"}
        )
    assert unknown.status_code == 404, unknown.text
    assert malformed.status_code == 404, malformed.text
    assert len(registry.asked) == 1  # a malformed id is not even asked for


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"status": "LIVE"}, "reason", "required"),
        ({"status": "LIVE", "reason": "ok"}, "reason", "at least 3 characters"),
        ({"status": "LIVE", "reason": "  ok \n "}, "reason", "at least 3 characters"),
        ({"status": "LIVE", "reason": "x" * 501}, "reason", "at most 500 characters"),
        ({"status": "LIVE", "reason": 123}, "reason", "valid string"),
        ({"status": "ACTIVE", "reason": "why not"}, "status", "'LIVE'"),
        ({"reason": "why not"}, "status", "required"),
        ({"status": "LIVE", "reason": "why not", "actor": "root"}, "actor", "unknown field"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field_and_nothing_is_asked(
    monkeypatch: pytest.MonkeyPatch, body: dict[str, Any], field: str, reason: str
) -> None:
    registry = Registry(reply("LIVE", changed=True))
    async for client in gateway_with(monkeypatch, registry):
        answer = await client.post(PATH, json=body)
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert reason in errors[0]["reason"]
    assert registry.asked == []


async def test_a_change_needs_a_key_even_with_open_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_OPEN_READS", "true")
    registry = Registry(reply("LIVE", changed=True))
    async for client in gateway_with(monkeypatch, registry):
        answer = await client.post(
            PATH, json={"status": "LIVE", "reason": "why not"}, headers={"Authorization": ""}
        )
    assert answer.status_code == 401
    assert registry.asked == []


VIEW: dict[str, Any] = {
    "config_id": CONFIG_ID,
    "job_id": "job_1",
    "status": "LIVE",
    "strategy": "LIQUIDITY_SWEEP",
    "dataset": {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "5m"},
    "regime": "any",
    "optimizer": "random",
    "seed": 1,
    "objective": "sharpe_ratio",
    "params": {},
    "metrics": {"total_trades": 40},
    "fingerprint": "f",
    "window": {
        "snapshot": "s",
        "content_hash": "h",
        "begin": 0,
        "stop": 10,
        "trade_from": 5,
        "first_ms": 0,
        "last_ms": 300_000,
    },
    "settings": {},
    "sampler": "random",
    "sampler_version": "1",
    "code_version": "c",
    "created_at": "2026-01-01T00:00:00+00:00",
    "history": [
        {
            "from_status": None,
            "to_status": "CANDIDATE",
            "reason": "total_trades 40 >= 30",
            "at": "2026-01-01T00:00:00+00:00",
        },
        {
            "from_status": "CANDIDATE",
            "to_status": "PAPER",
            "reason": "manual check",
            "at": "2026-01-02T00:00:00+00:00",
            "actor": "alice",
        },
    ],
}


async def test_the_history_shows_each_changes_reason_and_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(ConfigReply(config=ConfigView.model_validate(VIEW)))
    async for client in gateway_with(monkeypatch, registry):
        answer = await client.get(f"/api/v2/configs/{CONFIG_ID}")
    assert answer.status_code == 200, answer.text
    assert [(h["reason"], h["actor"]) for h in answer.json()["history"]] == [
        ("total_trades 40 >= 30", "registry"),
        ("manual check", "alice"),
    ]


# The CLI ------------------------------------------------------------------------------------


def test_promote_and_retire_parse_into_one_change() -> None:
    parser = build_parser()
    promote = parser.parse_args(["promote", "cfg_1", "--to", "live", "--reason", "paper held"])
    assert (promote.config_id, promote.status, promote.reason) == ("cfg_1", "LIVE", "paper held")
    assert promote.run is status.run_change
    retire = parser.parse_args(["retire", "cfg_1", "--reason", "regime changed"])
    assert (retire.config_id, retire.status, retire.reason) == (
        "cfg_1",
        "RETIRED",
        "regime changed",
    )
    assert retire.run is status.run_change


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["promote", "cfg_1", "--to", "ACTIVE", "--reason", "x y z"], "invalid choice: 'ACTIVE'"),
        (["promote", "cfg_1", "--reason", "x y z"], "--to"),
        (["promote", "cfg_1", "--to", "LIVE"], "--reason"),
        (["retire", "cfg_1"], "--reason"),
    ],
)
def test_usage_errors_of_promote_and_retire_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1


def stand_in(
    monkeypatch: pytest.MonkeyPatch, module: Any, handler: Callable[[httpx.Request], httpx.Response]
) -> list[httpx.Request]:
    """Point `module`'s client at `handler`; returns the requests it gets."""
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    def client_for(args: Any) -> Gateway:
        return Gateway("http://gw.test", "k", transport=httpx.MockTransport(recording))

    monkeypatch.setattr(module, "client_for", client_for)
    return seen


def test_promote_posts_the_change_and_says_what_happened(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {
        "config_id": "cfg_1",
        "status": "LIVE",
        "changed": True,
        "detail": "cfg_1 went from PAPER to LIVE",
        "allowed": ["PAPER", "RETIRED"],
        "actor": "alice",
    }
    seen = stand_in(monkeypatch, status, lambda r: httpx.Response(200, json=body))
    assert main(["promote", "cfg_1", "--to", "LIVE", "--reason", "paper held"]) == 0
    assert capsys.readouterr().out == (
        "cfg_1 went from PAPER to LIVE (by alice); LIVE may go to PAPER, RETIRED\n"
    )
    (request,) = seen
    assert (request.method, request.url.path) == ("POST", "/api/v2/configs/cfg_1/status")
    assert json.loads(request.content) == {"status": "LIVE", "reason": "paper held"}
    assert main(["retire", "cfg_1", "--reason", "done with it", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == body
    assert json.loads(seen[1].content) == {"status": "RETIRED", "reason": "done with it"}


def test_a_repeat_and_a_final_status_read_plainly() -> None:
    out = io.StringIO()
    status.show_change(
        {"status": "RETIRED", "changed": False, "detail": "cfg_1 is already RETIRED"}, out
    )
    assert out.getvalue() == "cfg_1 is already RETIRED: nothing changed; RETIRED is final\n"


@pytest.mark.parametrize(
    ("code", "body", "expected"),
    [
        (
            409,
            {
                "detail": "a configuration cannot go from LIVE to CANDIDATE; allowed: PAPER, RETIRED",
                "refused": "forbidden",
                "status": "LIVE",
                "allowed": ["PAPER", "RETIRED"],
            },
            "tradepulse promote: a configuration cannot go from LIVE to CANDIDATE; allowed: "
            "PAPER, RETIRED (HTTP 409)\n",
        ),
        (
            404,
            {"detail": "no configuration 'cfg_1'"},
            "tradepulse promote: configuration cfg_1 not found (HTTP 404: no configuration "
            "'cfg_1')\n",
        ),
        (
            422,
            {"detail": "reason: String should have at least 3 characters"},
            "tradepulse promote: invalid request: reason: String should have at least 3 "
            "characters (HTTP 422)\n",
        ),
    ],
)
def test_a_refused_change_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    body: dict[str, Any],
    expected: str,
) -> None:
    stand_in(monkeypatch, status, lambda r: httpx.Response(code, json=body))
    assert main(["promote", "cfg_1", "--to", "CANDIDATE", "--reason", "why not"]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", expected)


async def test_the_client_refusal_keeps_its_status() -> None:
    gw = Gateway(
        "http://gw.test",
        "k",
        transport=httpx.MockTransport(lambda r: httpx.Response(409, json={"detail": "no"})),
    )
    async with gw:
        with pytest.raises(GatewayError) as caught:
            await gw.change_status("cfg/1", "LIVE", "why not")
    assert caught.value.status == 409


def test_config_shows_the_history_with_actor_and_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = {
        "config_id": CONFIG_ID,
        "status": "PAPER",
        "history": [{**h, "actor": h.get("actor", "registry")} for h in VIEW["history"]],
    }
    stand_in(monkeypatch, configs, lambda r: httpx.Response(200, json=shown))
    assert main(["config", CONFIG_ID]) == 0
    out = capsys.readouterr().out
    assert "history\n" in out
    assert (
        "  2026-01-01T00:00:00  - -> CANDIDATE  by registry  total_trades 40 >= 30\n"
        "  2026-01-02T00:00:00  CANDIDATE -> PAPER  by alice  manual check\n"
    ) in out
