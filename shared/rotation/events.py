"""Key Vault events (Event Grid or CloudEvents schema), parsed leniently, and what each one asks for.

The documented examples themselves send NBF/EXP as strings, use PascalCase (the 2018 schema used
camelCase) and carry stray spaces in keys and values, so every field is looked up case- and
space-insensitively and times accept numbers or numeric strings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..validation import NAME_PATTERN

NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
EXPIRED = "Microsoft.KeyVault.SecretExpired"
NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"


class EventError(ValueError):
    """The event cannot be understood; the message says which field is wrong."""


def _field(data: Mapping[str, Any], name: str) -> Any:
    wanted = name.lower()
    for key, value in data.items():
        if isinstance(key, str) and key.strip().lower() == wanted:
            return value.strip() if isinstance(value, str) else value
    return None


def _epoch(raw: Any, field: str) -> datetime | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        seconds = float(raw.strip() if isinstance(raw, str) else raw)
        return datetime.fromtimestamp(seconds, UTC)  # nan, inf and 1e20 fail here (ValueError/OverflowError)
    except (TypeError, ValueError, OverflowError, OSError):
        raise EventError(
            f"data.{field} must be epoch seconds (a finite number or numeric string), got {str(raw)[:40]!r}"
        ) from None


@dataclass(frozen=True)
class KeyVaultEvent:
    """The parts of a Key Vault object event this app acts on."""

    event_id: str | None
    event_type: str
    vault_name: str | None
    object_type: str | None
    name: str
    version: str | None
    not_before: datetime | None
    expires_on: datetime | None
    object_id: str | None = None  # https://{vault host}/secrets/{name}/{version}

    @property
    def is_secret(self) -> bool:
        return (self.object_type or "secret").lower() == "secret"

    def vault_url(self, settings: Any) -> str | None:
        """The configured vault this event is about: by the host of data.Id, else by data.VaultName; an event
        naming neither is the only vault's. None: a vault this app is not configured for."""
        from urllib.parse import urlparse

        host = urlparse(self.object_id).netloc if self.object_id else ""
        if host:
            return settings.vault_named(host)  # type: ignore[no-any-return]
        if self.vault_name:
            return settings.vault_named(self.vault_name)  # type: ignore[no-any-return]
        return settings.vault_url if len(settings.vault_urls) == 1 else None


def parse_event(
    event_type: str, data: Any, *, subject: str | None = None, event_id: str | None = None
) -> KeyVaultEvent:
    """Build a KeyVaultEvent from an event's type and data (a dict, or a JSON string of one)."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise EventError("event data is not JSON") from None
    if not isinstance(data, Mapping):
        raise EventError("event data must be an object with ObjectName, Version, NBF and EXP")
    name = _field(data, "ObjectName") or (subject.strip() if subject else None)
    object_id = _field(data, "Id")
    version = _field(data, "Version")
    if (not name or not version) and isinstance(object_id, str):
        # https://{vault}/secrets/{name}/{version}
        parts = [p for p in object_id.split("/") if p]
        if len(parts) >= 4 and parts[-3].lower() == "secrets":
            name = name or parts[-2]
            version = version or parts[-1]
    if not name:
        raise EventError("event names no secret: data.ObjectName, subject and data.Id are all missing")
    if not NAME_PATTERN.fullmatch(str(name)):  # refused here: the vault would refuse it on every redelivery
        raise EventError(f"data.ObjectName {str(name)[:130]!r} is not a Key Vault secret name")
    return KeyVaultEvent(
        event_id=event_id,
        event_type=(event_type or "").strip(),
        vault_name=_field(data, "VaultName"),
        object_type=_field(data, "ObjectType"),
        name=str(name),
        version=str(version) if version else None,
        not_before=_epoch(_field(data, "NBF"), "NBF"),
        expires_on=_epoch(_field(data, "EXP"), "EXP"),
        object_id=object_id if isinstance(object_id, str) and object_id.startswith("https://") else None,
    )


_log = logging.getLogger("shared.rotation.events")
alert_log = logging.getLogger("secrets.alert")


async def handle(
    event_type: str, data: Any, *, subject: str | None = None, event_id: str | None = None
) -> None:
    """Act on one Key Vault event: SecretNearExpiry rotates iff the event's version is still current and
    due; SecretExpired raises an alert line; everything else needs no action (one DEBUG line).

    A poison event (unparseable, a name Key Vault cannot hold, a time that is no time) is logged and
    acknowledged — redelivering it could never help. A transient failure (throttling, an unreachable
    vault) is raised, so Event Grid redelivers it; a permanent one is logged and acknowledged."""
    from ..errors import DomainError
    from . import RotationRequest, default_engine

    try:
        parsed = parse_event(event_type, data, subject=subject, event_id=event_id)
    except EventError as exc:
        _log.warning("keyvault_events: ignoring event %s of type %s: %s", event_id, str(event_type)[:80], exc)
        return
    if not parsed.is_secret:
        _log.debug("keyvault_events: %s for a %s needs no action", parsed.event_type, parsed.object_type)
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
        _log.debug("keyvault_events: %s for '%s' needs no action", parsed.event_type, parsed.name)
        return
    if not parsed.version:
        _log.warning(
            "keyvault_events: SecretNearExpiry for '%s' has no version; the timer sweep handles it",
            parsed.name,
        )
        return
    from ..settings import get_settings

    vault = parsed.vault_url(get_settings())
    if vault is None:
        _log.warning(
            "keyvault_events: ignoring event %s about '%s' in vault %s, which is not configured "
            "(KEY_VAULT_URL, KEY_VAULT_URLS): subscribe only the app's vaults, or add this one",
            event_id,
            parsed.name,
            str(parsed.vault_name or parsed.object_id or "?")[:120],
        )
        return
    engine = await default_engine(vault)
    try:
        result = await engine.rotate(
            parsed.name,
            RotationRequest(trigger="event", expected_version=parsed.version, caller=f"eventgrid:{event_id}"),
        )
    except DomainError as exc:
        if exc.transient:
            raise  # Event Grid redelivers (the subscription's retry policy)
        _log.warning("keyvault_events: '%s' not rotated: %s %s", parsed.name, exc.code, exc.message)
        return
    _log.info(
        "keyvault_events: %s '%s' → %s (%s)",
        parsed.event_type,
        parsed.name,
        result.outcome.value,
        result.reason,
    )
