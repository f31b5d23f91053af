"""The bus's state as a sync point: a queue that is drained has nothing more to apply."""

from __future__ import annotations

from collections.abc import Sequence

from nats.js import JetStreamContext

from tests.support.polling import wait_until


async def drained(js: JetStreamContext, stream: str, durable: str) -> bool:
    """True once the durable consumer has been given every message of `stream` and has acked
    each one: whatever those messages cause has been done (services ack after they store)."""
    info = await js.consumer_info(stream, durable)
    return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0


async def wait_drained(
    js: JetStreamContext, consumers: Sequence[tuple[str, str]], *, within: float = 30.0
) -> None:
    """Wait until every (stream, durable) consumer is `drained`."""

    async def all_drained() -> bool:
        return all([await drained(js, stream, durable) for stream, durable in consumers])

    await wait_until(all_drained, within=within, message=f"consumers {list(consumers)} drained")
