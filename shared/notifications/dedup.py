"""Once per (secret, version, kind, day): a claim taken before delivery and released if delivery failed.

The claim lives in a blob (``kvrotator-notify/<day>/<sha256 of the key>``, created with If-None-Match: *)
in AzureWebJobsStorage, the storage the app already has for its rotation lease: creating a blob that must
not exist is atomic across every instance, costs no Key Vault transaction and never touches the secret
(a tag would be a write to a secret the app may not own, bump its `updated` time and spend one of its 15
tags). Without storage (``make run``), claims are kept in this process's memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any, Protocol

_log = logging.getLogger(__name__)

CONTAINER = "kvrotator-notify"


class Dedup(Protocol):
    async def claim(self, key: str, day: str) -> bool: ...

    async def release(self, key: str, day: str) -> None: ...


class MemoryDedup:
    """Per-process claims; only today's and yesterday's are kept."""

    def __init__(self) -> None:
        self._claims: dict[str, set[str]] = {}

    async def claim(self, key: str, day: str) -> bool:
        if day not in self._claims:
            for old in sorted(self._claims)[:-1]:
                del self._claims[old]
            self._claims[day] = set()
        if key in self._claims[day]:
            return False
        self._claims[day].add(key)
        return True

    async def release(self, key: str, day: str) -> None:
        self._claims.get(day, set()).discard(key)


def blob_name(key: str, day: str) -> str:
    return f"{day}/{hashlib.sha256(key.encode()).hexdigest()}"


class BlobDedup:
    """Claims as empty blobs in a container (an azure.storage.blob.aio ContainerClient)."""

    def __init__(self, container: Any) -> None:
        self.container = container

    async def claim(self, key: str, day: str) -> bool:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        blob = self.container.get_blob_client(blob_name(key, day))
        for _ in range(2):
            try:
                await blob.upload_blob(b"", overwrite=False)
                return True
            except ResourceExistsError:
                return False
            except ResourceNotFoundError:  # the container does not exist yet
                with contextlib.suppress(ResourceExistsError):
                    await self.container.create_container()
        return False

    async def release(self, key: str, day: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            await self.container.get_blob_client(blob_name(key, day)).delete_blob()


_memory = MemoryDedup()
_blob: tuple[int, BlobDedup, Any, Any] | None = None


async def dedup_for(settings: Any, mode: str) -> Dedup:
    """Blob claims when storage is configured (mode auto/blob), else the process's memory."""
    global _blob
    import asyncio

    use_blob = mode == "blob" or (
        mode == "auto" and settings is not None and settings.lock_storage_configured
    )
    if not use_blob:
        return _memory
    loop_id = id(asyncio.get_running_loop())
    if _blob is not None and _blob[0] == loop_id:
        return _blob[1]
    from azure.storage.blob.aio import BlobServiceClient

    credential = None
    if settings.storage_blob_uri:
        from dataclasses import replace

        from ..keyvault import build_credential

        credential = build_credential(replace(settings, client_id=settings.storage_client_id))
        service = BlobServiceClient(account_url=settings.storage_blob_uri, credential=credential)
    else:
        service = BlobServiceClient.from_connection_string(settings.storage_connection_string)
    dedup = BlobDedup(service.get_container_client(CONTAINER))
    _blob = (loop_id, dedup, service, credential)
    return dedup


async def close_dedup() -> None:
    global _blob
    held, _blob = _blob, None
    if held is not None:
        await held[2].close()
        if held[3] is not None:
            await held[3].close()
