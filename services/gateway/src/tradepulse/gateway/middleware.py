"""The gateway's ASGI middleware, in the order a request meets it: request id and log context,
API key, body size limit; then metrics and one log line per request.

Written as plain ASGI (not BaseHTTPMiddleware) so that server-sent event streams pass through
unbuffered. The API key is checked here, before FastAPI reads or parses the body, so that a
request without a valid key gets 401 whatever its body holds, and nothing else happens.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradepulse.common.logging import get_logger
from tradepulse.gateway.auth import ApiKeys, AuthFailure
from tradepulse.gateway.metrics import GatewayMetrics
from tradepulse.gateway.settings import GatewaySettings

UPLOAD_PATH = "/api/v2/data/upload"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})

log = get_logger("tradepulse.gateway.http")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the {limit} bytes allowed")


def needs_key(method: str, path: str, open_reads: bool) -> bool:
    if not path.startswith("/api/"):
        return False
    return method not in READ_METHODS or not open_reads


class GatewayMiddleware:
    def __init__(
        self, app: ASGIApp, settings: GatewaySettings, keys: ApiKeys, metrics: GatewayMetrics
    ) -> None:
        self.app = app
        self.settings = settings
        self.keys = keys
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        method: str = scope["method"]
        path: str = scope["path"]
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                route = route_of(scope)
                self.metrics.requests.labels(method, route, str(status[0])).inc()
                self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                if needs_key(method, path, self.settings.open_reads):
                    verdict = self.keys.verify(headers.get("authorization"))
                    if isinstance(verdict, AuthFailure):
                        self.metrics.auth_failures.inc()
                        await refuse(send_with_id, 401, verdict.detail, rid, verdict.challenge)
                        return
                    scope["state"]["api_key"] = verdict
                limit = (
                    self.settings.max_upload_bytes
                    if path == UPLOAD_PATH
                    else self.settings.max_body_bytes
                )
                declared = headers.get("content-length")
                if declared is not None:
                    if not declared.isdigit():
                        await refuse(send_with_id, 400, "Content-Length is not a number", rid)
                        return
                    if int(declared) > limit:
                        await refuse(send_with_id, 413, BodyTooLarge(limit).detail, rid)
                        return
                await self.app(scope, limited(receive, limit), send_with_id)
            finally:
                elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
                line = log.debug if path in QUIET_PATHS and status[0] < 400 else log.info
                line(
                    "http_request",
                    method=method,
                    path=path,
                    route=route_of(scope),
                    status=status[0],
                    duration_ms=elapsed_ms,
                    key=scope["state"].get("api_key"),
                )


def route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def limited(receive: Receive, limit: int) -> Receive:
    """`receive` that refuses a body growing past `limit` (chunked, or a lying Content-Length)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


async def refuse(
    send: Send, status: int, detail: str, rid: str, challenge: str | None = None
) -> None:
    body = json.dumps({"detail": detail, "request_id": rid}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
