"""What a rotation or a sweep did: per-secret results, run summaries, and the last summary of each kind.

A summary is logged once per run as structured data (the shared.audit logger's style) and kept in
memory for the plan endpoint. None of these carry a value.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from ..errors import DomainError
from .policy import SecretStatus, format_time

summary_log = logging.getLogger("secrets.summary")


class RotationNotConfigured(DomainError):
    status, code = 409, "RotationNotConfigured"


class RotationPolicyInvalid(DomainError):
    status, code = 409, "RotationPolicyInvalid"


class Outcome(str, Enum):
    ROTATED = "Rotated"
    RESUMED = "Resumed"
    NOT_DUE = "NotDue"
    ALREADY_ROTATED = "AlreadyRotated"
    STALE = "Stale"
    SKIPPED = "Skipped"
    NOT_MANAGED = "NotManaged"
    NOT_FOUND = "NotFound"
    WOULD_ROTATE = "WouldRotate"
    WOULD_RESUME = "WouldResume"
    DEFERRED = "Deferred"
    FAILED = "Failed"


@dataclass
class RotationResult:
    """The answer for one secret; every caller of a coalesced rotation receives the same object."""

    name: str
    outcome: Outcome
    reason: str
    status: SecretStatus | None = None
    version: str | None = None
    previous_version: str | None = None
    operation_id: str | None = None
    not_before: datetime | None = None
    expires_on: datetime | None = None
    revoke_previous_after: datetime | None = None
    dry_run: bool = False
    error_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "dryRun": self.dry_run,
        }
        optional = {
            "status": self.status.value if self.status else None,
            "version": self.version,
            "previousVersion": self.previous_version,
            "operationId": self.operation_id,
            "notBefore": format_time(self.not_before) if self.not_before else None,
            "expiresOn": format_time(self.expires_on) if self.expires_on else None,
            "revokePreviousAfter": format_time(self.revoke_previous_after)
            if self.revoke_previous_after
            else None,
            "errorCode": self.error_code,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


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

    def record(self, result: RotationResult) -> None:
        self.outcomes[result.outcome.value] += 1
        if result.outcome is Outcome.DEFERRED:
            self.remaining += 1
        if result.outcome is Outcome.FAILED:
            self.errors.append(
                {"name": result.name, "code": result.error_code or "Error", "reason": result.reason}
            )

    def progress(self, log: logging.Logger, every_seconds: float) -> None:
        """At most every `every_seconds`, log the counts so far: a long sweep is never silent until its summary."""
        now = time.monotonic()
        if now - self._last_progress >= every_seconds:
            self._last_progress = now
            log.info(
                "%s sweep: %d listed, %d managed, outcomes %s",
                self.kind,
                self.listed,
                self.managed,
                dict(self.outcomes),
            )

    def listing_failed(self, error: DomainError) -> None:
        """The vault could not be listed: the run is incomplete and its summary names the reason."""
        self.listing_complete = False
        self.errors.append({"name": "*", "code": error.code, "reason": error.message})

    def finish(self, transactions: int, retries: int, throttled: int) -> SweepSummary:
        self.duration_seconds = round(time.perf_counter() - self._started, 3)
        self.transactions, self.retries, self.throttled = transactions, retries, throttled
        return self

    def to_dict(self, *, with_items: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": self.kind,
            "dryRun": self.dry_run,
            "startedAt": format_time(self.started_at) if self.started_at else None,
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
    """Keep the last real (not dry-run) summary of each kind for the plan endpoint."""
    if not summary.dry_run:
        _last[summary.kind] = summary


def last_summaries() -> dict[str, dict[str, Any]]:
    return {kind: summary.to_dict() for kind, summary in _last.items()}
