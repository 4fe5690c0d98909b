"""Fan-out on Storage Queues (SWEEP_MODE=queue): the timer enqueues one scan message per vault; scans
list one page each and enqueue paced rotate/cleanup messages; each message is one idempotent operation.

Queue functions in blueprints/queues.py call `handle(step, body)` and `poisoned(queue, body)`; the timers
call `start_sweeps(kind)`. Messages (shared.fanout.messages) never carry a secret value.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .messages import (
        CleanupMessage,
        MessageError,
        RotateMessage,
        ScanMessage,
        decode,
        encode,
        operation_id,
    )
    from .steps import POISONED, Fanout, StepResult, default_fanout

# Loaded on first use, not when the blueprints import this package: an app in SWEEP_MODE=inline never
# needs them, and the cold start is a measured budget (bench/cold_start.py).
_LAZY = {
    **dict.fromkeys(
        (
            "CleanupMessage",
            "MessageError",
            "RotateMessage",
            "ScanMessage",
            "decode",
            "encode",
            "operation_id",
        ),
        ".messages",
    ),
    **dict.fromkeys(("POISONED", "Fanout", "StepResult", "default_fanout"), ".steps"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


async def start_sweeps(kind: str) -> None:
    from .steps import default_fanout

    await (await default_fanout()).start_sweeps("cleanup" if kind == "cleanup" else "rotation")


async def handle(step: str, body: str | bytes) -> dict[str, Any]:
    from .steps import default_fanout

    return (await (await default_fanout()).handle(step, body)).to_dict()


async def poisoned(queue: str, body: str | bytes, dequeue_count: int | None = None) -> dict[str, Any]:
    """A poison copy: the alert line and count (Fanout.poisoned), then the metric and a notification."""
    from .. import telemetry
    from .steps import default_fanout

    fan = await default_fanout()
    result = fan.poisoned(queue, body, dequeue_count)
    settings = fan.settings
    names = {"scan": settings.scan_queue, "rotate": settings.rotate_queue, "cleanup": settings.cleanup_queue}
    await telemetry.poisoned(
        names.get(queue, settings.events_queue),
        message_id=result.op_id,
        dequeue_count=dequeue_count,
        secret=result.name,
        reason=f"a {queue} message failed {dequeue_count or '?'} times and is in the poison queue",
        settings=settings.for_vault(result.vault) if result.vault in settings.vault_urls else settings,
    )
    return result.to_dict()


__all__ = [
    "POISONED",
    "CleanupMessage",
    "Fanout",
    "MessageError",
    "RotateMessage",
    "ScanMessage",
    "StepResult",
    "decode",
    "default_fanout",
    "encode",
    "handle",
    "operation_id",
    "poisoned",
    "start_sweeps",
]
