"""Ambiguous input is refused, never guessed (issue 11), once for every route: a JSON key given
twice, a body that is not UTF-8, a form field or file given twice, a query parameter the
route does not know. And a 422 lists at most the first errors, however many there are.

The app runs in-process without NATS: a request the gateway would act on answers 503 (NATS
is not reachable, nothing was done), so a 422 here was decided before anything was sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.unit.test_gateway import KEY, PREDECESSOR, client_for, settings
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


async def test_a_422_lists_the_first_errors_and_counts_them_all(client: httpx.AsyncClient) -> None:
    unknown = {f"k{i}": 0 for i in range(50_000)}
    content = json.dumps({**PREDECESSOR, **unknown}).encode()
    started = time.perf_counter()
    reply = await client.post(START, content=content, headers=JSON)
    elapsed = time.perf_counter() - started
    assert reply.status_code == 422
    body = reply.json()
    assert len(body["errors"]) == MAX_LISTED_ERRORS
    assert body["errors_total"] == 50_000
    assert "50000 errors" in body["detail"]
    assert len(reply.content) < 10_000
    assert elapsed < 1.5, elapsed
