"""Ingest errors. Refusals are final for a request; ExchangeUnavailableError is worth retrying.

`give_up_reason` is what a client reads when every delivery of a request failed: a fixed text
per kind of failure saying what to do, never the exception's own text (which can carry server
paths, SQL or Python internals); the exception itself goes to the log.
"""

from __future__ import annotations

import asyncpg
import nats.errors

from tradepulse.common.errors import InvalidRequestError, ServiceError


class ExchangeRefusedError(InvalidRequestError):
    """The exchange answered with an error a retry cannot fix (unknown symbol, unsupported call)."""


class ExchangeUnavailableError(ServiceError):
    """The exchange kept failing with network errors after every retry."""


# Most specific first: asyncpg's connection errors are OSErrors too, and so are NATS's.
GIVE_UP_REASONS: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    (
        (ExchangeUnavailableError,),
        "the exchange kept failing with network errors (timeouts, rate limits or maintenance); "
        "import again later",
    ),
    (
        (asyncpg.PostgresError, asyncpg.InterfaceError),
        "the candle database was unavailable or refused the write; import again once the "
        "operator has checked PostgreSQL",
    ),
    (
        (nats.errors.Error, ConnectionError),
        "NATS (the message bus and its object store) was unavailable; import again later",
    ),
    (
        (MemoryError,),
        "the ingest service ran out of memory; import a smaller file or ask the operator for "
        "more memory",
    ),
    (
        (OSError,),
        "the ingest service could not read or write its working files (a full or unwritable "
        "disk); ask the operator to check the ingest service's disk, then import again",
    ),
)
INTERNAL_REASON = (
    "an internal error in the ingest service stopped the import; its log has the details "
    "under this request_id"
)


def give_up_reason(error: BaseException, attempts: int) -> str:
    """The fixed, actionable text for a request that failed on every one of `attempts`."""
    for kinds, reason in GIVE_UP_REASONS:
        if isinstance(error, kinds):
            return f"gave up after {attempts} attempts: {reason}"
    return f"gave up after {attempts} attempts: {INTERNAL_REASON}"
