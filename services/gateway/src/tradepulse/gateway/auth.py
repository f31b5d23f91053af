"""API keys: `Authorization: Bearer <key>`, checked against the sha256 digests of the keys
configured in TRADEPULSE_API_KEYS (the keys themselves are never kept).

Each key has a name, the gateway's word for whoever holds it: in the logs, and as the `actor`
of the status changes it asks for. A key configured as `name=key` is called `name`; an unnamed
one is called by the first `UNNAMED_DIGITS` hex digits of its digest, which say which key it
was without saying the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

CHALLENGE = 'Bearer realm="tradepulse"'
UNNAMED_DIGITS = 8


def key_hash(key: str) -> str:
    """The hex sha256 digest of a key, the only form in which the gateway keeps it."""
    return hashlib.sha256(key.encode()).hexdigest()


class NamedKey(NamedTuple):
    """One configured key: its name and its hex sha256 digest (never the key)."""

    name: str
    digest: str


def unnamed(digest: str) -> str:
    """The name of a key configured without one: its digest's first hex digits."""
    return digest[:UNNAMED_DIGITS]


@dataclass(frozen=True)
class AuthFailure:
    detail: str
    challenge: str


class ApiKeys:
    def __init__(self, keys: Sequence[NamedKey]) -> None:
        self._keys = tuple((bytes.fromhex(k.digest), k.name) for k in keys)

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def verify(self, authorization: str | None) -> str | AuthFailure:
        """The key's name (safe to log) or why the request is refused."""
        if not self._keys:
            return AuthFailure(
                "no API keys are configured on this gateway (TRADEPULSE_API_KEYS), so it "
                "refuses every request that needs one",
                CHALLENGE,
            )
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return AuthFailure(
                "missing API key: send the header Authorization: Bearer <key>", CHALLENGE
            )
        digest = hashlib.sha256(token.encode()).digest()
        match: str | None = None
        # Every stored digest is compared, so the time taken does not say which one matched.
        for stored, name in self._keys:
            if hmac.compare_digest(digest, stored):
                match = name
        if match is None:
            return AuthFailure("invalid API key", f'{CHALLENGE}, error="invalid_token"')
        return match
