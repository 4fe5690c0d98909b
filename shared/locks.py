"""Per-secret serialization: one rotation of a name at a time, and concurrent requests share its result.

Within a process an asyncio lock per name serializes the timer, Event Grid and HTTP paths, and a
coalescer lets every concurrent caller await the one in-flight rotation instead of starting another.
Across instances a `DistributedLock` (e.g. a blob lease in AzureWebJobsStorage) plugs in behind the
same `hold(name)`; the engine re-checks the vault right before writing either way, so a lock that
is lost late can cost a no-op, never a second version.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, TypeVar

T = TypeVar("T")


class DistributedLock(Protocol):
    """A lock shared by every instance of the app, held for one secret name."""

    def hold(self, name: str) -> Any:  # an async context manager
        ...


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
        task = loop.create_task(start())  # type: ignore[arg-type]
        self._inflight[slot] = task
        task.add_done_callback(lambda _t: self._inflight.pop(slot, None))
        return await asyncio.shield(task)
