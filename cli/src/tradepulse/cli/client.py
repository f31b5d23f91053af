"""The gateway's HTTP API as the client commands use it: one method per endpoint, errors as
one readable line (`GatewayError`, a `UserError`), never an httpx exception or a traceback.

    async with Gateway(url, api_key) as gw:
        job = await gw.submit_training(payload)
        final = await gw.follow(job["job_id"], on_update)

`follow` listens to the job's server-sent events and falls back to polling the job when the
stream cannot be opened or breaks off, so a proxy that buffers SSE only makes it coarser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tradepulse.cli.errors import UserError

DEFAULT_URL = "http://127.0.0.1:8000"
API = "/api/v2"
# Where `tradepulse up` (default data dir) keeps the key it generated; read when
# TRADEPULSE_API_KEY is unset, so that a second terminal in the same folder just works.
DEFAULT_KEY_FILE = Path(".tradepulse") / "api_key"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
POLL_EVERY_S = 0.5
# The events stream is quiet while a job waits in the queue; past this, poll instead.
SSE_READ_TIMEOUT_S = 30.0


class GatewayError(UserError):
    """A request the gateway refused or could not answer; `status` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str | None
    key_source: str  # for error messages: where the key came from


def connection_from(
    environ: Mapping[str, str], url: str | None = None, cwd: Path | None = None
) -> Connection:
    """The gateway URL (`url`, else TRADEPULSE_URL, else the default) and API key
    (TRADEPULSE_API_KEY, else the key `tradepulse up` saved in ./.tradepulse)."""
    base = (url or environ.get("TRADEPULSE_URL") or DEFAULT_URL).rstrip("/")
    _check_url(base)
    key = environ.get("TRADEPULSE_API_KEY") or None
    if key is not None:
        return Connection(base, _checked_key(key, "TRADEPULSE_API_KEY"), "TRADEPULSE_API_KEY")
    key_file = (cwd or Path.cwd()) / DEFAULT_KEY_FILE
    with contextlib.suppress(OSError):
        saved = key_file.read_text().strip()
        if saved:
            source = f"{key_file} (saved by tradepulse up)"
            return Connection(base, _checked_key(saved, source), source)
    return Connection(base, None, "none")


def _check_url(base: str) -> None:
    if not base.startswith(("http://", "https://")):
        raise UserError(f"gateway URL {base!r} must start with http:// or https://")
    try:
        parsed = httpx.URL(base)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise UserError(f"gateway URL {base!r} is not a valid URL ({exc})") from None
    if not parsed.host:
        raise UserError(f"gateway URL {base!r} names no host")
    if port is not None and not 0 < port < 65536:
        raise UserError(f"gateway URL {base!r}: port {port} is not between 1 and 65535")


def _checked_key(key: str, source: str) -> str:
    # An HTTP header carries printable ASCII only; anything else cannot be a key the gateway
    # issued, and httpx would fail with an encoding error.
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise UserError(
            f"the API key in {source} has characters an HTTP header cannot carry (spaces,"
            " accents or control characters): copy the key exactly as it was printed"
        )
    return key


def error_detail(body: Any) -> str:
    """The reason in an error body: FastAPI's `detail` (a text, or a list of field errors
    whose `loc` names the field), or a `{"field", "message"}`-like object."""
    if isinstance(body, dict):
        if "detail" in body:
            return error_detail(body["detail"])
        if "error" in body and isinstance(body["error"], dict | str | list):
            return error_detail(body["error"])
        message = next(
            (str(body[k]) for k in ("message", "reason", "msg") if body.get(k) is not None), None
        )
        field = body.get("field") or _location(body.get("loc"))
        if message is not None:
            return f"{field}: {message}" if field else message
        return json.dumps(body, separators=(",", ":"))[:300]
    if isinstance(body, list):
        return "; ".join(error_detail(item) for item in body[:5]) or "no details"
    return str(body)


def _location(loc: Any) -> str | None:
    """`["body", "n_iterations"]` → `n_iterations`; where the field sits is noise to a user."""
    if not isinstance(loc, list | tuple):
        return None
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "form", "file"):
        parts = parts[1:] or parts
    return ".".join(parts) or None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase


