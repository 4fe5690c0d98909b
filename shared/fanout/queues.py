"""The fan-out's queues: one aio QueueServiceClient per process (per event loop), as the host connects.

`AzureWebJobsStorage` is a connection string (Azurite's `UseDevelopmentStorage=true` included), or
identity-based: `AzureWebJobsStorage__queueServiceUri` with a managed identity (`__clientId`, else
AZURE_CLIENT_ID). Bodies go out base64-encoded, the host's default `messageEncoding`: the Python SDK
sends plain text unless told otherwise. A queue is created on its first send in a process, as the host's
output bindings do (sending to a queue nobody created is a 404; the host never creates a trigger's queue:
infra/ creates them all in Azure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ConfigurationError
from ..settings import Settings

_log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 7 * 24 * 3600  # a message's visibility timeout may be at most 7 days

# Called with a queue's name after an immediate send: the local host wakes that queue's listener early,
# as the Functions host's SharedQueueWatcher does for its own output bindings.
SENT_HOOKS: list[Callable[[str], None]] = []


class Outbox(Protocol):
    async def send(self, queue: str, body: str, *, delay: float = 0.0) -> None:
        """Put `body` on `queue`, visible after `delay` seconds."""


class StorageOutbox:
    """Sends through azure-storage-queue's aio clients, one per queue, built lazily."""

    def __init__(self, service: Any | Callable[[], Any]) -> None:
        # a client, or a factory of one: built on the first send, so a step that sends nothing (a poison copy)
        # needs no storage configured
        self._service: Any = None if callable(service) else service
        self._factory: Callable[[], Any] | None = service if callable(service) else None
        self._queues: dict[str, Any] = {}
        self._created: dict[str, asyncio.Future[None]] = {}
        self.sent = 0

    def _queue(self, name: str) -> Any:
        if name not in self._queues:
            from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

            if self._service is None and self._factory is not None:
                self._service = self._factory()
            self._queues[name] = self._service.get_queue_client(
                name,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )
        return self._queues[name]

    async def _ensure(self, name: str) -> None:
        if name not in self._created:
            from azure.core.exceptions import ResourceExistsError

            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._created[name] = future
            try:
                await self._queue(name).create_queue()
            except ResourceExistsError:
                pass
            except BaseException as exc:
                del self._created[name]
                future.set_exception(exc)
                future.exception()  # retrieved: the caller below raises it
                raise
            future.set_result(None)
        await self._created[name]

    async def send(self, queue: str, body: str, *, delay: float = 0.0) -> None:
        await self._ensure(queue)
        visibility = min(MAX_DELAY_SECONDS, max(0, int(delay)))
        await self._queue(queue).send_message(body, visibility_timeout=visibility or None)
        self.sent += 1
        if visibility == 0:
            for hook in list(SENT_HOOKS):
                hook(queue)

    async def close(self) -> None:
        for client in self._queues.values():
            await client.close()
        if self._service is not None:
            await self._service.close()


def queue_service(settings: Settings) -> Any:
    """An aio QueueServiceClient for AzureWebJobsStorage (connection string or identity-based)."""
    from azure.storage.queue.aio import QueueServiceClient

    from ..transport import client_options, from_connection_string

    if settings.storage_connection_string and settings.storage_connection_string.strip():
        return from_connection_string(QueueServiceClient, settings.storage_connection_string.strip())
    if settings.storage_queue_uri:
        from azure.identity.aio import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=settings.storage_client_id)
        return QueueServiceClient(
            settings.storage_queue_uri, credential=credential, **client_options(settings.storage_queue_uri)
        )
    raise ConfigurationError(
        "SWEEP_MODE=queue needs the storage queues: set AzureWebJobsStorage (a connection string, or "
        "UseDevelopmentStorage=true with Azurite) or AzureWebJobsStorage__queueServiceUri with "
        "AzureWebJobsStorage__credential=managedidentity.",
        field="AzureWebJobsStorage",
    )


_outbox: tuple[int, StorageOutbox] | None = None


def process_outbox(settings: Settings) -> StorageOutbox:
    """The process's outbox on the running loop (tests run several loops: each gets its own)."""
    global _outbox
    loop_id = id(asyncio.get_running_loop())
    if _outbox is None or _outbox[0] != loop_id:
        _outbox = (loop_id, StorageOutbox(lambda: queue_service(settings)))
    return _outbox[1]


async def close_outbox() -> None:
    global _outbox
    if _outbox is not None:
        outbox, _outbox = _outbox[1], None
        await outbox.close()
