"""The gateway's only way to the services: one NATS connection, request/reply and commands.

The connection is opened by the app's lifespan in the background (the HTTP server answers
/health, and 503 elsewhere, until NATS is there) and reconnects forever. It is made with
`pending_size=0`: nats-py would otherwise buffer publishes while it reconnects and send them
later, so a job answered with 503 ("NATS is down") could still be queued once NATS is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import BinaryIO, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tradepulse.common import bus
from tradepulse.common.contracts.base import (
    INVALID_REQUEST,
    NOT_FOUND,
    ErrorReply,
    Message,
)
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.logging import get_logger
from tradepulse.gateway.errors import (
    ApiError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    UpstreamTimeoutError,
)
from tradepulse.gateway.metrics import GatewayMetrics
from tradepulse.gateway.settings import GatewaySettings

R = TypeVar("R", bound=Message)

CONNECT_RETRY_S = 0.5
PUBLISH_ATTEMPTS = 3
SERVICES = ("ingest", "registry", "trainer")

log = get_logger(__name__)


class PublishError(Exception):
    """A command NATS did not acknowledge. `maybe_sent`: the server may have stored it anyway
    (the ack timed out), as opposed to a publish that never left the gateway."""

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class Backend:
    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.names: Names = settings.names
        self.metrics = metrics
        self.nc: NatsClient | None = None
        self._connector: asyncio.Task[None] | None = None
        self._on_connect: list[Callable[[NatsClient], Awaitable[None]]] = []
        self._job_consumers_seen = False
        self._connection = bus.ConnectionLog(
            f"gateway-{settings.replica}", on_state=metrics.nats_connected.set
        )

    # Life cycle ----------------------------------------------------------------------------

    def on_connect(self, setup: Callable[[NatsClient], Awaitable[None]]) -> None:
        """Run `setup` once the first connection is made (subscriptions survive reconnects)."""
        self._on_connect.append(setup)

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_loop(), name="nats-connect")

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 5)
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def _connect_loop(self) -> None:
        url = self.settings.nats_url
        while True:
            try:
                nc = await nats.connect(
                    url,
                    name=f"gateway-{self.settings.replica}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    pending_size=0,
                    error_cb=self._connection.on_error,
                    disconnected_cb=self._connection.on_disconnected,
                    reconnected_cb=self._connection.on_reconnected,
                )
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                log.warning("nats_connect_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(CONNECT_RETRY_S)
                continue
            try:
                for setup in self._on_connect:
                    await setup(nc)
            except (OSError, nats.errors.Error) as exc:
                log.warning("nats_setup_failed", error=str(exc) or type(exc).__name__)
                with contextlib.suppress(Exception):
                    await nc.close()
                await asyncio.sleep(CONNECT_RETRY_S)
                continue
            break
        self.nc = self._connection.client = nc
        self.metrics.nats_connected.set(1)
        log.info("nats_connected", namespace=self.names.prefix)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def client(self) -> NatsClient:
        """The connection, or 503 while there is none (nothing is buffered for later)."""
        if self.nc is None or not self.nc.is_connected:
            raise UnavailableError("NATS is not reachable from the gateway; nothing was done")
        return self.nc

    # Request/reply -------------------------------------------------------------------------

    async def request(
        self,
        subject: str,
        message: Message,
        reply_type: type[R],
        *,
        service: str,
        within: float | None = None,
    ) -> R:
        """Ask `service` and decode its answer; 503 if it is not there, 504 if it is slow, and
        what its ErrorReply's code says if it refuses (see `refusal`)."""
        nc = self.client()
        try:
            reply = await nc.request(
                subject, message.to_bytes(), timeout=within or self.settings.request_timeout_s
            )
        except nats.errors.NoRespondersError:
            raise UnavailableError(
                f"the {service} service is not running; try again later"
            ) from None
        except nats.errors.TimeoutError:
            raise UpstreamTimeoutError(f"the {service} service did not answer in time") from None
        except nats.errors.Error as exc:
            raise UnavailableError(f"NATS: {exc or type(exc).__name__}; nothing was done") from None
        try:
            return reply_type.from_bytes(reply.data)
        except ValueError:
            pass
        try:
            error = ErrorReply.from_bytes(reply.data)
        except ValueError:
            error = None
        raise refusal(service, error)

    async def ping(self, service: str, within: float = 1.0) -> bool:
        if not self.connected:
            return False
        assert self.nc is not None
        try:
            await self.nc.request(self.names.ping(service), b"", timeout=within)
        except (nats.errors.Error, OSError):
            return False
        return True

    # Commands ----------------------------------------------------------------------------

    async def publish(self, subject: str, message: Message) -> None:
        """A JetStream publish, de-duplicated by the message id; returns once it is stored."""
        nc = self.client()
        try:
            await bus.publish(
                nc.jetstream(),
                subject,
                message,
                publish_timeout=self.settings.publish_timeout_s,
                attempts=PUBLISH_ATTEMPTS,
            )
        except ConnectionError as exc:
            # bus.publish gave up after its attempts; if one of them timed out waiting for
            # the ack, the server may have stored the message all the same.
            raise PublishError(str(exc), maybe_sent="timeout" in str(exc).lower()) from None
        except (nats.errors.Error, OSError) as exc:
            raise PublishError(str(exc) or type(exc).__name__, maybe_sent=False) from None

    async def job_consumers_exist(self) -> bool:
        """True once the trainers' durable consumers of the jobs stream exist: the stream keeps
        a job only for the consumers that are interested in it, so before any trainer ever ran
        in this namespace a published job would be dropped."""
        if self._job_consumers_seen:
            return True
        js = self.client().jetstream()
        try:
            for durable in (self.names.trainer_intake_durable, self.names.trainer_jobs_durable):
                await js.consumer_info(self.names.jobs_stream, durable, timeout=2)
        except nats.js.errors.NotFoundError:
            return False
        except (nats.errors.Error, OSError) as exc:
            raise UnavailableError(f"NATS JetStream: {exc or type(exc).__name__}") from None
        self._job_consumers_seen = True
        return True

    async def put_upload(self, name: str, data: BinaryIO | bytes) -> None:
        js = self.client().jetstream()
        try:
            store = await js.object_store(self.names.uploads_bucket)
            # nats-py reads any object with readinto (in a thread), not only BufferedIOBase.
            await store.put(name, data)  # type: ignore[arg-type]
        except (nats.errors.Error, OSError) as exc:
            # The error may name the temporary file the upload was spooled to: logged only.
            log.warning("upload_not_stored", error=str(exc) or type(exc).__name__)
            raise UnavailableError(
                "could not store the upload in NATS; nothing was imported, try again"
            ) from None

    async def delete_upload(self, name: str) -> None:
        """Best effort: an upload whose import could not be queued is of no use."""
        with contextlib.suppress(Exception):
            store = await self.client().jetstream().object_store(self.names.uploads_bucket)
            await store.delete(name)

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> Subscription:
        return await self.client().subscribe(subject, cb=cb)


def refusal(service: str, error: ErrorReply | None) -> ApiError:
    """The HTTP error for a service's ErrorReply, by its code: the request's fault is a 422, a
    thing that does not exist a 404, and anything else (the service's trouble, or an answer
    that is not an ErrorReply at all) a 503."""
    if error is None:
        log.warning("service_error", service=service, error="unreadable answer")
        return UnavailableError(
            f"the {service} service could not answer: an answer the gateway cannot read"
        )
    if error.code == INVALID_REQUEST:
        return InvalidInputError("body", f"the {service} service refused it: {error.error}")
    if error.code == NOT_FOUND:
        return NotFoundError(error.error)
    log.warning("service_error", service=service, error=error.error, code=error.code)
    return UnavailableError(f"the {service} service could not answer: {error.error}")


async def unsubscribe_all(subs: list[Subscription]) -> None:
    for sub in subs:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def decode(model: type[R], data: bytes) -> R | None:
    try:
        return model.from_bytes(data)
    except ValueError:
        return None


__all__ = ["SERVICES", "Backend", "PublishError", "decode", "refusal", "unsubscribe_all"]
