"""The one sweep runner and its summary: rotation and cleanup both list the vault page by page, decide
each item from its listed properties, and act on the few that need it — with bounded concurrency, a
deadline, a progress line while it runs and one summary at the end.

At most `concurrency` actions exist at a time (the lister waits for a free slot), so a vault of 10,000
secrets costs 8 tasks, not 10,000. Items reached after the deadline are deferred to the next run, never
started; a failure to list ends the run with the summary saying why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..errors import BudgetSpent
from .calls import Deadline, VaultCalls
from .versions import format_optional

T = TypeVar("T")
summary_log = logging.getLogger("secrets.summary")
PROGRESS_EVERY_SECONDS = 10.0


@dataclass
class SweepSummary:
    """One run of a sweep (rotation or cleanup): counts per outcome, duration, transactions, what is left."""

    kind: str
    dry_run: bool = False
    started_at: datetime | None = None
    duration_seconds: float = 0.0
    pages: int = 0
    listed: int = 0
    managed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    retries: int = 0
    throttled: int = 0
    listing_complete: bool = True
    remaining: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)  # per-secret detail (plan); not logged
    _started: float = field(default_factory=time.perf_counter, repr=False)
    _last_progress: float = field(default_factory=time.monotonic, repr=False)

    def count(self, outcome: str, *, deferred: bool = False, error: dict[str, str] | None = None) -> None:
        self.outcomes[outcome] += 1
        if deferred:
            self.remaining += 1
        if error is not None:
            self.errors.append(error)

    def progress(self, log: logging.Logger, every_seconds: float | None = None) -> None:
        """At most every `every_seconds`, one JSON line of the counts so far: never silent until the end."""
        now = time.monotonic()
        every = PROGRESS_EVERY_SECONDS if every_seconds is None else every_seconds
        if now - self._last_progress >= every:
            self._last_progress = now
            record = {
                "kind": self.kind,
                "listed": self.listed,
                "managed": self.managed,
                "outcomes": dict(self.outcomes),
                "remaining": self.remaining,
            }
            log.info("progress %s", json.dumps(record, sort_keys=True), extra={"progress": record})

    def listing_failed(self, code: str, message: str) -> None:
        """The vault could not be listed: the run is incomplete and its summary names the reason."""
        self.listing_complete = False
        self.errors.append({"name": "*", "code": code, "reason": message})

    def finish(self, calls: VaultCalls, base: tuple[int, int, int] = (0, 0, 0)) -> SweepSummary:
        self.duration_seconds = round(time.perf_counter() - self._started, 3)
        self.transactions = calls.transactions - base[0]
        self.retries = calls.retries - base[1]
        self.throttled = calls.throttled - base[2]
        return self

    def to_dict(self, *, with_items: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": self.kind,
            "dryRun": self.dry_run,
            "startedAt": format_optional(self.started_at),
            "durationSeconds": self.duration_seconds,
            "pages": self.pages,
            "listed": self.listed,
            "managed": self.managed,
            "statuses": dict(self.statuses),
            "outcomes": dict(self.outcomes),
            "transactions": self.transactions,
            "retries": self.retries,
            "throttled": self.throttled,
            "listingComplete": self.listing_complete,
            "remaining": self.remaining,
            "errors": self.errors[:50],
        }
        if with_items:
            body["secrets"] = self.items
        return body

    def log(self) -> None:
        record = self.to_dict()
        summary_log.info(
            "summary %s", json.dumps(record, sort_keys=True, default=str), extra={"summary": record}
        )


_last: dict[str, SweepSummary] = {}


def remember(summary: SweepSummary) -> None:
    """Keep the last real (not dry-run) summary of each kind for the plan endpoint and the status page."""
    if not summary.dry_run:
        _last[summary.kind] = summary


def last_summaries() -> dict[str, dict[str, Any]]:
    return {kind: summary.to_dict() for kind, summary in _last.items()}


Action = Callable[[], Awaitable[None]]


class SweepRunner(Generic[T]):
    """Runs `decide(item)` for every listed item; an item that needs work returns an action, which runs
    with at most `concurrency` others. Items whose turn comes after the deadline go to `defer(item)`."""

    def __init__(
        self, summary: SweepSummary, deadline: Deadline, *, concurrency: int, log: logging.Logger
    ) -> None:
        self.summary = summary
        self.deadline = deadline
        self.concurrency = max(1, concurrency)
        self.log = log

    async def run(
        self,
        pages: AsyncIterator[list[T]],
        decide: Callable[[T], Action | None],
        defer: Callable[[T], None],
    ) -> None:
        slots = asyncio.Semaphore(self.concurrency)

        async def act(action: Action) -> None:
            try:
                await action()
            finally:
                slots.release()
                self.summary.progress(self.log)

        try:
            async with asyncio.TaskGroup() as group:
                await self._list(pages, decide, defer, slots, group, act)
        except BaseExceptionGroup as group_error:  # one failure (the listing, or a bug) is the run's failure
            first = group_error.exceptions[0]
            raise first from None

    async def _list(
        self,
        pages: AsyncIterator[list[T]],
        decide: Callable[[T], Action | None],
        defer: Callable[[T], None],
        slots: asyncio.Semaphore,
        group: asyncio.TaskGroup,
        act: Callable[[Action], Coroutine[Any, Any, None]],
    ) -> None:
        try:
            async for page in pages:
                self.summary.pages += 1
                for item in page:
                    self.summary.listed += 1
                    action = decide(item)
                    if action is None:
                        continue
                    if self.deadline.spent:
                        defer(item)
                        continue
                    await slots.acquire()
                    group.create_task(act(action))
                self.summary.progress(self.log)
                if self.deadline.spent:
                    break
        except (BudgetSpent, TimeoutError):
            if not self.deadline.spent:
                raise  # a page timed out before the budget did: the vault's failure, not ours
        if self.deadline.spent:
            self.summary.listing_complete = False
            self.log.warning(
                "%s sweep: time budget of %.0f s spent while listing; the next run continues",
                self.summary.kind,
                self.deadline.seconds,
            )
