"""What a notification is about. Built only from listed properties and run results: never a secret value."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROTATION_FAILED = "rotation.failed"
NEAR_EXPIRY = "secret.near_expiry"
EXPIRED = "secret.expired"
POISONED = "queue.poisoned"
DIGEST = "digest"
KINDS = (ROTATION_FAILED, NEAR_EXPIRY, EXPIRED, POISONED, DIGEST)

TITLES = {
    ROTATION_FAILED: "Rotation failed",
    NEAR_EXPIRY: "Secret expires soon and has no rotation policy",
    EXPIRED: "Secret has expired",
    POISONED: "A queue message was poisoned",
    DIGEST: "Daily Key Vault rotation digest",
}
ADVICE = {
    ROTATION_FAILED: "Read the reason, fix the target or the tags, then POST /api/secrets/{name}/rotate.",
    NEAR_EXPIRY: "Write a new value before it expires, or tag it ValidityPeriodDays so the app rotates it.",
    EXPIRED: "Apps reading it may fail now: write a new value, or tag it ValidityPeriodDays.",
    POISONED: "Look at the poison queue's message, fix the cause, then re-queue or delete it.",
    DIGEST: "GET /api/status shows every managed secret.",
}


@dataclass(frozen=True)
class Event:
    kind: str
    secret: str
    vault: str
    version: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_on: datetime | None = None
    days_to_expiry: float | None = None
    outcome: str | None = None
    error_code: str | None = None
    reason: str | None = None
    rotation_type: str | None = None
    trace_id: str | None = None
    detail: dict[str, Any] | None = None

    @property
    def day(self) -> str:
        return self.time.astimezone(UTC).strftime("%Y-%m-%d")

    @property
    def dedup_key(self) -> str:
        """One notification per (secret, version, kind, day)."""
        return f"{self.day}|{self.kind}|{self.vault}|{self.secret}|{self.version or '-'}"

    @property
    def message_id(self) -> str:
        """Stable for the dedup key: the webhook-id receivers dedupe on, across retries and instances."""
        return "msg_" + hashlib.sha256(self.dedup_key.encode()).hexdigest()[:32]

    @property
    def title(self) -> str:
        return TITLES.get(self.kind, self.kind)

    @property
    def advice(self) -> str:
        return ADVICE.get(self.kind, "").replace("{name}", self.secret)
