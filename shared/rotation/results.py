"""What a rotation did: one secret's result, and how it counts in a sweep's summary (shared.vault.sweep).
None of these carry a value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..vault.sweep import SweepSummary
from ..vault.versions import format_optional
from .policy import SecretStatus


class Outcome(StrEnum):
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
    target: dict[str, Any] | None = None  # a dry run's view of an external target (rotators with describe)

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
            "notBefore": format_optional(self.not_before),
            "expiresOn": format_optional(self.expires_on),
            "revokePreviousAfter": format_optional(self.revoke_previous_after),
            "errorCode": self.error_code,
            "target": self.target,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


def record(summary: SweepSummary, result: RotationResult) -> None:
    """Count one secret's result in a sweep's summary."""
    error = None
    if result.outcome is Outcome.FAILED:
        error = {"name": result.name, "code": result.error_code or "Error", "reason": result.reason}
    summary.count(result.outcome.value, deferred=result.outcome is Outcome.DEFERRED, error=error)
