"""The default rotator: the secret is the credential, so a fresh random value is all there is to change."""

from __future__ import annotations

from ... import generator
from ..policy import TAG_ALPHABET, TAG_LENGTH, PolicyError, RotationPolicy
from . import PendingCredential, RotationContext


class RandomValueRotator:
    """A fresh random value from shared.generator; nothing outside the vault to change."""

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

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> PendingCredential | None:
        return None

    async def test(self, ctx: RotationContext, pending: PendingCredential) -> None:
        return None

    async def finish(self, ctx: RotationContext, pending: PendingCredential) -> None:
        return None
