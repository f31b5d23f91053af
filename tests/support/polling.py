"""Waiting in tests: ask again until the answer is the awaited one or a deadline passes.

Never a fixed sleep: a sleep long enough for a loaded machine wastes time on a quiet one, and
a sleep before a negative assertion ("nothing more happened") proves nothing. Wait instead for
a positive sync point (the queue is drained, the job is recorded), then assert.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


def _truthy(value: object) -> bool:
    return bool(value)


def _timed_out(message: str, within: float, last: object) -> AssertionError:
    return AssertionError(f"{message}: not within {within:g} s (last seen: {last!r})")


@overload
async def wait_until(
    probe: Callable[[], Awaitable[T | None]], *, within: float, message: str, interval: float = ...
) -> T: ...


@overload
async def wait_until(
    probe: Callable[[], Awaitable[T]],
    *,
    within: float,
    message: str,
    interval: float = ...,
    until: Callable[[T], bool],
) -> T: ...


async def wait_until(
    probe: Callable[[], Awaitable[Any]],
    *,
    within: float,
    message: str,
    interval: float = 0.1,
    until: Callable[[Any], bool] = _truthy,
) -> Any:
    """Await `probe()` every `interval` seconds until `until` holds for its answer, and return
    that answer; by default `until` is "the answer is truthy" and the result's type drops None.
    Once `within` seconds have passed: AssertionError naming `message` and the last answer.
    The probe runs at least once, and once more at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        last = await probe()
        if until(last):
            return last
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise _timed_out(message, within, last)
        await asyncio.sleep(min(interval, remaining))


@overload
def wait_until_sync(
    probe: Callable[[], T | None], *, within: float, message: str, interval: float = ...
) -> T: ...


@overload
def wait_until_sync(
    probe: Callable[[], T],
    *,
    within: float,
    message: str,
    interval: float = ...,
    until: Callable[[T], bool],
) -> T: ...


def wait_until_sync(
    probe: Callable[[], Any],
    *,
    within: float,
    message: str,
    interval: float = 0.1,
    until: Callable[[Any], bool] = _truthy,
) -> Any:
    """`wait_until` for a probe that does not await (a file, a process table)."""
    deadline = time.monotonic() + within
    while True:
        last = probe()
        if until(last):
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(message, within, last)
        time.sleep(min(interval, remaining))
