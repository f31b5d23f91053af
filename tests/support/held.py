"""An async context manager held open in a thread of its own, across many tests.

pytest-asyncio runs each test in an event loop of its own; a system started in one test's loop
would stop being watched (its supervisor's tasks) as soon as that loop ends. Held here, in a
loop that runs in a background thread, it lives as long as the fixture that holds it, and the
tests reach it by its addresses (NATS subjects, URLs), never by its loop's objects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TypeVar

T = TypeVar("T")


async def _hold(
    factory: Callable[[], AbstractAsyncContextManager[T]],
    entered: concurrent.futures.Future[T],
    release: asyncio.Event,
) -> None:
    try:
        async with factory() as value:
            entered.set_result(value)
            await release.wait()
    except BaseException as exc:
        if not entered.done():
            entered.set_exception(exc)
        raise


@contextmanager
def held(
    factory: Callable[[], AbstractAsyncContextManager[T]], *, within: float, name: str
) -> Iterator[T]:
    """Enter `factory()` in a background loop (TimeoutError after `within` seconds), yield
    what it gives, exit it there afterwards."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    entered: concurrent.futures.Future[T] = concurrent.futures.Future()
    release = asyncio.Event()
    holding = asyncio.run_coroutine_threadsafe(_hold(factory, entered, release), loop)
    try:
        yield entered.result(timeout=within)
    finally:
        loop.call_soon_threadsafe(release.set)
        try:
            holding.result(timeout=60)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
