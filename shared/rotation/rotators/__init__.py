"""Rotators: how a new credential is made and put into service, one idempotent step at a time.

The engine owns every vault write; a rotator owns the target. The order is fixed (AWS's protocol on
Key Vault): `create_pending` draws the value → the engine stores it as a disabled, pending version →
`apply` puts it on the target → `test` proves it works → the engine promotes it → `finish` tidies the
target. Each step may run again after a crash with the same pending value, so each must be a no-op
when its effect is already there.

Where the target makes the value itself (a regenerated storage key, an Entra `addPassword`), `apply`
returns the new credential and the engine stores it as a second pending version (same operation id)
before `test` runs, so a crash cannot lose it. On resume `apply` receives that stored value and must
recognise that its effect is already there.

Failures of a target map to exactly one of `shared.errors.TargetUnavailable` (retry later),
`TargetRefused` (stop; the message says what to grant) or `CredentialRejected` (draw a new value).

Each target lives in a module of its own here, imported only when a secret names its RotationType,
so a cold start never pays for a database driver or an ARM client it does not use.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ...vault.versions import VersionInfo
from ..policy import PolicyError, RotationPolicy

if TYPE_CHECKING:
    from ...settings import Settings


@dataclass(frozen=True)
class PendingCredential:
    """A credential not yet in service; `tags` are extra tags the new version carries (e.g. CredentialId)."""

    value: str = field(repr=False)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RotationContext:
    """What a rotator may know: the secret, its policy and current version, the operation, the app's
    settings, and readers for values (never logged)."""

    name: str
    policy: RotationPolicy
    current: VersionInfo | None
    operation_id: str
    now: datetime
    # Reads a version's value of this secret (the current one by default): to log in with the old credential.
    read_value: Callable[[str | None], Awaitable[str]]
    settings: Settings | None = None
    # Reads another secret's current value by name (an AdminSecret tag), through the same vault client.
    read_secret: Callable[[str], Awaitable[str]] | None = None


class Rotator(Protocol):
    """The four target-side steps. `touches_target` False means apply/test/finish are no-ops."""

    rotation_type: str
    touches_target: bool

    def validate(self, policy: RotationPolicy) -> None:
        """Raise PolicyError when the tags cannot work for this rotator (checked before anything is written)."""

    async def create_pending(self, ctx: RotationContext) -> PendingCredential: ...

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> PendingCredential | None: ...

    async def test(self, ctx: RotationContext, pending: PendingCredential) -> None: ...

    async def finish(self, ctx: RotationContext, pending: PendingCredential) -> None: ...


# RotationType tag → "module:attribute" of its rotator, imported on first use.
_KNOWN: dict[str, str] = {
    "random": "shared.rotation.rotators.random_value:RandomValueRotator",
    "postgresql": "shared.rotation.rotators.postgresql:PostgresRotator",
    "mysql": "shared.rotation.rotators.mysql:MySqlRotator",
    "storage-account-key": "shared.rotation.rotators.azure_keys:StorageAccountKeyRotator",
    "cosmosdb-key": "shared.rotation.rotators.azure_keys:CosmosDbKeyRotator",
    "servicebus-key": "shared.rotation.rotators.azure_keys:ServiceBusKeyRotator",
    "eventhubs-key": "shared.rotation.rotators.azure_keys:EventHubsKeyRotator",
    "redis-key": "shared.rotation.rotators.azure_keys:RedisKeyRotator",
    "entra-app-secret": "shared.rotation.rotators.entra_app:EntraAppSecretRotator",
}
_LOADED: dict[str, Rotator] = {}


def register_rotator(rotator: Rotator) -> None:
    """Make a rotator instance available to the RotationType tag (tests register fakes here)."""
    _LOADED[rotator.rotation_type] = rotator


def known_rotation_types() -> list[str]:
    return sorted(set(_KNOWN) | set(_LOADED))


def _load(rotation_type: str) -> Rotator | None:
    if rotation_type in _LOADED:
        return _LOADED[rotation_type]
    target = _KNOWN.get(rotation_type)
    if target is None:
        return None
    module_name, _, attribute = target.partition(":")
    rotator: Rotator = getattr(importlib.import_module(module_name), attribute)()
    _LOADED[rotation_type] = rotator
    return rotator


def rotator_for(policy: RotationPolicy) -> Rotator:
    rotator = _load(policy.rotation_type)
    if rotator is None:
        raise PolicyError(
            f"tag RotationType={policy.rotation_type!r} is unknown; use one of {', '.join(known_rotation_types())}"
        )
    rotator.validate(policy)
    return rotator
