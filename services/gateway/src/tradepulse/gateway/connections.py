"""HTTP connections an anonymous client cannot hoard (slowloris).

uvicorn's h11 protocol waits for a request's headers forever and accepts connections until
the process runs out of file descriptors: 20,000 half-open connections, none of which ever
sends a key, left `/ready` unanswered. This protocol adds two bounds to it:

- `header_timeout_s`: a connection whose request headers are not complete this long after
  their first byte (or after the connection opened) is closed. Only the headers are timed;
  a body streams at its own pace, and idle keep-alive is uvicorn's `timeout_keep_alive`.
- `max_connections`: past it, a new connection closes the *oldest one still waiting for its
  headers*, which a well-behaved client (that sends its headers at once) practically never
  is; only when no connection is waiting is the new one closed instead.

The header size is bounded by h11's `max_incomplete_event_size` (GATEWAY_MAX_HEADER_BYTES).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    header_timeout_s: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 2000
    # Connections of this server still waiting for request headers, oldest first.
    awaiting: ClassVar[dict[GuardedH11Protocol, None]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()
        if len(self.connections) > self.max_connections:
            oldest = next((p for p in self.awaiting if p is not self), self)
            oldest.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._await_headers()  # the next request of a keep-alive connection
        else:
            self._headers_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)
            self.awaiting[self] = None

    def _headers_done(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.awaiting.pop(self, None)

    def _too_slow(self) -> None:
        self._header_timer = None
        self.awaiting.pop(self, None)
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn.Config(http=...), with its own bounds and bookkeeping."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections, "awaiting": {}},
    )
