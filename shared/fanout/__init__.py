"""Fan-out on Storage Queues (SWEEP_MODE=queue): the timer enqueues one scan message per vault; scans
list one page each and enqueue paced rotate/cleanup messages; each message is one idempotent operation.

Queue functions in blueprints/queues.py call `handle(step, body)` and `poisoned(queue, body)`; the timers
call `start_sweeps(kind)`. Messages (shared.fanout.messages) never carry a secret value.
"""

from __future__ import annotations

from typing import Any

from .messages import CleanupMessage, MessageError, RotateMessage, ScanMessage, decode, encode, operation_id
from .steps import POISONED, Fanout, StepResult, default_fanout


async def start_sweeps(kind: str) -> None:
    await (await default_fanout()).start_sweeps("cleanup" if kind == "cleanup" else "rotation")


async def handle(step: str, body: str | bytes) -> dict[str, Any]:
    return (await (await default_fanout()).handle(step, body)).to_dict()


async def poisoned(queue: str, body: str | bytes, dequeue_count: int | None = None) -> dict[str, Any]:
    return (await default_fanout()).poisoned(queue, body, dequeue_count).to_dict()


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
