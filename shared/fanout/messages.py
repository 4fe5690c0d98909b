"""The fan-out's message contract: JSON objects, `schema` 1, never a secret value.

A scan message names a vault and where its listing stands (a continuation token); a rotate or cleanup
message names one secret and the version it was planned from. Every work message carries an operation
id derived from vault, secret, the version it replaces and the kind of work, so a duplicate (the queue
delivers at least once, a scan may be re-run) is the same operation and a no-op once done. The body is
all a poison copy keeps (the host copies only the body), so everything a log line needs is inside.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from ..validation import NAME_PATTERN

SCHEMA = 1
MAX_BODY = 48 * 1024  # well below the 64 KiB a queue message may hold once base64-encoded
_NAMESPACE = uuid.UUID("6f1c3c56-8d0e-4c53-9a2f-3b7d1c2a9e10")  # fixed: op ids must be stable across releases

ScanKind = Literal["rotation", "cleanup"]
Listing = Literal["live", "deleted"]
CleanupAction = Literal["tidy", "expire", "purge"]


class MessageError(ValueError):
    """A body that is not a message of this contract; the message names the field. Never retried."""


def operation_id(vault_url: str, name: str, version: str | None, kind: str) -> str:
    """The id of one unit of work: the same vault, secret, replaced version and kind give the same id."""
    key = "|".join((vault_url.rstrip("/").lower(), name.lower(), version or "", kind))
    return uuid.uuid5(_NAMESPACE, key).hex


def listed_version(version: str | None, updated: datetime | None) -> str | None:
    """What names the version a listing shows, for operation_id: Key Vault lists a secret without its
    version id, so then the current version's `updated` time stands in (it changes with every new version
    and every property change, so a later sweep is a new operation and a duplicate of this one is not)."""
    if version:
        return version
    return f"updated:{updated.astimezone(UTC).isoformat(timespec='microseconds')}" if updated else None


@dataclass(frozen=True)
class ScanMessage:
    """List one page of `vault` from `token` and enqueue the work it shows; then the next page."""

    vault: str
    sweep_id: str
    kind: ScanKind = "rotation"
    listing: Listing = "live"
    token: str | None = None
    page: int = 0
    # Unix time of the vault's next free create slot: rotations of later pages are scheduled after it.
    next_slot: float = 0.0
    attempt: int = 0  # re-enqueues of this page after throttling (reset for the next page)
    type: str = field(default="scan", init=False)


@dataclass(frozen=True)
class RotateMessage:
    """Rotate `name` in `vault` once, if still due: planned from `version` (the one it replaces)."""

    vault: str
    name: str
    op_id: str
    version: str | None = None
    sweep_id: str | None = None
    # "sweep": the engine re-decides from the vault (a pending version is resumed); "event": only while
    # `version` is still current (a SecretNearExpiry about an older version is stale).
    source: Literal["sweep", "event"] = "sweep"
    attempt: int = 0  # re-enqueues after throttling (not the queue's dequeue count)
    type: str = field(default="rotate", init=False)


@dataclass(frozen=True)
class CleanupMessage:
    """Tidy one live secret (disable superseded versions, delete an expired one) or purge a deleted one."""

    vault: str
    name: str
    action: CleanupAction
    op_id: str
    version: str | None = None
    sweep_id: str | None = None
    attempt: int = 0
    type: str = field(default="cleanup", init=False)


Message = ScanMessage | RotateMessage | CleanupMessage
_TYPES: dict[str, type[ScanMessage] | type[RotateMessage] | type[CleanupMessage]] = {
    "scan": ScanMessage,
    "rotate": RotateMessage,
    "cleanup": CleanupMessage,
}
_CHOICES: dict[str, tuple[Any, ...]] = {
    "kind": ("rotation", "cleanup"),
    "listing": ("live", "deleted"),
    "action": ("tidy", "expire", "purge"),
    "source": ("sweep", "event"),
}


def encode(message: Message) -> str:
    body = {"schema": SCHEMA, **asdict(message)}
    text = json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_BODY:
        raise MessageError(f"a {message.type} message would be {len(text)} bytes (at most {MAX_BODY})")
    return text


def _text(document: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = document.get(name)
    if value is None:
        if required:
            raise MessageError(f"field {name!r} is missing")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 8192:
        raise MessageError(f"field {name!r} must be a non-empty string")
    return value


def decode(body: str | bytes) -> Message:
    """The message in `body` (already base64-decoded by the host); MessageError names what is wrong."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError("the body is not UTF-8 text") from None
    if len(body) > MAX_BODY:
        raise MessageError(f"the body is {len(body)} characters (at most {MAX_BODY})")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise MessageError("the body is not JSON") from None
    if not isinstance(document, dict):
        raise MessageError("the body must be a JSON object")
    if document.get("schema") != SCHEMA:
        raise MessageError(f"field 'schema' must be {SCHEMA}, got {str(document.get('schema'))[:20]!r}")
    kind = document.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError(f"field 'type' must be one of {', '.join(_TYPES)}, got {str(kind)[:20]!r}")
    values: dict[str, Any] = {}
    for spec in fields(cls):
        if not spec.init:
            continue
        required = spec.default is MISSING
        raw = document.get(spec.name)
        if spec.name in ("page", "attempt"):
            if raw is None:
                continue
            if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= 10_000_000:
                raise MessageError(f"field {spec.name!r} must be a whole number ≥ 0")
            values[spec.name] = raw
        elif spec.name == "next_slot":
            if raw is None:
                continue
            if not isinstance(raw, (int, float)) or isinstance(raw, bool) or not 0 <= raw < 1e11:
                raise MessageError("field 'next_slot' must be a unix time")
            values[spec.name] = float(raw)
        else:
            text = _text(document, spec.name, required=required)
            if text is None:
                continue
            if spec.name in _CHOICES and text not in _CHOICES[spec.name]:
                raise MessageError(f"field {spec.name!r} must be one of {', '.join(_CHOICES[spec.name])}")
            values[spec.name] = text
    if "name" in values and not NAME_PATTERN.fullmatch(values["name"]):
        raise MessageError("field 'name' is not a Key Vault secret name")
    if not str(values.get("vault", "")).startswith("https://"):
        raise MessageError("field 'vault' must be an https:// vault URL")
    return cls(**values)
