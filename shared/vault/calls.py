"""The one call wrapper: every vault call stays under Key Vault's per-vault limits, is counted, and gets
a timeout that never outlasts its caller's deadline.

Key Vault allows 300 secret creates and 4,000 other transactions per 10 s per vault. A sliding-window
limiter per process keeps every engine together under a safety fraction of both, so a big sweep is paced
by the limit instead of bouncing off it. Retries are azure-core's alone (`shared.vault.retry`): this
wrapper never repeats a call, it only tells the SDK how long the whole call (retries included) may take.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import BudgetSpent
from .retry import current_counters

T = TypeVar("T")


class Deadline:
    """A point on the monotonic clock that a sweep (or any budgeted run) must end by."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds
        self.seconds = seconds

    def remaining(self) -> float:
        return self.at - self._clock()

    @property
    def spent(self) -> bool:
        return self.remaining() <= 0


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
    """Key Vault's per-vault limits and the share of them the app may use."""

    creates_per_10s: int = 300
    transactions_per_10s: int = 4000
    safety: float = 0.9

    def limiters(self) -> tuple[RateLimiter, RateLimiter]:
        return (
            RateLimiter(int(self.creates_per_10s * self.safety)),
            RateLimiter(int(self.transactions_per_10s * self.safety)),
        )


_process_limiters: dict[tuple[int, str], tuple[RateLimiter, RateLimiter]] = {}


def process_limiters(vault_url: str = "") -> tuple[RateLimiter, RateLimiter]:
    """The (creates, transactions) limiters every engine of this process shares for one vault: Key Vault's
    limits are per vault, so a sweep and on-demand rotations of one vault draw from one budget, and
    different vaults each have their own."""
    loop_id = id(asyncio.get_running_loop())  # asyncio locks belong to one loop (tests run several)
    key = (loop_id, vault_url.rstrip("/").lower())
    if key not in _process_limiters:
        if any(k[0] != loop_id for k in _process_limiters):
            _process_limiters.clear()
        _process_limiters[key] = VaultLimits().limiters()
    return _process_limiters[key]


class VaultCalls:
    """Every vault call of one run: limited, counted, and bounded by the run's deadline.

    `transactions` counts calls as Key Vault bills them (one per operation); `requests` counts HTTP
    requests including azure-core's retries; `throttled` counts 429 answers."""

    def __init__(
        self,
        limits: VaultLimits | None = None,
        *,
        limiters: tuple[RateLimiter, RateLimiter] | None = None,
        deadline: Deadline | None = None,
        read_timeout: float = 30.0,
    ) -> None:
        self._creates, self._transactions = limiters or (limits or VaultLimits()).limiters()
        self.deadline = deadline
        self.read_timeout = read_timeout
        self.transactions = 0
        self.requests = 0
        self.throttled = 0

    @property
    def retries(self) -> int:
        return max(0, self.requests - self.transactions)

    def options(self) -> dict[str, float]:
        """Per-call pipeline options: the whole call (retries and their sleeps) ends by the deadline."""
        if self.deadline is None:
            return {"read_timeout": self.read_timeout}
        remaining = self.deadline.remaining()
        if remaining <= 0:
            raise BudgetSpent("The run's time budget is spent; the next run continues.")
        return {
            "timeout": remaining,
            "read_timeout": min(self.read_timeout, remaining),
            "connection_timeout": min(10.0, remaining),
        }

    async def call(
        self, operation: str, fn: Callable[..., Awaitable[T]], *args: Any, create: bool = False, **kwargs: Any
    ) -> T:
        """One vault operation, e.g. `await calls.call("SetSecret", client.set_secret, name, value)`."""
        if create:
            await self._creates.acquire()
        await self._transactions.acquire()
        options = self.options()
        self.transactions += 1
        token = current_counters.set(self)
        try:
            return await fn(*args, **options, **kwargs)
        finally:
            current_counters.reset(token)

    async def admit(self, *, create: bool = False) -> dict[str, float]:
        """For calls the wrapper cannot make itself (a pager's pages): wait for the limits, count the
        transaction, and return the options to pass."""
        if create:
            await self._creates.acquire()
        await self._transactions.acquire()
        options = self.options()
        self.transactions += 1
        return options
