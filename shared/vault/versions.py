"""One model of a secret version's properties, one ordering of a secret's versions, one time format.

A `VersionInfo` has no field for a value: whatever holds one can be logged and returned. Key Vault's
`created` has one-second resolution, so versions written in the same second are ordered by the lineage
tag a rotation writes (RotationPreviousVersion: the new version names the one it supersedes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

# Bookkeeping tags the app writes on versions it rotates (never copied forward as they are).
TAG_STATE = "RotationState"
TAG_OPERATION = "RotationOperationId"
TAG_PREVIOUS = "RotationPreviousVersion"
TAG_REVOKE_AFTER = "RotationRevokeAfter"
TAG_REVOKED = "RotationRevoked"
BOOKKEEPING_TAGS = (TAG_STATE, TAG_OPERATION, TAG_PREVIOUS, TAG_REVOKE_AFTER, TAG_REVOKED)
STATE_PENDING = "pending"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC to the second: the API's times and the app's timestamp tags."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_optional(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def parse_time(raw: str | None) -> datetime | None:
    """A timestamp tag written by `format_time` (or any ISO 8601 form); None when absent or unreadable."""
    if not raw or not raw.strip():
        return None
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _from_unix(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def tag(tags: Mapping[str, str] | None, name: str) -> str | None:
    """Tag lookup that forgives case and stray spaces in the tag name (tags are edited by hand)."""
    if not tags:
        return None
    if name in tags:
        return tags[name]
    wanted = name.lower()
    for key, value in tags.items():
        if key.strip().lower() == wanted:
            return value
    return None


@dataclass(frozen=True)
class VersionInfo:
    """One version's properties, detached from the SDK so decisions are pure functions."""

    name: str
    version: str | None
    enabled: bool = True
    created: datetime | None = None
    updated: datetime | None = None
    not_before: datetime | None = None
    expires_on: datetime | None = None
    content_type: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    id: str | None = None

    @classmethod
    def from_properties(cls, props: Any) -> VersionInfo:
        """From the SDK's SecretProperties (a listed item, or a secret's `.properties`)."""
        return cls(
            name=props.name or "",
            version=props.version,
            enabled=bool(props.enabled) if props.enabled is not None else True,
            created=props.created_on,
            updated=props.updated_on,
            not_before=props.not_before,
            expires_on=props.expires_on,
            content_type=props.content_type,
            tags=dict(props.tags or {}),
            id=props.id,
        )

    @classmethod
    def from_wire(cls, item: Mapping[str, Any]) -> VersionInfo:
        """From one item of a GetSecrets / GetSecretVersions page (Key Vault's JSON), read as the SDK reads
        it: name and version from the id's path, times in unix seconds, an absent `enabled` as enabled."""
        ident = str(item.get("id") or "")
        segments = [s for s in urlsplit(ident).path.split("/") if s]
        attributes: Mapping[str, Any] = item.get("attributes") or {}
        enabled = attributes.get("enabled")
        return cls(
            name=segments[1] if len(segments) > 1 else "",
            version=segments[2] if len(segments) > 2 else None,
            enabled=bool(enabled) if enabled is not None else True,
            created=_from_unix(attributes.get("created")),
            updated=_from_unix(attributes.get("updated")),
            not_before=_from_unix(attributes.get("nbf")),
            expires_on=_from_unix(attributes.get("exp")),
            content_type=item.get("contentType"),
            tags=dict(item.get("tags") or {}),
            id=ident or None,
        )

    def as_json(self) -> dict[str, Any]:
        """camelCase, like the Key Vault REST API; times as RFC 3339 UTC; never a value."""
        return {
            "name": self.name,
            "version": self.version,
            "id": self.id,
            "contentType": self.content_type,
            "tags": dict(self.tags),
            "enabled": self.enabled,
            "notBefore": format_optional(self.not_before),
            "expiresOn": format_optional(self.expires_on),
            "createdOn": format_optional(self.created),
            "updatedOn": format_optional(self.updated),
        }

    @property
    def operation_id(self) -> str | None:
        return tag(self.tags, TAG_OPERATION)

    @property
    def is_pending(self) -> bool:
        return (tag(self.tags, TAG_STATE) or "").strip().lower() == STATE_PENDING

    @property
    def previous_version(self) -> str | None:
        return tag(self.tags, TAG_PREVIOUS)

    @property
    def revoke_after(self) -> datetime | None:
        return parse_time(tag(self.tags, TAG_REVOKE_AFTER))


def _lineage_depth(info: VersionInfo, by_id: dict[str, VersionInfo]) -> int:
    depth, seen, cursor = 0, set(), info
    while cursor.previous_version and cursor.previous_version in by_id and cursor.version not in seen:
        seen.add(cursor.version)
        cursor = by_id[cursor.previous_version]
        depth += 1
    return depth


@dataclass(frozen=True)
class SecretHistory:
    """All versions of one secret, oldest first (the one ordering everything uses)."""

    name: str
    versions: tuple[VersionInfo, ...]

    @classmethod
    def from_versions(cls, name: str, versions: Sequence[VersionInfo]) -> SecretHistory:
        by_id = {v.version: v for v in versions if v.version}
        # A stable sort: versions that tie on every key keep the vault's listing order (oldest first).
        ordered = sorted(
            versions, key=lambda v: (v.created or _EPOCH, _lineage_depth(v, by_id), v.updated or _EPOCH)
        )
        return cls(name, tuple(ordered))

    @property
    def latest(self) -> VersionInfo | None:
        """What Key Vault serves for the name without a version."""
        return self.versions[-1] if self.versions else None

    def newest_first(self) -> list[VersionInfo]:
        return list(reversed(self.versions))

    def find(self, version: str | None) -> VersionInfo | None:
        for info in self.versions:
            if info.version == version:
                return info
        return None

    def before(self, version: str | None) -> VersionInfo | None:
        """The version created just before `version` (the one a rotation superseded)."""
        for index, info in enumerate(self.versions):
            if info.version == version:
                return self.versions[index - 1] if index > 0 else None
        return None

    def promoted_twice(self) -> list[VersionInfo]:
        """Enabled, promoted versions that supersede a version another promoted version already superseded.

        Exactly-once makes this empty; if it ever happens (a lease lost mid-rotation), every such version
        but the one Key Vault serves is reported, so the plan and the log name it."""
        by_previous: dict[str, list[VersionInfo]] = {}
        for info in self.versions:
            if info.previous_version and info.operation_id and info.enabled and not info.is_pending:
                by_previous.setdefault(info.previous_version, []).append(info)
        return [extra for group in by_previous.values() if len(group) > 1 for extra in group[:-1]]
