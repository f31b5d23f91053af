"""The base of every message on the bus: frozen, strict, versioned, identified."""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal, Self, get_args
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field

# An id users may name in a path (jobs, configurations): safe in a URL and a NATS subject.
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"

# ErrorReply.code: whose fault a refused request was, kept across the bus so that the gateway
# answers as the service meant it (422, 404 or 503).
INVALID_REQUEST: Final = "invalid_request"
NOT_FOUND: Final = "not_found"
UNAVAILABLE: Final = "unavailable"


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


ErrorCode = Literal["invalid_request", "not_found", "unavailable"]
ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)


class ErrorReply(Message):
    """The answer to a request that could not be served; `code` (one of ERROR_CODES) says
    whose fault it was: the request's, a thing that does not exist, or the service's."""

    error: str
    code: ErrorCode = INVALID_REQUEST
