"""A secret's versions in the order Key Vault created them, and which one is current or pending.

Key Vault's `created` has one-second resolution, so versions written in the same second are ordered
by the lineage tag a rotation writes (RotationPreviousVersion: the new version names the one it
supersedes) — enough to tell a rotation's result from its predecessor without reading a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .policy import VersionInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _lineage_depth(info: VersionInfo, by_id: dict[str, VersionInfo]) -> int:
    depth, seen, cursor = 0, set(), info
    while cursor.previous_version and cursor.previous_version in by_id and cursor.version not in seen:
        seen.add(cursor.version)
        cursor = by_id[cursor.previous_version]
        depth += 1
    return depth


@dataclass(frozen=True)
class SecretHistory:
    """All versions of one secret, oldest first."""

    name: str
    versions: tuple[VersionInfo, ...]

    @classmethod
    def from_versions(cls, name: str, versions: Sequence[VersionInfo]) -> SecretHistory:
        by_id = {v.version: v for v in versions if v.version}
        ordered = sorted(
            versions,
            key=lambda v: (
                v.created or _EPOCH,
                _lineage_depth(v, by_id),
                v.updated or _EPOCH,
                v.version or "",
            ),
        )
        return cls(name, tuple(ordered))

    @property
    def latest(self) -> VersionInfo | None:
        """What Key Vault serves for the name without a version."""
        return self.versions[-1] if self.versions else None

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

    def last_enabled_before(self, version: str | None) -> VersionInfo | None:
        found = False
        for info in reversed(self.versions):
            if found and info.enabled and not info.is_pending:
                return info
            if info.version == version:
                found = True
        return None


async def read_history(calls: Any, client: Any, name: str) -> SecretHistory:
    """All versions' properties (never values), 25 per page; empty when the secret does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    versions: list[VersionInfo] = []
    try:
        async for page in calls.pages(
            "GetSecretVersions", client.list_properties_of_secret_versions(name, max_page_size=25)
        ):
            versions.extend(VersionInfo.from_properties(p) for p in page)
    except ResourceNotFoundError:
        pass
    return SecretHistory.from_versions(name, versions)
