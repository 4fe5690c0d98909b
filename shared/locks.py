"""Per-secret serialization: one rotation of a name at a time, and concurrent requests share its result.

Within a process an asyncio lock per name serializes the timer, Event Grid and HTTP paths, and a
coalescer lets every concurrent caller await the one in-flight rotation instead of starting another.
Across instances a blob lease per name in AzureWebJobsStorage (`BlobLeaseLock`) is held inside the
process lock; the engine re-checks the vault right before writing either way, so a lease lost late
costs a no-op, never a second version.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

from .errors import LockUnavailable, SecretBusy
from .settings import Settings

T = TypeVar("T")
_log = logging.getLogger(__name__)

LOCK_CONTAINER = "secret-rotation-locks"
# A lock that cannot be had quickly is better reported than waited for: a few short storage retries only.
LEASE_STORE_RETRY: dict[str, Any] = {
    "initial_backoff": 1,
    "increment_base": 2,
    "retry_total": 2,
    "random_jitter_range": 1,
}


# A caller that has a better thing to do than wait for a name another instance holds (a queue step re-enqueues
# its message) bounds the wait for the calls it makes: `with waiting_at_most(2): ...`.
WAIT_AT_MOST: contextvars.ContextVar[float | None] = contextvars.ContextVar("lock_wait_at_most", default=None)


@contextmanager
def waiting_at_most(seconds: float) -> Iterator[None]:
    token = WAIT_AT_MOST.set(seconds)
    try:
        yield
    finally:
        WAIT_AT_MOST.reset(token)


class DistributedLock(Protocol):
    """A lock shared by every instance of the app, held for one secret name."""

    def hold(self, name: str) -> Any:  # an async context manager
        ...


def lock_key(settings: Settings, name: str) -> str:
    """What serializes work on one secret: its name with one vault, `<vault host>/<name>` with several
    (the same name in two vaults is two secrets; sharing a lock or a coalesced run would skip one)."""
    if len(settings.vault_urls) <= 1:
        return name
    host = re.sub(r"[^a-z0-9.-]", "-", urlparse(settings.vault_url).netloc.lower())
    return f"{host}/{name}"


class SecretLocks:
    """In-process per-name locks (bound to the running loop), optionally wrapped around a distributed lock."""

    def __init__(self, distributed: DistributedLock | None = None) -> None:
        self.distributed = distributed
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}
        self._users: dict[tuple[int, str], int] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        key = (id(asyncio.get_running_loop()), name.lower())
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                if self.distributed is None:
                    yield
                else:
                    async with self.distributed.hold(name):
                        yield
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:  # forget idle names so the table stays small
                del self._users[key]
                self._locks.pop(key, None)


class Coalescer:
    """Concurrent calls for one key share one execution and all receive its result (or its exception)."""

    def __init__(self) -> None:
        self._inflight: dict[tuple[int, str], asyncio.Future[Any]] = {}

    async def run(self, key: str, start: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        slot = (id(loop), key.lower())
        existing = self._inflight.get(slot)
        if existing is not None:
            return await asyncio.shield(existing)
        task: asyncio.Future[T] = asyncio.ensure_future(start())
        self._inflight[slot] = task
        task.add_done_callback(lambda _t: self._inflight.pop(slot, None))
        return await asyncio.shield(task)


class BlobLeaseLock:
    """A blob per secret name in a container of AzureWebJobsStorage; holding its lease is holding the name.

    The lease lasts `lease_seconds` (15-60, Azure's bounds) and is renewed every third of that while held,
    so a crashed instance frees the name within `lease_seconds`. A busy name is waited for up to
    `wait_seconds`, then SecretBusy. The blob lives only while its name is held: create, acquire, and at the
    end delete under the lease (3 calls), so the container does not keep an empty blob per secret ever
    rotated (Azurite's blob lookups grow with the blob count: 14.5 ms for those 3 calls with no other blob,
    61.5 ms with 10,000). A waiter that finds the blob deleted creates it again; the lease on the new blob
    is the name's again, and the engine's re-check under it finds the work done."""

    def __init__(
        self,
        container: Any,
        *,
        lease_seconds: int = 30,
        wait_seconds: float = 20.0,
        poll_seconds: float = 0.2,
    ) -> None:
        self.container = container
        self.lease_seconds = max(15, min(60, lease_seconds))
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        blob = self.container.get_blob_client(name.lower())
        lease = await self._acquire(blob, name)
        renewer = asyncio.create_task(self._renew(lease, name))
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            try:
                await blob.delete_blob(lease=lease)  # releases the name and removes its blob in one call
            except Exception as exc:  # noqa: BLE001 - the lease expires by itself
                _log.warning(
                    "could not release the rotation lease of '%s' (%s); it expires in %d s",
                    name,
                    type(exc).__name__,
                    self.lease_seconds,
                )

    async def _acquire(self, blob: Any, name: str) -> Any:
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
        from azure.storage.blob.aio import BlobLeaseClient

        bound = WAIT_AT_MOST.get()
        deadline = time.monotonic() + (self.wait_seconds if bound is None else min(bound, self.wait_seconds))
        delay = self.poll_seconds
        await self._create(blob)
        while True:
            lease = BlobLeaseClient(blob)
            try:
                await lease.acquire(lease_duration=self.lease_seconds)
                return lease
            except ResourceNotFoundError:  # its last holder deleted it since: the name is free again
                if time.monotonic() > deadline:
                    raise SecretBusy(
                        f"Other instances keep taking secret '{name}'; retry in a minute.",
                        field="name",
                        retry_after=self.lease_seconds,
                    ) from None
                await self._create(blob)
                continue
            except HttpResponseError as exc:
                if exc.status_code != 409:
                    raise self._unavailable(exc) from exc
            except AzureError as exc:
                raise self._unavailable(exc) from exc
            if time.monotonic() + delay > deadline:
                raise SecretBusy(
                    f"Another instance is rotating secret '{name}'; retry in a minute.",
                    field="name",
                    retry_after=self.lease_seconds,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _create(self, blob: Any) -> None:
        from azure.core.exceptions import (
            AzureError,
            HttpResponseError,
            ResourceExistsError,
            ResourceNotFoundError,
        )

        try:
            await blob.upload_blob(b"", overwrite=False)
        except ResourceNotFoundError:  # the container is missing: create it, then the blob
            try:
                await self.container.create_container()
            except ResourceExistsError:
                pass
            await self._create(blob)
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code not in (409, 412):  # exists, or leased by someone else: both fine
                raise self._unavailable(exc) from exc
        except AzureError as exc:  # the store cannot be reached
            raise self._unavailable(exc) from exc

    async def _renew(self, lease: Any, name: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await lease.renew()
            except Exception as exc:  # noqa: BLE001 - the vault re-check still guards the write
                _log.error("rotation lease of '%s' could not be renewed (%s)", name, type(exc).__name__)

    @staticmethod
    def _unavailable(exc: BaseException) -> LockUnavailable:
        return LockUnavailable(
            "The rotation lock store (AzureWebJobsStorage) could not be used "
            f"({type(exc).__name__}{_http_status(exc)}). "
            "Check the AzureWebJobsStorage setting and the identity's 'Storage Blob Data Owner' (or "
            "Contributor) role; locally, start Azurite (`npx azurite --silent --location .localdev/azurite`). "
            "Only an app that runs on exactly one instance may set ROTATION_LOCK=off instead."
        )


def _http_status(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f": HTTP {status}" if status else ""


_lease: tuple[int, BlobLeaseLock, Any, Any] | None = None


_warned_single_instance = False


async def lease_lock_for(settings: Settings) -> BlobLeaseLock | None:
    """The process's blob lease lock when settings ask for one (ROTATION_LOCK auto/blob), built once per loop."""
    global _lease, _warned_single_instance
    if not settings.cross_instance_lock:
        if not _warned_single_instance:
            _warned_single_instance = True
            _log.warning(
                "rotation lock: in-process only (ROTATION_LOCK=%s%s). Safe for ONE instance only: with two, "
                "a secret can be rotated twice. Set AzureWebJobsStorage to use the blob lease.",
                settings.rotation_lock,
                "" if settings.rotation_lock == "off" else ", no AzureWebJobsStorage",
            )
        return None
    loop_id = id(asyncio.get_running_loop())
    if _lease is not None and _lease[0] == loop_id:
        return _lease[1]
    await close_lease_lock()
    try:
        from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry
    except ImportError:
        if settings.rotation_lock == "blob":
            raise LockUnavailable(
                "ROTATION_LOCK=blob needs the azure-storage-blob package; add it to requirements.txt"
            ) from None
        _log.warning(
            "azure-storage-blob is not installed: rotations are serialized per process only "
            "(add it to requirements.txt)"
        )
        return None

    from .transport import client_options, from_connection_string

    options: dict[str, Any] = {"retry_policy": ExponentialRetry(**LEASE_STORE_RETRY)}
    credential = None
    if settings.storage_blob_uri:
        from dataclasses import replace

        from .keyvault import build_credential

        # The storage connection's own identity (AzureWebJobsStorage__clientId), as the Functions host uses it.
        credential = build_credential(replace(settings, client_id=settings.storage_client_id))
        options.update(client_options(settings.storage_blob_uri))
        service = BlobServiceClient(account_url=settings.storage_blob_uri, credential=credential, **options)
    else:
        assert settings.storage_connection_string is not None
        service = from_connection_string(BlobServiceClient, settings.storage_connection_string, **options)
    lock = BlobLeaseLock(
        service.get_container_client(LOCK_CONTAINER),
        lease_seconds=settings.rotation_lease_seconds,
        wait_seconds=settings.rotation_lock_wait_seconds,
    )
    _lease = (loop_id, lock, service, credential)
    return lock


async def close_lease_lock() -> None:
    global _lease
    held, _lease = _lease, None
    if held is not None and PROCESS_LOCKS.distributed is held[1]:
        PROCESS_LOCKS.distributed = None  # nothing may hold on to a lease whose storage client is closed
    if held is not None:
        await held[2].close()
        if held[3] is not None:
            await held[3].close()


# Process-wide: every trigger in this process shares the per-name locks and the in-flight rotations.
PROCESS_LOCKS = SecretLocks()
PROCESS_COALESCER = Coalescer()