class Gateway:
    """An async client of the gateway; use as `async with Gateway(...) as gw:`."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        key_source: str = "TRADEPULSE_API_KEY",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.key_source = key_source
        headers = {"Accept": "application/json", "User-Agent": "tradepulse-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    @classmethod
    def from_connection(cls, connection: Connection, **kwargs: Any) -> Gateway:
        return cls(connection.url, connection.api_key, key_source=connection.key_source, **kwargs)

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    # Requests and their errors -----------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str = "",
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, str] | None = None,
        wait_s: float | None = None,
    ) -> Any:
        """Send one request and return its JSON body; any failure becomes a GatewayError.
        `what` names the object for a 404 ("job abc")."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {} if wait_s is None else {"timeout": wait_s}
        try:
            response = await self._http.request(
                method, path, json=json_body, params=query, files=files, data=data, **extra
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except (httpx.InvalidURL, OverflowError, ValueError) as exc:
            # A URL that parses but cannot be connected to (a port out of range, ...).
            raise GatewayError(f"cannot send a request to {self.url}: {exc}") from None
        if response.is_success:
            return _body(response) if response.content else None
        raise self.status_error(response, what)

    def _transport_error(self, exc: httpx.HTTPError) -> GatewayError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return GatewayError(
                f"cannot reach the gateway at {self.url} ({_reason(exc)}); is `tradepulse up` "
                "running? (set TRADEPULSE_URL to use another address)"
            )
        if isinstance(exc, httpx.TimeoutException):
            return GatewayError(
                f"the gateway at {self.url} did not answer in time ({_reason(exc)})"
            )
        return GatewayError(f"request to the gateway at {self.url} failed: {_reason(exc)}")

    def status_error(self, response: httpx.Response, what: str = "") -> GatewayError:
        status = response.status_code
        detail = error_detail(_body(response))
        if status == 401 or status == 403:
            if not self.api_key:
                hint = (
                    "no API key: set TRADEPULSE_API_KEY to a key of the gateway's "
                    "TRADEPULSE_API_KEYS (`tradepulse up` prints the one it generated)"
                )
            else:
                hint = (
                    f"the gateway refused the API key from {self.key_source}; set "
                    "TRADEPULSE_API_KEY to a key of the gateway's TRADEPULSE_API_KEYS"
                )
            return GatewayError(f"{hint} (HTTP {status}: {detail})", status)
        if status == 404:
            subject = what or response.request.url.path
            return GatewayError(f"{subject} not found (HTTP 404: {detail})", status)
        if status == 422 or status == 400:
            return GatewayError(f"invalid request: {detail} (HTTP {status})", status)
        if status == 409:
            return GatewayError(f"{detail} (HTTP 409)", status)
        if status == 413:
            return GatewayError(f"too large for the gateway (HTTP 413: {detail})", status)
        if status == 503:
            return GatewayError(f"the system is not available now (HTTP 503: {detail})", status)
        return GatewayError(f"the gateway answered HTTP {status}: {detail}", status)

    # Endpoints -----------------------------------------------------------------------------

    async def submit_training(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return _object(await self.request("POST", f"{API}/training/start", json_body=payload))

    async def submit_ensemble(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return _object(await self.request("POST", f"{API}/training/ensemble", json_body=payload))

    async def ensemble(self, ensemble_id: str) -> dict[str, Any]:
        path = f"{API}/training/ensemble/{_segment(ensemble_id)}"
        return _object(await self.request("GET", path, what=f"ensemble {ensemble_id}"))

    async def job(self, job_id: str) -> dict[str, Any]:
        return _object(
            await self.request(
                "GET", f"{API}/training/job/{_segment(job_id)}", what=f"job {job_id}"
            )
        )

    async def jobs(self, **filters: Any) -> Any:
        return await self.request("GET", f"{API}/training/jobs", params=filters)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        path = f"{API}/training/job/{_segment(job_id)}/cancel"
        return _object(await self.request("POST", path, what=f"job {job_id}"))

    async def configs(self, **filters: Any) -> Any:
        return await self.request("GET", f"{API}/configs", params=filters)

    async def config(self, config_id: str) -> dict[str, Any]:
        path = f"{API}/configs/{_segment(config_id)}"
        return _object(await self.request("GET", path, what=f"configuration {config_id}"))

    async def change_status(self, config_id: str, status: str, reason: str) -> dict[str, Any]:
        """Ask for the configuration to take `status`; a refusal (409) names what is allowed."""
        path = f"{API}/configs/{_segment(config_id)}/status"
        body = {"status": status, "reason": reason}
        return _object(
            await self.request("POST", path, json_body=body, what=f"configuration {config_id}")
        )

    async def ingest(self, payload: Mapping[str, Any], wait_s: float | None = None) -> Any:
        return await self.request("POST", f"{API}/data/ingest", json_body=payload, wait_s=wait_s)

    async def import_status(self, request_id: str) -> dict[str, Any]:
        path = f"{API}/data/ingest/{_segment(request_id)}"
        return _object(await self.request("GET", path, what=f"import {request_id}"))

    async def upload(
        self,
        path: Path,
        fields: Mapping[str, str],
        wait_s: float | None = None,
    ) -> Any:
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        with handle:
            files = {"file": (path.name, handle, "application/octet-stream")}
            return await self.request(
                "POST", f"{API}/data/upload", files=files, data=fields, wait_s=wait_s
            )

    # Following a job -----------------------------------------------------------------------

    async def events(self, job_id: str) -> AsyncGenerator[tuple[str, Any], None]:
        """The job's server-sent events as (event name, decoded data); ends with the stream."""
        path = f"{API}/training/job/{_segment(job_id)}/events"
        timeout = httpx.Timeout(10.0, read=SSE_READ_TIMEOUT_S)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            async with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if not response.is_success:
                    await response.aread()
                    raise self.status_error(response, f"job {job_id}")
                async for event, data in server_sent_events(response.aiter_lines()):
                    yield event, _decode(data)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except (httpx.InvalidURL, OverflowError, ValueError) as exc:
            # A URL that parses but cannot be connected to (a port out of range, ...).
            raise GatewayError(f"cannot send a request to {self.url}: {exc}") from None

    async def follow(
        self, job_id: str, on_update: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Report the job's progress until it ends; return the job as the gateway then shows it.
        `on_update` gets every progress snapshot (keys as in the job: status, progress, ...)."""
        with contextlib.suppress(GatewayError):
            # aclosing: leaving the loop early closes the stream now, not when collected.
            async with contextlib.aclosing(self.events(job_id)) as events:
                async for event, data in events:
                    if isinstance(data, dict):
                        update = dict(data)
                        if event in TERMINAL and "status" not in update:
                            update["status"] = event
                        on_update(update)
                        if update.get("status") in TERMINAL:
                            break
                    elif event in TERMINAL:
                        break
        # Whatever the stream said, the job itself is the authority; poll until it has ended.
        while True:
            job = await self.job(job_id)
            on_update(job)
            if job.get("status") in TERMINAL:
                return job
            await asyncio.sleep(POLL_EVERY_S)


async def server_sent_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) of each event in a text/event-stream; comments are skipped."""
    event = "message"
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif not line.startswith(":"):  # a comment is the server's keep-alive
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GatewayError(f"unexpected answer from the gateway: {str(body)[:200]}")
    return body


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _segment(value: str) -> str:
    """An id as one path segment: a `/` or `?` in it must not reach another endpoint."""
    return quote(value, safe="")


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def client_for(args: Any, environ: Mapping[str, str] | None = None) -> Gateway:
    """The client for a command's `--url` option and the environment."""
    connection = connection_from(os.environ if environ is None else environ, args.url)
    return Gateway.from_connection(connection)


def add_connection_options(parser: Any) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help=f"the gateway (default: $TRADEPULSE_URL or {DEFAULT_URL}); the API key comes "
        f"from $TRADEPULSE_API_KEY, else from ./{DEFAULT_KEY_FILE} (saved by `tradepulse up`)",
    )
