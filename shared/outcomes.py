"""What this process saw happen, for the readers that must not import each other.

Telemetry records each secret's last outcome here; notifications (the daily digest) and the status page read
it. Notification deliveries are reported here and telemetry counts them. Keeping the record apart is what lets
`shared.telemetry` call `shared.notifications` without the notifications importing telemetry back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

MAX_REMEMBERED = 10_000  # secret names; the oldest are forgotten first


@dataclass(frozen=True)
class Recent:
    """The last rotation (or cleanup) outcome this process saw for a secret; no value, ever."""

    outcome: str
    at: datetime
    error_code: str | None = None
    reason: str | None = None
    trigger: str | None = None


_recent: OrderedDict[str, Recent] = OrderedDict()

# Called with (channel, kind, outcome) for every notification delivery attempt (telemetry registers a counter).
NOTIFICATION_LISTENERS: list[Callable[[str, str, str], None]] = []


def remember(name: str, recent: Recent) -> None:
    _recent[name] = recent
    _recent.move_to_end(name)
    while len(_recent) > MAX_REMEMBERED:
        _recent.popitem(last=False)


def recent_outcomes() -> dict[str, Recent]:
    """Last outcome per secret name in this process (the status page merges it with the vault's state)."""
    return dict(_recent)


def forget() -> None:
    _recent.clear()


def notification_delivered(channel: str, kind: str, outcome: str) -> None:
    for listener in list(NOTIFICATION_LISTENERS):
        listener(channel, kind, outcome)
