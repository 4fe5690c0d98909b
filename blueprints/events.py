"""Key Vault events from Event Grid (either schema): SecretNearExpiry rotates iff the event's version is
still current and due; SecretExpired raises an alert line; everything else is logged and ignored.

Stale, duplicate and out-of-order events are no-ops by construction (the engine re-checks the vault).
A transient vault failure is raised so Event Grid redelivers; a permanent one is logged, not retried.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from shared.errors import DomainError
from shared.rotation import RotationRequest, default_engine
from shared.rotation.events import EXPIRED, NEAR_EXPIRY, EventError, parse_event

bp = func.Blueprint()
_log = logging.getLogger(__name__)
alert_log = logging.getLogger("secrets.alert")


def _parts(event: Any) -> tuple[str, Any, str | None, str | None]:
    """(type, data, subject, id) of a func.EventGridEvent (event_type) or a func.CloudEvent (type)."""
    event_type = getattr(event, "event_type", None) or getattr(event, "type", None) or ""
    return event_type, event.get_json(), getattr(event, "subject", None), getattr(event, "id", None)


@bp.function_name("keyvault_events")
@bp.event_grid_trigger(arg_name="event")
async def keyvault_events(event: func.EventGridEvent) -> None:
    event_type, data, subject, event_id = _parts(event)
    try:
        parsed = parse_event(event_type, data, subject=subject, event_id=event_id)
    except EventError as exc:
        _log.warning("keyvault_events: ignoring event %s of type %s: %s", event_id, event_type, exc)
        return
    if not parsed.is_secret:
        _log.info("keyvault_events: ignoring %s for a %s", parsed.event_type, parsed.object_type)
        return
    if parsed.event_type == EXPIRED:
        record = {
            "alert": "SecretExpired",
            "name": parsed.name,
            "version": parsed.version,
            "expiresOn": parsed.expires_on.isoformat() if parsed.expires_on else None,
            "eventId": event_id,
        }
        alert_log.warning("alert %s", json.dumps(record, sort_keys=True), extra={"alert": record})
        return
    if parsed.event_type != NEAR_EXPIRY:
        _log.info("keyvault_events: %s for '%s' needs no action", parsed.event_type, parsed.name)
        return
    if not parsed.version:
        _log.warning(
            "keyvault_events: SecretNearExpiry for '%s' has no version; the timer sweep handles it",
            parsed.name,
        )
        return
    engine = await default_engine()
    try:
        result = await engine.rotate(
            parsed.name,
            RotationRequest(trigger="event", expected_version=parsed.version, caller=f"eventgrid:{event_id}"),
        )
    except DomainError as exc:
        if exc.transient:
            raise  # Event Grid redelivers (retry policy of the subscription)
        _log.warning("keyvault_events: '%s' not rotated: %s %s", parsed.name, exc.code, exc.message)
        return
    _log.info(
        "keyvault_events: %s '%s' → %s (%s)",
        parsed.event_type,
        parsed.name,
        result.outcome.value,
        result.reason,
    )
