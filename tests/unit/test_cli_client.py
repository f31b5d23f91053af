"""The client commands' plumbing without a gateway: error lines for each kind of refusal,
the server-sent events reader, the API key file, where the demo finds its data.

Against the real gateway and services: tests/e2e/test_cli_client.py and test_demo.py.
"""

from __future__ import annotations

import io
import json
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tradepulse.cli import demo, gateway_access, render
from tradepulse.cli.client import (
    Gateway,
    GatewayError,
    connection_from,
    error_detail,
    server_sent_events,
)
from tradepulse.cli.errors import UserError
from tradepulse.cli.main import main
from tradepulse.cli.render import ProgressBar
from tradepulse.cli.supervisor import ServiceSpec
from tradepulse.cli.training import json_option


def gateway_answering(
    handler: Callable[[httpx.Request], httpx.Response], key: str | None = "k"
) -> Gateway:
    return Gateway("http://gw.test", key, transport=httpx.MockTransport(handler))


def answer(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "body", "key", "expected"),
    [
        (401, {"detail": "invalid API key"}, "bad", "refused the API key from TRADEPULSE_API_KEY"),
        (401, {"detail": "missing API key"}, None, "no API key: set TRADEPULSE_API_KEY"),
        (404, {"detail": "no job 'x'"}, "k", "job x not found (HTTP 404: no job 'x')"),
        (
            422,
            {
                "detail": "n_iterations: Input should be less than or equal to 100000",
                "errors": [{"field": "n_iterations", "reason": "..."}],
            },
            "k",
            "invalid request: n_iterations: Input should be less than or equal to 100000",
        ),
        (409, {"detail": "job x has already completed"}, "k", "job x has already completed"),
        (503, {"detail": "NATS is down"}, "k", "not available now (HTTP 503: NATS is down)"),
        (500, "boom\nwith a second line", "k", "HTTP 500: boom with a second line"),
    ],
)
async def test_each_refusal_is_one_line_that_says_why(
    status: int, body: Any, key: str | None, expected: str
) -> None:
    async with gateway_answering(answer(status, body), key) as gw:
        with pytest.raises(GatewayError) as caught:
            await gw.job("x")
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert caught.value.status == status


def test_error_details_of_fastapi_and_of_the_gateway() -> None:
    assert error_detail({"detail": [{"loc": ["body", "seed"], "msg": "not an int"}]}) == (
        "seed: not an int"
    )
    assert error_detail({"field": "symbol", "reason": "no candles"}) == "symbol: no candles"
    assert error_detail({"detail": "plain"}) == "plain"


async def test_unreachable_gateway_names_the_address_and_what_to_do() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    async with gateway_answering(refuse) as gw:
        with pytest.raises(GatewayError, match=r"cannot reach the gateway at http://gw\.test"):
            await gw.jobs()


async def test_ids_stay_one_path_segment() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"job_id": "x"})

    async with gateway_answering(record) as gw:
        await gw.job("../configs?x=1")
    assert seen == ["/api/v2/training/job/..%2Fconfigs%3Fx%3D1"]


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_server_sent_events_are_read_as_the_spec_says() -> None:
    lines = _lines(
        ": keep-alive",
        "",
        "id: 1",
        "event: progress",
        'data: {"progress": 12.5}',
        "",
        "data: first",
        "data: second",
        "",
        "event: completed",
        'data: {"status": "completed"}',
    )
    events = [e async for e in server_sent_events(lines)]
    assert events == [
        ("progress", '{"progress": 12.5}'),
        ("message", "first\nsecond"),
        ("completed", '{"status": "completed"}'),
    ]


async def test_follow_falls_back_to_polling_when_the_stream_is_refused() -> None:
    polls: Iterator[dict[str, object]] = iter(
        [{"status": "running", "progress": 50.0}, {"status": "completed"}]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(502, text="bad gateway")
        job = {"job_id": "j", "trials_done": 1, **next(polls)}
        return httpx.Response(200, json=job)

    seen: list[dict[str, Any]] = []
    async with gateway_answering(handler) as gw:
        final = await gw.follow("j", seen.append)
    assert final["status"] == "completed"
    assert [s["status"] for s in seen] == ["running", "completed"]


async def test_follow_reads_events_until_the_closing_one() -> None:
    stream = (
        'event: state\ndata: {"status": "running", "progress": 0.0}\n\n'
        'event: progress\ndata: {"status": "running", "progress": 50.0}\n\n'
        'event: best\ndata: {"value": 1.5, "trial": 3}\n\n'
        'event: completed\ndata: {"status": "completed", "progress": 100.0}\n\n'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"job_id": "j", "status": "completed", "progress": 100.0})

    seen: list[dict[str, Any]] = []
    async with gateway_answering(handler) as gw:
        final = await gw.follow("j", seen.append)
    assert final["status"] == "completed"
    assert [s.get("progress") for s in seen] == [0.0, 50.0, None, 100.0, 100.0]


