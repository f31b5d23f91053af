"""What every embedded server shares: the error type, the loopback address, secrets."""

from __future__ import annotations

import secrets

LOOPBACK = "127.0.0.1"


class EmbeddedError(Exception):
    """A server could not be set up or started; the message says why and what to do."""


def new_secret() -> str:
    # URL- and config-safe characters only: it is embedded in NATS_URL and DATABASE_URL.
    return secrets.token_urlsafe(24)
