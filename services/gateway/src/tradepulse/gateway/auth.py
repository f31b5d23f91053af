"""API keys: `Authorization: Bearer <key>`, checked against the sha256 digests of the keys
configured in TRADEPULSE_API_KEYS (the keys themselves are never kept)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

CHALLENGE = 'Bearer realm="tradepulse"'


@dataclass(frozen=True)
class AuthFailure:
    detail: str
    challenge: str


class ApiKeys:
    def __init__(self, hashes: tuple[str, ...]) -> None:
        self._digests = tuple(bytes.fromhex(h) for h in hashes)

    @property
    def configured(self) -> bool:
        return bool(self._digests)

    def verify(self, authorization: str | None) -> str | AuthFailure:
        """The key's id (a digest prefix, safe to log) or why the request is refused."""
        if not self._digests:
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
        match: bytes | None = None
        # Every stored digest is compared, so the time taken does not say which one matched.
        for stored in self._digests:
            if hmac.compare_digest(digest, stored):
                match = stored
        if match is None:
            return AuthFailure("invalid API key", f'{CHALLENGE}, error="invalid_token"')
        return match.hex()[:12]
