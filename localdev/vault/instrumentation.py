"""What the test controls observe and inject on the vault's request path: request counts and fault rules.

The wire layer (`api.VaultApi`) records into `RequestStats` and asks `FaultPlan` for a fault on every
transaction; the control API (`control.ControlApi`) reads and changes both. Neither knows the other.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

OPERATIONS = (
    "SetSecret",
    "GetSecret",
    "GetSecrets",
    "GetSecretVersions",
    "UpdateSecret",
    "DeleteSecret",
    "GetDeletedSecret",
    "GetDeletedSecrets",
    "PurgeDeletedSecret",
    "RecoverDeletedSecret",
    "BackupSecret",
    "RestoreSecret",
)


class RequestStats:
    """Transactions by REST operationId and responses by status; bodiless challenge requests counted apart.

    `dropped`: connections the fault plan cut (before or after the operation ran); `disconnected`: clients
    that went away mid-request on their own (no status is counted for either: nothing was answered).
    `seeded`: secrets the test controls' bulk seed inserted (never counted as transactions)."""

    def __init__(self) -> None:
        self.operations: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.challenges = 0
        self.dropped = 0
        self.disconnected = 0
        self.seeded = 0

    def record_challenge(self) -> None:
        self.challenges += 1
        self.statuses["401"] += 1

    def record_operation(self, operation: str) -> None:
        self.operations[operation] += 1

    def record_status(self, status: int) -> None:
        self.statuses[str(status)] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "operations": dict(self.operations),
            "statuses": dict(self.statuses),
            "challenges": self.challenges,
            "total": sum(self.operations.values()),
            "dropped": self.dropped,
            "disconnected": self.disconnected,
            "seeded": self.seeded,
        }

    def reset(self) -> None:
        self.operations.clear()
        self.statuses.clear()
        self.challenges = 0
        self.dropped = 0
        self.disconnected = 0
        self.seeded = 0


@dataclass
class FaultRule:
    """Fail `rate` of an operation's transactions (None: every operation) with `status`, or drop them.

    `drop`: the connection is cut before the operation runs (nothing changes in the vault).
    `drop_response`: the operation runs — a write commits — and then the connection is cut instead of
    answering, as when Key Vault accepted a create but the response was lost on the way back.
    With `count`, only the next `count` matching transactions (deterministic retry tests); then it ends."""

    operation: str | None
    status: int = 0
    rate: float = 1.0
    retry_after: float | None = None
    drop: bool = False
    drop_response: bool = False
    latency: float = 0.0
    count: int | None = None


class FaultPlan:
    """The active fault rules and the random source that decides which transactions they hit.

    Seeded (`seed=`, or `reseed()`), the same sequence of transactions meets the same faults on every run."""

    def __init__(self, seed: int | None = None) -> None:
        self.rules: dict[str | None, FaultRule] = {}
        self.seed = seed
        self._random = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        self.seed = seed
        self._random = random.Random(seed)

    def set(self, rule: FaultRule) -> None:
        if rule.operation is not None and rule.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {rule.operation!r}; use one of {', '.join(OPERATIONS)}")
        if not 0 <= rule.rate <= 1:
            raise ValueError(f"rate must be between 0 and 1, got {rule.rate}")
        if rule.status and not 400 <= rule.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {rule.status}")
        if rule.count is not None and rule.count < 1:
            raise ValueError(f"count must be at least 1, got {rule.count}")
        if sum((bool(rule.status), rule.drop, rule.drop_response)) > 1:
            raise ValueError("give one of status, drop=true or drop_response=true")
        if not (rule.status or rule.drop or rule.drop_response or rule.latency):
            raise ValueError("give a status, drop=true, drop_response=true or a latency")
        self.rules[rule.operation] = rule

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, operation: str) -> FaultRule | None:
        if not self.rules:
            return None
        key = operation if operation in self.rules else None
        rule = self.rules.get(key)
        if rule is None or self._random.random() >= rule.rate:
            return None
        if rule.count is not None:
            rule.count -= 1
            if rule.count == 0:
                del self.rules[key]
        return rule
