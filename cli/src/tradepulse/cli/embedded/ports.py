"""Loopback TCP ports: free ones to hand out, and waiting for a server to listen."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from tradepulse.cli.embedded.base import LOOPBACK, EmbeddedError


def port_is_free(port: int) -> bool:
    """True if a server could listen on 127.0.0.1:`port` now (as servers do: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(taken: set[int]) -> int:
    """A port nothing listens on, not in `taken` (ports handed out but not bound yet)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in taken:
            return port
    raise EmbeddedError("no free TCP port on 127.0.0.1")


async def wait_listening(port: int, within: float, alive: Callable[[], bool]) -> bool:
    """Poll a TCP connect to 127.0.0.1:`port` while `alive()` holds."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline and alive():
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
