"""The base of every message on the bus: frozen, strict, versioned, identified."""

from __future__ import annotations

from typing import Any, ClassVar, Final, Self
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field

# The kinds of `ErrorReply.code`: what the caller may do about the failure.
INVALID_REQUEST: Final = "invalid_request"
"""The request itself is wrong (a field out of bounds, an impossible combination): do not retry."""
NOT_FOUND: Final = "not_found"
"""The named job, configuration or dataset does not exist."""
UNAVAILABLE: Final = "unavailable"
"""The service could not answer now (database or NATS away, or a fault): try again later."""


def new_id() -> str:
    return uuid4().hex


class Contract(BaseModel):
    """A frozen wire model that refuses unknown fields (nested parts of messages)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(Contract):
    """A message on the bus.

    `message_id` becomes the `Nats-Msg-Id` header of JetStream publishes, so a message that
    stands for one fact (trial 17 of job X completed) gets a deterministic id and JetStream
    drops its duplicates. `schema_version` lets a consumer refuse a shape it does not know.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = Field(default=1, ge=1)
    message_id: str = Field(default_factory=new_id, min_length=1, max_length=200)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Self:
        return cls.model_validate_json(data)

    def model_post_init(self, context: Any) -> None:
        if self.schema_version > self.SCHEMA_VERSION:
            raise ValueError(
                f"{type(self).__name__} schema_version {self.schema_version} is newer than "
                f"this service understands ({self.SCHEMA_VERSION}); upgrade the service"
            )


class ErrorReply(Message):
    """The answer to a request that could not be served; `code` (INVALID_REQUEST, NOT_FOUND or
    UNAVAILABLE) says whose fault it was, so that it survives the bus (e.g. as 422/404/503)."""

    error: str
    code: str = INVALID_REQUEST
