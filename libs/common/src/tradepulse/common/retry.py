"""Retrying an operation while a server answers "not now", up to a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until_deadline(
    op: Callable[[], Awaitable[T]],
    errors: tuple[type[Exception], ...],
    *,
    within: float,
    first: float = 0.1,
    cap: float = 2.0,
    on_retry: Callable[[Exception, int], None] | None = None,
) -> T:
    """`op()` again after each of `errors`, waiting `first` seconds and then twice as long each
    time (at most `cap`), until `within` seconds have passed; then the last error is raised."""
    deadline = asyncio.get_running_loop().time() + within
    delay = first
    attempt = 0
    while True:
        try:
            return await op()
        except errors as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            if on_retry is not None:
                on_retry(exc, attempt)
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)
            attempt += 1
