"""Ambiguous input is refused, never guessed (issue 11), once for every route: a JSON key given
twice, a body that is not UTF-8, a form field or file given twice, a query parameter the
route does not know. And a 422 lists at most the first errors, however many there are.

The app runs in-process without NATS: a request the gateway would act on answers 503 (NATS
is not reachable, nothing was done), so a 422 here was decided before anything was sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.unit.test_gateway import KEY, PREDECESSOR, client_for, settings
from tradepulse.gateway.app import create_app
from tradepulse.gateway.errors import MAX_LISTED_ERRORS

AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {**AUTH, "content-type": "application/json"}
START = "/api/v2/training/start"
UPLOAD = "/api/v2/data/upload"
FORM = {"exchange": "binanceus", "symbol": "BTC/USDT", "timeframe": "5m"}
CSV = b"timestamp,open,high,low,close,volume\n1,1,1,1,1,1\n"


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(settings(monkeypatch, TRADEPULSE_API_KEYS=KEY)):
        yield c


def fields(reply: httpx.Response) -> list[str]:
    return [e["field"] for e in reply.json()["errors"]]


def body_with(**repeated: object) -> bytes:
    """The predecessor's payload as JSON text, each `repeated` key appended a second time."""
    text = json.dumps(PREDECESSOR)
    extra = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in repeated.items())
    return (text[:-1] + extra + "}").encode()


async def test_the_valid_payload_would_be_acted_on(client: httpx.AsyncClient) -> None:
    # The baseline the refusals below are measured against: without NATS, 503.
    reply = await client.post(START, content=json.dumps(PREDECESSOR).encode(), headers=JSON)
    assert reply.status_code == 503, reply.text


async def test_a_json_key_given_twice_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    reply = await client.post(START, content=body_with(n_iterations=100_000), headers=JSON)
    assert reply.status_code == 422, reply.text
    assert fields(reply) == ["n_iterations"]
    assert "more than once" in reply.json()["detail"]


async def test_a_nested_json_key_given_twice_is_named_with_its_path(
    client: httpx.AsyncClient,
) -> None:
    content = json.dumps({**PREDECESSOR, "settings": {"fee_rate": 0.001}}).encode()
    content = content.replace(b'"fee_rate": 0.001', b'"fee_rate": 0.001, "fee_rate": 0.5')
    reply = await client.post(START, content=content, headers=JSON)
    assert reply.status_code == 422, reply.text
    assert fields(reply) == ["settings.fee_rate"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "latin-1"])
async def test_a_body_that_is_not_utf8_is_a_422(client: httpx.AsyncClient, encoding: str) -> None:
    # Python's json reads UTF-16 and UTF-32 bytes by guessing; Latin-1 needs a non-ASCII byte.
    symbol = "BTC/USDÉ" if encoding == "latin-1" else "BTC/USDT"
    content = json.dumps({**PREDECESSOR, "symbol": symbol}, ensure_ascii=False)
    reply = await client.post(START, content=content.encode(encoding), headers=JSON)
    assert reply.status_code == 422, reply.text
    assert fields(reply) == ["body"]
    assert "UTF-8" in reply.json()["detail"]


async def test_a_form_field_given_twice_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    ok = await client.post(
        UPLOAD, headers=AUTH, data=FORM, files={"file": ("c.csv", CSV, "text/csv")}
    )
    assert ok.status_code == 503, ok.text
    twice = await client.post(
        UPLOAD,
        headers=AUTH,
        data={**FORM, "symbol": ["BTC/USDT", "ETH/USDT"]},
        files={"file": ("c.csv", CSV, "text/csv")},
    )
    assert twice.status_code == 422, twice.text
    assert fields(twice) == ["symbol"]


async def test_a_file_part_given_twice_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        UPLOAD,
        headers=AUTH,
        data=FORM,
        files=[("file", ("a.csv", CSV, "text/csv")), ("file", ("b.csv", CSV, "text/csv"))],
    )
    assert reply.status_code == 422, reply.text
    assert fields(reply) == ["file"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v2/configs?min_sharp=100", "min_sharp"),
        ("/api/v2/training/jobs?limit=5&stauts=running", "stauts"),
        ("/api/v2/training/jobs?limit=5&limit=6", "limit"),
        ("/api/v2/strategies?verbose=1", "verbose"),
        ("/health?x=1", "x"),
    ],
)
async def test_an_unknown_or_repeated_query_parameter_is_a_422_naming_it(
    client: httpx.AsyncClient, path: str, field: str
) -> None:
    reply = await client.get(path, headers=AUTH)
    assert reply.status_code == 422, reply.text
    assert fields(reply) == [field]
    assert reply.json()["detail"].startswith(field)


async def test_known_query_parameters_pass(client: httpx.AsyncClient) -> None:
    reply = await client.get("/api/v2/configs?min_sharpe=1&limit=5&order=asc", headers=AUTH)
    assert reply.status_code == 503, reply.text  # asked the registry, which is not there


async def test_a_422_lists_the_first_errors_and_counts_them_all(client: httpx.AsyncClient) -> None:
    unknown = {f"k{i}": 0 for i in range(50_000)}
    content = json.dumps({**PREDECESSOR, **unknown}).encode()
    reply = await client.post(START, content=content, headers=JSON)
    assert reply.status_code == 422
    body = reply.json()
    assert len(body["errors"]) == MAX_LISTED_ERRORS
    assert body["errors_total"] == 50_000
    assert "50000 errors" in body["detail"]
    assert len(reply.content) < 10_000


@pytest.mark.parametrize(
    ("content", "leak"),
    [
        (b'{"seed": ' + b"9" * 5000 + b"}", "4300"),
        (b"[" * 100_000, "recursion"),
        (b'{"seed": ' + b"9" * 5000 + b"}", "sys."),
    ],
)
async def test_a_body_python_cannot_parse_is_a_422_without_pythons_words(
    client: httpx.AsyncClient, content: bytes, leak: str
) -> None:
    reply = await client.post(START, content=content, headers=JSON)
    assert reply.status_code == 422, reply.text
    assert fields(reply) == ["body"]
    assert leak not in reply.text.lower()


async def test_an_upload_that_cannot_be_stored_names_no_server_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = settings(monkeypatch, TRADEPULSE_API_KEYS=KEY)
    app = create_app(config)

    class _Store:
        async def put(self, name: str, data: object) -> None:
            raise OSError(28, "No space left on device", "/tmp/tmpq1w2e3/upload")

    class _JetStream:
        async def object_store(self, bucket: str) -> _Store:
            return _Store()

    class _Connected:
        is_connected = True

        def jetstream(self) -> _JetStream:
            return _JetStream()

    app.state.gateway.backend.nc = _Connected()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        reply = await c.post(
            UPLOAD, headers=AUTH, data=FORM, files={"file": ("c.csv", CSV, "text/csv")}
        )
    assert reply.status_code == 503, reply.text
    assert "/tmp" not in reply.text
    assert "Errno" not in reply.text
