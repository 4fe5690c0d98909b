"""Throttle-aware vault calls: stay under Key Vault's limits, and back off when it says 429 anyway.

Key Vault allows 300 secret creates and 4,000 other transactions per 10 s per vault. A sliding-window
limiter keeps a sweep under a safety fraction of both, so a big sweep is paced by the limit instead
of bouncing off it. azure-core retries 429 only when it may (not PATCH without Retry-After), so every
call also goes through one retry loop here that honours Retry-After and otherwise backs off
exponentially — throttling slows a sweep, it never fails it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class RateLimiter:
    """At most `limit` acquisitions in any `window` seconds (a log of recent send times)."""

    def __init__(
        self, limit: int, window: float = 10.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = max(1, limit)
        self.window = window
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: waiters are served in order
            while True:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                await asyncio.sleep(self._sent[0] + self.window - now + 0.001)


@dataclass(frozen=True)
class VaultLimits:
    """Key Vault's per-vault limits and the share of them a sweep may use."""

    creates_per_10s: int = 300
    transactions_per_10s: int = 4000
    safety: float = 0.9

    def limiters(self) -> tuple[RateLimiter, RateLimiter]:
        return (
            RateLimiter(int(self.creates_per_10s * self.safety)),
            RateLimiter(int(self.transactions_per_10s * self.safety)),
        )


_process_limiters: dict[int, tuple[RateLimiter, RateLimiter]] = {}


def process_limiters() -> tuple[RateLimiter, RateLimiter]:
    """The (creates, transactions) limiters every engine of this process shares: Key Vault's limits are
    per vault, so a sweep and concurrent on-demand rotations must draw from one budget, not one each."""
    loop_id = id(asyncio.get_running_loop())  # asyncio locks belong to one loop (tests run several)
    if loop_id not in _process_limiters:
        _process_limiters.clear()
        _process_limiters[loop_id] = VaultLimits().limiters()
    return _process_limiters[loop_id]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter for retries the SDK did not make (or gave up on)."""

    attempts: int = 6
    base: float = 1.0
    maximum: float = 16.0
    retry_after_cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return min(self.maximum, self.base * 2**attempt) * (0.5 + random.random() / 2)


def retry_after_seconds(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for header, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("Retry-After", 1.0)):
        raw = headers.get(header) or headers.get(header.lower())
        if raw is None:
            continue
        try:
            return float(raw) * scale
        except ValueError:
            continue
    return None


def is_retryable(exc: BaseException) -> bool:
    from azure.core.exceptions import (
        HttpResponseError,
        IncompleteReadError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(
        exc,
        (
            ServiceRequestError,
            ServiceResponseError,
            IncompleteReadError,
            asyncio.TimeoutError,
            ConnectionError,
        ),
    ):
        return True  # IncompleteReadError: the connection broke mid-body (a streamed read, outside the SDK's retry)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status == 409:
            # Concurrent writes to one name are retryable; a deleted-but-recoverable name is not.
            text = str(exc)
            return not any(code in text for code in ("ObjectIsDeletedButRecoverable", "ObjectIsBeingDeleted"))
        return status in RETRYABLE_STATUS
    return False


class VaultCalls:
    """Every vault call of a sweep: limited, retried, counted."""

    def __init__(
        self,
        limits: VaultLimits | None = None,
        backoff: Backoff | None = None,
        limiters: tuple[RateLimiter, RateLimiter] | None = None,
    ) -> None:
        self.limits = limits or VaultLimits()
        self.backoff = backoff or Backoff()
        self._creates, self._transactions = limiters or self.limits.limiters()
        self.transactions = 0
        self.retries = 0
        self.throttled = 0

    async def call(
        self, operation: str, fn: Callable[..., Awaitable[T]], *args: Any, create: bool = False, **kwargs: Any
    ) -> T:
        attempt = 0
        while True:
            if create:
                await self._creates.acquire()
            await self._transactions.acquire()
            self.transactions += 1
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if not is_retryable(exc) or attempt + 1 >= self.backoff.attempts:
                    raise
                status = getattr(exc, "status_code", None)
                if status == 429:
                    self.throttled += 1
                delay = self.backoff.delay(attempt, retry_after_seconds(exc))
                self.retries += 1
                _log.info(
                    "vault %s: %s; retry %d in %.2fs",
                    operation,
                    status or type(exc).__name__,
                    attempt + 1,
                    delay,
                )
                attempt += 1
                await asyncio.sleep(delay)

    async def pages(self, operation: str, pager: Any) -> AsyncIterator[list[Any]]:
        """Yield the pages of an AsyncItemPaged; a failed page is fetched again (azure-core keeps its token)."""
        iterator = pager.by_page().__aiter__()
        while True:
            try:
                page = await self.call(operation, iterator.__anext__)
            except StopAsyncIteration:
                self.transactions -= 1  # the end of the list costs no request
                return
            yield [item async for item in page]


async def listed_secrets(calls: VaultCalls, client: Any) -> AsyncIterator[list[Any]]:
    """Pages of the vault's secrets list (25 items, the maximum), as raw SecretItem dicts.

    The list is sequential (each page names the next), so the next page is requested as soon as this one
    arrives and is decided while that request is in flight: a sweep's wall time approaches pages x latency.
    Uses the SDK's own pipeline (`send_request`: same credential, challenge, retry and transport)."""
    from azure.core.rest import HttpRequest

    async def fetch(url: str) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            # stream=True: the pipeline's ContentDecodePolicy would parse the page once more than needed
            response = await client.send_request(
                HttpRequest("GET", url, headers={"Accept": "application/json"}), stream=True
            )
            await response.read()
            response.raise_for_status()
            return json.loads(response.content)  # JSON is UTF-8 (RFC 8259): no charset sniffing

        return await calls.call("GetSecrets", once)

    pending: asyncio.Future[dict[str, Any]] | None = asyncio.ensure_future(fetch("/secrets?maxresults=25"))
    try:
        while pending is not None:
            body = await pending
            next_link = body.get("nextLink")
            if next_link:
                pending = asyncio.ensure_future(fetch(next_link))
                # let that request reach the wire before the caller spends CPU on this page: a task only
                # starts at the loop's next turn, and deciding a page does not give the loop one
                await asyncio.sleep(0)
            else:
                pending = None
            yield list(body.get("value") or [])
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
