"""Ingest errors. Refusals are final for a request; ExchangeUnavailableError is worth retrying."""

from __future__ import annotations

from tradepulse.common.errors import InvalidRequestError, ServiceError


class ExchangeRefusedError(InvalidRequestError):
    """The exchange answered with an error a retry cannot fix (unknown symbol, unsupported call)."""


class ExchangeUnavailableError(ServiceError):
    """The exchange kept failing with network errors after every retry."""
