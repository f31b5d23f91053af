"""Dataset snapshots in the NATS object store: the only way trainers read candles."""

from __future__ import annotations

from typing import BinaryIO, Protocol

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore

from tradepulse.common.bus import object_chunks
from tradepulse.common.errors import InvalidRequestError

# Below NATS's default 1 MB message limit with room for headers.
SNAPSHOT_CHUNK = 512 * 1024


class SnapshotStore(Protocol):
    async def exists(self, name: str) -> bool: ...

    async def put(self, name: str, data: bytes) -> None: ...


class NatsSnapshotStore:
    """The candles bucket (`Names.candles_bucket`), created by `bus.ensure_streams`."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    async def exists(self, name: str) -> bool:
        try:
            await self._store.get_info(name)
        except ObjectNotFoundError:
            return False
        return True

    async def put(self, name: str, data: bytes) -> None:
        # Large chunks: a trainer reads a snapshot one chunk per round trip.
        meta = ObjectMeta(name=name, options=ObjectMetaOptions(max_chunk_size=SNAPSHOT_CHUNK))
        await self._store.put(name, data, meta=meta)


class UploadStore(Protocol):
    async def copy_to(self, name: str, sink: BinaryIO) -> int: ...

    async def discard(self, name: str) -> None: ...


class NatsUploadStore:
    """The uploads bucket (`Names.uploads_bucket`): files the gateway received."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self._bucket = bucket

    async def copy_to(self, name: str, sink: BinaryIO) -> int:
        """Write the upload into `sink` one object chunk at a time (so ingest never holds the
        whole file, only a chunk); returns its size."""
        size = 0
        try:
            async for chunk in object_chunks(self._js, self._bucket, name):
                sink.write(chunk)
                size += len(chunk)
        except ObjectNotFoundError as exc:
            raise InvalidRequestError(f"no uploaded file named {name!r}") from exc
        except ValueError as exc:  # its digest does not match what the gateway stored
            raise InvalidRequestError(
                "the uploaded file was damaged in storage; upload it again"
            ) from exc
        return size

    async def discard(self, name: str) -> None:
        """Remove an upload whose import has ended; a redelivered request for it is answered
        from the request's record, so the file is never needed again."""
        store = await self._js.object_store(self._bucket)
        try:
            await store.delete(name)
        except ObjectNotFoundError:
            return