def test_progress_bar_in_a_log_writes_a_line_per_tenth(tmp_path: Path) -> None:
    path = tmp_path / "bar.log"
    with path.open("w") as out:
        bar = ProgressBar(200, out)
        for done in range(0, 201):
            bar.update({"status": "running", "progress": done / 2, "trials_done": done})
        bar.update({"status": "completed", "progress": 100.0, "trials_done": 200})
        bar.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 12
    assert lines[-1].endswith("completed")
    assert "200/200 trials" in lines[-1]


def test_api_key_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    key, path, generated = gateway_access.saved_api_key(tmp_path / "data")
    assert generated
    assert len(key) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, _, generated_again = gateway_access.saved_api_key(tmp_path / "data")
    assert (again, generated_again) == (key, False)
    assert list((tmp_path / "data").iterdir()) == [path]


def test_the_client_uses_the_key_up_saved_when_none_is_set(tmp_path: Path) -> None:
    key, _, _ = gateway_access.saved_api_key(tmp_path / ".tradepulse")
    found = connection_from({}, cwd=tmp_path)
    assert (found.url, found.api_key) == ("http://127.0.0.1:8000", key)
    explicit = connection_from(
        {"TRADEPULSE_API_KEY": "mine", "TRADEPULSE_URL": "http://h:1/"}, cwd=tmp_path
    )
    assert (explicit.url, explicit.api_key) == ("http://h:1", "mine")
    with pytest.raises(UserError, match="http://"):
        connection_from({"TRADEPULSE_URL": "h:1"}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TRADEPULSE_URL": "http://localhost:99999"}, "port 99999 is not between 1 and 65535"),
        ({"TRADEPULSE_URL": "http://[::1"}, "is not a valid URL"),
        ({"TRADEPULSE_URL": "http://:8000"}, "names no host"),
        ({"TRADEPULSE_API_KEY": "clé"}, "characters an HTTP header cannot carry"),
        ({"TRADEPULSE_API_KEY": "two words"}, "characters an HTTP header cannot carry"),
    ],
)
def test_a_bad_address_or_key_is_one_line_and_exit_code_2(
    environ: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(UserError, match=message):
        connection_from(environ, cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in ("TRADEPULSE_URL", "TRADEPULSE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_a_long_inline_option_is_not_taken_for_a_file_name() -> None:
    with pytest.raises(UserError, match="--settings: not JSON nor a readable file"):
        json_option("a" * 300, "--settings")


def test_the_gateway_spec_gets_its_address_key_and_port() -> None:
    specs = [ServiceSpec("ingest"), ServiceSpec("gateway")]
    ingest, gw = gateway_access.with_gateway_settings(specs, 8123, "secret")
    assert ingest == specs[0]
    assert gw.environment == {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "8123",
        "TRADEPULSE_API_KEYS": "secret",
    }
    assert gw.ports == (8123,)
    assert "TRADEPULSE_API_KEYS" not in (
        gateway_access.with_gateway_settings(specs, 8123, None)[1].environment
    )


def test_demo_finds_the_shared_candles_above_the_current_folder(tmp_path: Path) -> None:
    shared = tmp_path / "work" / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"")
    deep = tmp_path / "work" / "checkout" / "sub"
    deep.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert demo.locate_data(None, deep, package=elsewhere) == shared
    assert demo.locate_data(None, elsewhere, package=deep) == shared
    with pytest.raises(UserError, match="--data PATH"):
        demo.locate_data(None, elsewhere, package=elsewhere)
    assert demo.dataset_of(shared) == demo.Dataset("binance", "BTC/USDT", "5m")
    with pytest.raises(UserError, match="file name"):
        demo.dataset_of(tmp_path / "candles.csv")


def test_usage_errors_of_the_client_commands_are_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["train", "--symbol", "BTC/USDT", "--exchange", "binance"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "--n-iterations" in err
    assert err.count("\n") == 1
    code = main(
        ["train", "--symbol", "B/U", "--exchange", "e", "--n-iterations", "5", "--end", "x"]
    )
    assert code == 2
    assert capsys.readouterr().err == "tradepulse train: --end needs --start\n"
    settings = json.dumps([1])
    args = ["train", "--symbol", "B/U", "--exchange", "e", "--n-iterations", "5"]
    assert main([*args, "--settings", settings]) == 2
    assert "--settings must be a JSON object" in capsys.readouterr().err


def test_a_listing_says_when_it_is_empty_and_when_more_pages_follow() -> None:
    def rows(records: Any) -> list[list[str]]:
        return [[str(r["job_id"])] for r in records]

    out = io.StringIO()
    render.listing({"total": 0, "jobs": []}, "jobs", rows, ("job",), "jobs", False, out)
    assert out.getvalue() == "no jobs\n"
    out = io.StringIO()
    body = {"total": 3, "jobs": [{"job_id": "a"}, {"job_id": "b"}]}
    render.listing(body, "jobs", rows, ("job",), "jobs", False, out)
    assert out.getvalue() == "job\na\nb\n(2 of 3; --offset/--limit for more)\n"
    out = io.StringIO()
    render.listing(body, "jobs", rows, ("job",), "jobs", True, out)
    assert json.loads(out.getvalue()) == body
