"""HTTP pages of up to 1,000 items, fetched from the services in smaller pages: a NATS reply
must fit the server's message size limit (1 MB by default), and a thousand jobs, trials or
configurations with their metrics do not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Fetch = Callable[[int, int], Awaitable[tuple[int, list[T]]]]


async def fetch_pages(fetch: Fetch[T], offset: int, limit: int, chunk: int) -> tuple[int, list[T]]:
    """`limit` items from `offset` on, asking `fetch(offset, limit)` for at most `chunk` at a
    time: the first page, then the others at once if the total says they hold anything."""
    total, items = await fetch(offset, min(chunk, limit))
    end = min(offset + limit, total)
    rest = range(offset + chunk, end, chunk)
    pages = await asyncio.gather(*(fetch(start, min(chunk, end - start)) for start in rest))
    for _, page in pages:
        items.extend(page)
    return total, items
