"""Key Vault events from Event Grid (either schema) → shared.rotation.events.handle.

Stale, duplicate and out-of-order events are no-ops by construction (the engine re-checks the vault).
A transient failure is raised so Event Grid redelivers; a permanent or poison one is logged, not retried.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from shared.rotation.events import handle

bp = func.Blueprint()


def _parts(event: Any) -> tuple[str, Any, str | None, str | None]:
    """(type, data, subject, id) of a func.EventGridEvent (event_type) or a func.CloudEvent (type)."""
    event_type = getattr(event, "event_type", None) or getattr(event, "type", None) or ""
    try:
        data = event.get_json()
    except (ValueError, RecursionError):  # a body the host could not decode: poison, acknowledged
        data = None
    return event_type, data, getattr(event, "subject", None), getattr(event, "id", None)


@bp.function_name("keyvault_events")
@bp.event_grid_trigger(arg_name="event")
async def keyvault_events(event: func.EventGridEvent) -> None:
    event_type, data, subject, event_id = _parts(event)
    await handle(event_type, data, subject=subject, event_id=event_id)
