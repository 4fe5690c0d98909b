"""A sweep stopped at every step boundary (and cancelled at arbitrary moments) converges on the next run:
one new version per due secret, an enabled current version, and no credential lost.

The external target here is an in-memory stand-in for a database (the PostgreSQL rotator arrives with the
next issue); it exercises the resume path a rotator that touches a target takes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from shared.rotation.engine import STEPS
from shared.rotation.rotators import PendingCredential, RotationContext, register_rotator
from shared.rotation.rotators.random_value import RandomValueRotator
from tests.fixtures.rotation import seed, versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")


class InMemoryTarget(RandomValueRotator):
    """A target that accepts exactly one credential per name: apply sets it, test checks it."""

    rotation_type = "in-memory-target"
    touches_target = True

    def __init__(self) -> None:
        self.credentials: dict[str, str] = {}
        self.applied = 0

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> None:
        self.applied += 1
        self.credentials[ctx.name] = pending.value

    async def test(self, ctx: RotationContext, pending: PendingCredential) -> None:
        assert self.credentials.get(ctx.name) == pending.value, (
            "target does not accept the pending credential"
        )


class Crash(Exception):
    """The process dies here."""


TARGET = InMemoryTarget()
register_rotator(TARGET)


async def assert_converged(client: Any, name: str, original_version: str) -> Any:
    versions = await versions_of(client, name)
    assert len(versions) == 2, [(v.version, v.enabled, v.tags) for v in versions]
    new = next(v for v in versions if v.version != original_version)
    assert new.enabled and "RotationState" not in (new.tags or {})
    assert new.tags["RotationPreviousVersion"] == original_version
    return new


@pytest.mark.parametrize("rotation_type", ["random", "in-memory-target"])
async def test_stop_at_every_step_boundary_then_converge(
    kv_client: Any, make_engine: Any, vault_clock: Any, rotation_type: str
) -> None:
    now = vault_clock.now()
    for step in STEPS:
        name = f"crash-{rotation_type}-{step}".replace("_", "-")
        TARGET.credentials[name] = "value-before-rotation"
        [seeded] = await seed(
            kv_client,
            [
                dict(
                    name=name,
                    value="value-before-rotation",
                    tags={"ValidityPeriodDays": "60", "RotationType": rotation_type},
                    expires_on=now + timedelta(days=1),
                )
            ],
        )

        async def crash(at: str, secret: str, step: str = step, name: str = name) -> None:
            if at == step and secret == name:
                raise Crash(step)

        with pytest.raises(Crash):
            await make_engine(hook=crash).sweep()
        rerun = await make_engine().sweep()
        assert rerun.errors == [], rerun.errors
        new = await assert_converged(kv_client, name, seeded.properties.version)
        value = (await kv_client.get_secret(name)).value
        assert value != "value-before-rotation"
        if rotation_type == "in-memory-target":
            assert TARGET.credentials[name] == value, f"credential lost after a crash at {step}"
        expected = (
            "Resumed"
            if step in ("pending_stored", "applied", "tested")
            else ("Rotated" if step == "decided" else None)
        )
        if expected:
            assert rerun.outcomes.get(expected) == 1, (step, dict(rerun.outcomes))
        else:
            assert "Rotated" not in rerun.outcomes and "Resumed" not in rerun.outcomes
        assert new.version
        # Clean slate for the next step: this secret is no longer due.


async def test_cancelled_sweeps_converge(kv_client: Any, make_engine: Any, vault_clock: Any) -> None:
    now = vault_clock.now()
    seeded = await seed(
        kv_client,
        [
            dict(
                name=f"cancel-{i}",
                value="before",
                tags={"ValidityPeriodDays": "60"},
                expires_on=now + timedelta(days=1),
            )
            for i in range(40)
        ],
    )
    for timeout in (0.005, 0.02, 0.05, 0.1):
        try:
            await asyncio.wait_for(make_engine().sweep(), timeout)
        except TimeoutError:
            pass
    final = await make_engine().sweep()
    assert final.errors == []
    for secret in seeded:
        await assert_converged(kv_client, secret.name, secret.properties.version)


class DescribingTarget(InMemoryTarget):
    rotation_type = "described-target"

    async def describe(self, ctx: RotationContext) -> dict[str, Any]:
        return {
            "userToChange": ctx.policy.options.get("CredentialId"),
            "currentLogsIn": True,
            "writes": False,
        }


register_rotator(DescribingTarget())


async def test_a_dry_run_reports_what_the_target_rotator_describes(
    kv_client: Any, make_engine: Any, vault_control: Any
) -> None:
    from shared.rotation.engine import RotationRequest

    tags = {"ValidityPeriodDays": "60", "RotationType": "described-target", "CredentialId": "app"}
    await seed(kv_client, [dict(name="described", value="v", tags=tags)])
    before = vault_control.stats()["operations"]
    result = await make_engine().rotate(
        "described", RotationRequest(trigger="http", force=True, dry_run=True)
    )
    assert result.to_dict()["target"] == {"userToChange": "app", "currentLogsIn": True, "writes": False}
    after = vault_control.stats()["operations"]
    assert after.get("SetSecret", 0) == before.get("SetSecret", 0)
    assert after.get("UpdateSecret", 0) == before.get("UpdateSecret", 0)
