"""Rotators: how a new credential is made and put into service, one idempotent step at a time.

The engine owns every vault write; a rotator owns the target. The order is fixed (AWS's protocol on
Key Vault): `create_pending` draws the value → the engine stores it as a disabled, pending version →
`apply` puts it on the target → `test` proves it works → the engine promotes it → `finish` tidies the
target. Each step may run again after a crash with the same pending value, so each must be a no-op
when its effect is already there. The random rotator's target is the vault itself; rotators for
external targets (PostgreSQL roles next) implement the same four methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from .. import generator
from .policy import TAG_ALPHABET, TAG_LENGTH, PolicyError, RotationPolicy, VersionInfo


@dataclass(frozen=True)
class PendingCredential:
    """A credential not yet in service; `tags` are extra tags the new version carries (e.g. CredentialId)."""

    value: str = field(repr=False)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RotationContext:
    """What a rotator may know: the secret, its policy and current version, the operation, and a value reader."""

    name: str
    policy: RotationPolicy
    current: VersionInfo | None
    operation_id: str
    now: datetime
    # Reads a version's value (the current one by default) — for rotators that log in with the old credential.
    read_value: Callable[[str | None], Awaitable[str]]


class Rotator(Protocol):
    """The four target-side steps. `touches_target` False means apply/test/finish are no-ops."""

    rotation_type: str
    touches_target: bool

    def validate(self, policy: RotationPolicy) -> None:
        """Raise PolicyError when the tags cannot work for this rotator (checked before anything is written)."""

    async def create_pending(self, ctx: RotationContext) -> PendingCredential: ...

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> None: ...

    async def test(self, ctx: RotationContext, pending: PendingCredential) -> None: ...

    async def finish(self, ctx: RotationContext, pending: PendingCredential) -> None: ...


class RandomValueRotator:
    """The secret is the credential: a fresh random value from shared.generator, nothing else to change."""

    rotation_type = "random"
    touches_target = False

    def _spec(self, policy: RotationPolicy) -> tuple[int, str]:
        return policy.length or generator.DEFAULT_LENGTH, policy.alphabet or generator.DEFAULT_ALPHABET

    def validate(self, policy: RotationPolicy) -> None:
        length, alphabet = self._spec(policy)
        try:
            generator.check_spec(length, alphabet)
        except generator.GeneratorSpecError as exc:
            tag, value = (TAG_LENGTH, length) if exc.part == "length" else (TAG_ALPHABET, alphabet)
            raise PolicyError(f"tag {tag}={value!r} {exc.problem}") from None

    async def create_pending(self, ctx: RotationContext) -> PendingCredential:
        length, alphabet = self._spec(ctx.policy)
        return PendingCredential(generator.generate_value(length, alphabet))

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> None:
        return None

    async def test(self, ctx: RotationContext, pending: PendingCredential) -> None:
        return None

    async def finish(self, ctx: RotationContext, pending: PendingCredential) -> None:
        return None


_ROTATORS: dict[str, Rotator] = {"random": RandomValueRotator()}


def register_rotator(rotator: Rotator) -> None:
    """Make a rotator available to the RotationType tag (the PostgreSQL rotator registers itself here)."""
    _ROTATORS[rotator.rotation_type] = rotator


def rotator_for(policy: RotationPolicy) -> Rotator:
    rotator = _ROTATORS.get(policy.rotation_type)
    if rotator is None:
        raise PolicyError(
            f"tag RotationType={policy.rotation_type!r} is unknown; use one of {', '.join(sorted(_ROTATORS))}"
        )
    rotator.validate(policy)
    return rotator
