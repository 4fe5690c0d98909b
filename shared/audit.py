"""One structured audit line per mutation: who did what to which secret, with what outcome and how long.

The line never carries a value: `AuditEntry` has no field for one, and extra fields are restricted to
metadata. Use it as `async with audited("write", name, caller=...) as entry: ...; entry.version = v`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

audit_log = logging.getLogger("secrets.audit")


@dataclass
class AuditEntry:
    operation: str
    name: str | None
    caller: str | None = None
    version: str | None = None
    outcome: str = "ok"
    error_code: str | None = None
    duration_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # counts, flags: metadata only

    def emit(self) -> None:
        record = {k: v for k, v in asdict(self).items() if v not in (None, {}, "")}
        audit_log.info("audit %s", json.dumps(record, sort_keys=True, default=str), extra={"audit": record})


@asynccontextmanager
async def audited(
    operation: str, name: str | None, *, caller: str | None = None
) -> AsyncIterator[AuditEntry]:
    """Time the block and emit one audit line, with the error code if it raised."""
    entry = AuditEntry(operation=operation, name=name, caller=caller)
    started = time.perf_counter()
    try:
        yield entry
    except BaseException as exc:
        entry.outcome = "error"
        entry.error_code = getattr(exc, "code", None) or type(exc).__name__
        raise
    finally:
        entry.duration_ms = round((time.perf_counter() - started) * 1000, 2)
        entry.emit()
