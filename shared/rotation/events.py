"""Key Vault events (Event Grid or CloudEvents schema), parsed leniently, and what each one asks for.

The documented examples themselves send NBF/EXP as strings, use PascalCase (the 2018 schema used
camelCase) and carry stray spaces in keys and values, so every field is looked up case- and
space-insensitively and times accept numbers or numeric strings.
"""

from __future__ import annotations

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
    except (TypeError, ValueError):
        raise EventError(
            f"data.{field} must be epoch seconds (number or numeric string), got {raw!r}"
        ) from None
    return datetime.fromtimestamp(seconds, UTC)


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

    @property
    def is_secret(self) -> bool:
        return (self.object_type or "secret").lower() == "secret"


def parse_event(
    event_type: str, data: Any, *, subject: str | None = None, event_id: str | None = None
) -> KeyVaultEvent:
    """Build a KeyVaultEvent from an event's type and data (a dict, or a JSON string of one)."""
    if isinstance(data, (str, bytes)):
        import json

        try:
            data = json.loads(data)
        except ValueError:
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
    if not NAME_PATTERN.match(str(name)):  # refused here: the vault would refuse it on every redelivery
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
    )
