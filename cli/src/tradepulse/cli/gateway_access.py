"""How `up` and `demo` run the gateway: its address, its API key, its readiness over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tradepulse.cli.supervisor import ServiceSpec

LOOPBACK = "127.0.0.1"  # the gateway `up` starts listens on loopback only
KEY_FILE = "api_key"
GATEWAY = "gateway"


@dataclass(frozen=True)
class GatewayAccess:
    port: int
    # The key `up` generated (printed), or None when the keys come from TRADEPULSE_API_KEYS.
    api_key: str | None
    key_file: Path | None = None
    generated: bool = False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def new_api_key() -> str:
    return secrets.token_urlsafe(32)


def saved_api_key(data_dir: Path) -> tuple[str, Path, bool]:
    """The data dir's API key, generated on first use: (key, its file, generated now).

    Written to a 0600 temporary file, then linked into place: the link fails if another
    `up` got there first, so two racing runs agree on one key and none reads half a file.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path), path, False
    key = new_api_key()
    tmp = data_dir / f".{KEY_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_key(path), path, False
    finally:
        tmp.unlink()
    return key, path, True


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise FileNotFoundError(path)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return key


def configured_keys(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("TRADEPULSE_API_KEYS", "").strip(" ,"))


def with_gateway_settings(
    services: Sequence[ServiceSpec], port: int, api_key: str | None
) -> list[ServiceSpec]:
    """The services, the gateway told where to listen (and which key to accept, if given)."""
    environment = {"GATEWAY_HOST": LOOPBACK, "GATEWAY_PORT": str(port)}
    if api_key is not None:
        environment["TRADEPULSE_API_KEYS"] = api_key
    return [
        dataclasses.replace(
            spec, environment={**spec.environment, **environment}, ports=(*spec.ports, port)
        )
        if spec.name == GATEWAY
        else spec
        for spec in services
    ]


async def wait_http_ready(url: str, within: float) -> bool:
    """Poll GET /health until the gateway serves HTTP. Called once every replica answered its
    ping, so the services (and the gateway's NATS connection) are up already; /ready would ask
    for all four services, which `up --services` may not run."""
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health")).status_code == 200:
                    return True
            await asyncio.sleep(0.1)
    return False
