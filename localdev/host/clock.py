"""The host's notion of time: what timers and retry delays read and sleep on.

Production uses `SystemClock` (UTC wall clock, asyncio sleeps). Tests inject a clock whose `sleep` returns
when the test advances it, so no test waits on real cron seconds or real retry delays.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` of this clock's time."""


class SystemClock:
    """The wall clock and asyncio.sleep."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
