"""Per-vault service limits: sliding 10-second windows for all transactions and for secret creates.

Refused (429) requests do not count towards the limits, as the current service documentation says.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from . import errors

WINDOW = 10.0


@dataclass
class ThrottleSettings:
    enabled: bool = False
    transactions_per_10s: int = 4000
    creates_per_10s: int = 300
    retry_after: float | None = 1.0  # None: answer 429 without Retry-After, as the real service often does
    window_seconds: float = WINDOW  # the service's window is 10 s; tests shorten it to see recovery quickly


class Throttle:
    def __init__(self, settings: ThrottleSettings) -> None:
        self.settings = settings
        self._transactions: deque[float] = deque()
        self._creates: deque[float] = deque()

    def configure(self, settings: ThrottleSettings) -> None:
        self.settings = settings
        self._transactions.clear()
        self._creates.clear()

    def admit(self, operation: str) -> None:
        """Count one transaction, or raise the service's 429 when its window is full."""
        s = self.settings
        if not s.enabled:
            return
        is_create = operation == "SetSecret"
        window, limit = (
            (self._creates, s.creates_per_10s) if is_create else (self._transactions, s.transactions_per_10s)
        )
        now = time.monotonic()
        while window and window[0] <= now - s.window_seconds:
            window.popleft()
        if len(window) >= limit:
            raise errors.Throttled(s.retry_after)
        window.append(now)
