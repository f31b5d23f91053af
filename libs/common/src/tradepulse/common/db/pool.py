"""An asyncpg pool that waits for PostgreSQL to come up, and survives its restarts.

asyncpg pools replace a broken connection on the next acquire, so after a server restart the
first query on a dead connection fails and the next one works; `retrying` wraps that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from tradepulse.common.retry import until_deadline

T = TypeVar("T")

TRANSIENT = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.IdleSessionTimeoutError,
    # A primary that has just become a standby (failover) refuses writes until the
    # connection is re-established to the new primary.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    # A connection the server terminated mid-query can be left in its error-consuming state,
    # and the next query on it fails with this (MagicStack/asyncpg#1069). Releasing it to the
    # pool fails its reset, which terminates it, so the retry runs on a fresh connection.
    asyncpg.exceptions.InternalClientError,
)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 5,
    wait: float = 60.0,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    async def attempt() -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, command_timeout=60, init=init
        )
        assert pool is not None
        return pool

    try:
        return await until_deadline(attempt, TRANSIENT, within=wait, first=0.5, cap=0.5)
    except TRANSIENT as exc:
        raise ConnectionError(f"cannot reach PostgreSQL: {exc}") from exc


async def retrying(op: Callable[[], Awaitable[T]], *, wait: float = 60.0) -> T:
    """Run `op`, retrying on connection loss until `wait` seconds have passed."""
    return await until_deadline(op, TRANSIENT, within=wait)
