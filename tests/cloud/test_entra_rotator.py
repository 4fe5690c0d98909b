"""Entra app secret rotator end to end: the engine, the local Key Vault and the local Graph + token endpoint.
The test step is real: the control plane's token endpoint accepts only the app's current secrets.

Locks: `cloud_engine` passes SecretLocks(distributed=OneProcessLease()) — an in-process DistributedLock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from localdev.cloud.store import Fault
from localdev.vault.auth import TENANT_ID
from shared.errors import TargetRefused, TargetUnavailable
from shared.rotation.engine import STEPS, RotationRequest
from shared.rotation.rotators import PendingCredential, RotationContext, register_rotator
from shared.rotation.rotators.entra_app import EntraAppSecretRotator
from tests.fixtures.cloud import ArmSeeder
from tests.fixtures.rotation import versions_of

ON_DEMAND = RotationRequest(trigger="http", force=True)


class Crash(Exception):
    """The process dies here."""


class FakeClock:
    """Injected sleep and monotonic clock: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def use_rotator() -> Any:
    yield register_rotator
    register_rotator(EntraAppSecretRotator())


@pytest.fixture
def app(arm: ArmSeeder, secret_values: Any) -> dict[str, Any]:
    created = arm.application("payments-api")
    first = arm.add_password(created["id"], "first secret, by hand")
    secret_values.register(first["secretText"])
    return {**created, "first": first}


async def seed(kv_client: Any, app: dict[str, Any], name: str, now: Any, **extra: str) -> Any:
    tags = {
        "ValidityPeriodDays": "60",
        "RotationType": "entra-app-secret",
        "ProviderAddress": app["id"],
        "CredentialId": app["first"]["keyId"],
        "TenantId": TENANT_ID,
        "AppId": app["appId"],
        "CredentialLifetimeDays": "90",
        **extra,
    }
    return await kv_client.set_secret(
        name, app["first"]["secretText"], tags=tags, expires_on=now + timedelta(days=1)
    )


def register_app_secrets(values: Any, arm: ArmSeeder, object_id: str) -> None:
    with arm.cloud.store.lock:
        for credential in arm.cloud.store.apps[object_id].passwords:
            values.register(credential.secret)


def key_ids(arm: ArmSeeder, object_id: str) -> list[str]:
    with arm.cloud.store.lock:
        return [c.key_id for c in arm.cloud.store.apps[object_id].passwords]


async def test_five_rotations_leave_exactly_two_secrets(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    app: dict[str, Any],
) -> None:
    name = "entra-five"
    await seed(kv_client, app, name, vault_clock.now())
    previous = app["first"]["secretText"]
    older: str | None = None
    for rotation in range(1, 6):
        result = await cloud_engine().rotate(name, ON_DEMAND)
        assert result.outcome.value == "Rotated", result.reason
        current = await kv_client.get_secret(name)
        secret_values.register(current.value)
        register_app_secrets(secret_values, arm, app["id"])
        tags = current.properties.tags
        assert tags["CredentialId"] in key_ids(arm, app["id"])
        assert arm.app_token_works(TENANT_ID, app["appId"], current.value), "the new secret gets a token"
        assert arm.app_token_works(TENANT_ID, app["appId"], previous), "the previous secret keeps working"
        if older is not None:
            assert not arm.app_token_works(TENANT_ID, app["appId"], older), "two generations old is removed"
        assert len(key_ids(arm, app["id"])) == 2, (rotation, key_ids(arm, app["id"]))
        with arm.cloud.store.lock:
            names = {c.key_id: c.display_name for c in arm.cloud.store.apps[app["id"]].passwords}
        assert names[tags["CredentialId"]] == f"kvrot:localhost/{name}:{tags['RotationOperationId']}"
        older, previous = previous, current.value
        vault_clock.advance(120)
    assert arm.cloud.store.count("addPassword") == 5 + 1  # five rotations and the one added by hand


async def test_a_human_added_secret_is_never_removed(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    app: dict[str, Any],
) -> None:
    other = arm.add_password(app["id"], "another team's secret")
    secret_values.register(other["secretText"])
    name = "entra-human"
    await seed(kv_client, app, name, vault_clock.now())
    for _ in range(3):
        await cloud_engine().rotate(name, ON_DEMAND)
        register_app_secrets(secret_values, arm, app["id"])
        vault_clock.advance(120)
    assert other["keyId"] in key_ids(arm, app["id"])
    assert app["first"]["keyId"] not in key_ids(arm, app["id"])
    assert len(key_ids(arm, app["id"])) == 3


class CrashAfterAdd(EntraAppSecretRotator):
    """Dies after addPassword answered, before the engine stored the secret: its secretText is lost."""

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> PendingCredential | None:
        produced = await super().apply(ctx, pending)
        if produced is not None:
            raise Crash("after addPassword")
        return produced


async def test_an_orphan_is_found_by_its_marker_and_removed(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    app: dict[str, Any],
    use_rotator: Any,
) -> None:
    name = "entra-orphan"
    seeded = await seed(kv_client, app, name, vault_clock.now())
    use_rotator(CrashAfterAdd())
    with pytest.raises(Crash):
        await cloud_engine().sweep()
    register_app_secrets(secret_values, arm, app["id"])
    with arm.cloud.store.lock:
        orphans = [
            c.key_id for c in arm.cloud.store.apps[app["id"]].passwords if c.display_name.startswith("kvrot:")
        ]
    assert len(orphans) == 1
    use_rotator(EntraAppSecretRotator())
    rerun = await cloud_engine().sweep()
    assert rerun.errors == []
    register_app_secrets(secret_values, arm, app["id"])
    current = await kv_client.get_secret(name)
    secret_values.register(current.value)
    remaining = key_ids(arm, app["id"])
    assert orphans[0] not in remaining, "the orphan is removed"
    assert len(remaining) == 2 and app["first"]["keyId"] in remaining
    assert current.value != seeded.value
    assert arm.app_token_works(TENANT_ID, app["appId"], current.value)
    assert arm.cloud.store.count("removePassword") == 1


@pytest.mark.parametrize("step", [*STEPS, "produced_stored"])
async def test_a_crash_at_every_step_converges(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    app: dict[str, Any],
    step: str,
) -> None:
    name = f"entra-crash-{step}".replace("_", "-")
    seeded = await seed(kv_client, app, name, vault_clock.now())

    async def crash(at: str, secret: str) -> None:
        if at == step and secret == name:
            raise Crash(step)

    with pytest.raises(Crash):
        await cloud_engine(hook=crash).sweep()
    register_app_secrets(secret_values, arm, app["id"])
    rerun = await cloud_engine().sweep()
    assert rerun.errors == [], rerun.errors
    register_app_secrets(secret_values, arm, app["id"])
    current = await kv_client.get_secret(name)
    secret_values.register(current.value)
    assert current.value != seeded.value and "RotationState" not in current.properties.tags
    assert arm.app_token_works(TENANT_ID, app["appId"], current.value)
    assert arm.app_token_works(TENANT_ID, app["appId"], seeded.value), "the previous secret keeps working"
    assert arm.cloud.store.count("addPassword") == 2  # the one by hand and exactly one rotation's
    assert len(key_ids(arm, app["id"])) == 2
    # the next rotation finishes normally and removes the secret two generations old
    vault_clock.advance(120)
    await cloud_engine().rotate(name, ON_DEMAND)
    latest = await kv_client.get_secret(name)
    secret_values.register(latest.value)
    register_app_secrets(secret_values, arm, app["id"])
    with arm.cloud.store.lock:
        names = sorted(c.display_name for c in arm.cloud.store.apps[app["id"]].passwords)
    marker = f"kvrot:localhost/{name}:"
    assert names == sorted(marker + v.properties.tags["RotationOperationId"] for v in (current, latest)), (
        "the crashed rotation's secret (now the previous) and the new one remain"
    )
    assert app["first"]["keyId"] not in key_ids(arm, app["id"])
    assert arm.app_token_works(TENANT_ID, app["appId"], current.value)


async def test_propagation_is_retried_within_the_budget(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    app: dict[str, Any],
    use_rotator: Any,
) -> None:
    clock = FakeClock()
    use_rotator(EntraAppSecretRotator(sleep=clock.sleep, monotonic=clock.monotonic))
    arm.cloud.store.propagation_failures = 3  # the new secret fails 3 token requests, then works
    name = "entra-propagation"
    await seed(kv_client, app, name, vault_clock.now())
    result = await cloud_engine().rotate(name, ON_DEMAND)
    assert result.outcome.value == "Rotated"
    register_app_secrets(secret_values, arm, app["id"])
    assert clock.waits == [2.0, 4.0, 8.0]
    assert arm.cloud.store.count("token") == 1


async def test_propagation_past_the_budget_is_retryable_and_resumes(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    app: dict[str, Any],
    use_rotator: Any,
) -> None:
    clock = FakeClock()
    use_rotator(EntraAppSecretRotator(sleep=clock.sleep, monotonic=clock.monotonic, propagation_budget=30))
    arm.cloud.store.propagation_failures = 100
    name = "entra-slow"
    await seed(kv_client, app, name, vault_clock.now())
    with pytest.raises(TargetUnavailable) as unavailable:
        await cloud_engine().rotate(name, ON_DEMAND)
    assert "propagation" in unavailable.value.message and unavailable.value.transient
    assert sum(clock.waits) <= 30
    register_app_secrets(secret_values, arm, app["id"])
    with arm.cloud.store.lock:  # replication catches up
        for credential in arm.cloud.store.apps[app["id"]].passwords:
            credential.rejections_left = 0
    rerun = await cloud_engine().sweep()
    assert rerun.errors == [] and rerun.outcomes.get("Resumed") == 1, dict(rerun.outcomes)
    current = await kv_client.get_secret(name)
    secret_values.register(current.value)
    assert arm.app_token_works(TENANT_ID, app["appId"], current.value)
    assert arm.cloud.store.count("addPassword") == 2, "resumed with the stored secret, not a new one"


async def test_not_an_owner_is_terminal_and_names_the_permission(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, app: dict[str, Any]
) -> None:
    name = "entra-denied"
    seeded = await seed(kv_client, app, name, vault_clock.now())
    with arm.cloud.store.lock:
        arm.cloud.store.apps[app["id"]].owners.clear()
    with pytest.raises(TargetRefused) as refused:
        await cloud_engine().rotate(name, ON_DEMAND)
    message = refused.value.message
    assert "Application.ReadWrite.OwnedBy" in message and "owner" in message
    assert "Authorization_RequestDenied" in message
    assert [v.version for v in await versions_of(kv_client, name)] == [seeded.properties.version]


async def test_graph_throttling_is_retryable(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, app: dict[str, Any], use_rotator: Any
) -> None:
    use_rotator(EntraAppSecretRotator(retry_total=0))
    name = "entra-throttled"
    await seed(kv_client, app, name, vault_clock.now())
    arm.cloud.store.inject(
        Fault("graph", "getApplication", 429, "TooManyRequests", "Too many requests.", {"Retry-After": "9"})
    )
    with pytest.raises(TargetUnavailable) as unavailable:
        await cloud_engine().rotate(name, ON_DEMAND)
    assert unavailable.value.retry_after == 9


async def test_lifetime_policy_refusal_is_terminal(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, app: dict[str, Any]
) -> None:
    arm.cloud.store.max_password_lifetime_days = 30
    name = "entra-policy"
    await seed(kv_client, app, name, vault_clock.now())
    with pytest.raises(TargetRefused) as refused:
        await cloud_engine().rotate(name, ON_DEMAND)
    assert "CredentialInvalidLifetimeAsPerAppPolicy" in refused.value.message


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({"ProviderAddress": "not-a-guid"}, "ProviderAddress"),
        ({"AppId": ""}, "AppId"),
        ({"CredentialLifetimeDays": "20"}, "CredentialLifetimeDays"),
    ],
)
async def test_bad_tags_are_refused(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    app: dict[str, Any],
    tags: dict[str, str],
    problem: str,
) -> None:
    from shared.errors import DomainError

    name = f"entra-bad-{problem.lower()}"
    await seed(kv_client, app, name, vault_clock.now(), **tags)
    with pytest.raises(DomainError) as refused:
        await cloud_engine().rotate(name, ON_DEMAND)
    assert problem in refused.value.message
    assert arm.cloud.store.count("addPassword") == 1


async def test_a_resumed_rotation_records_the_new_credential_id(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    app: dict[str, Any],
    use_rotator: Any,
) -> None:
    name = "entra-resumed-tags"
    await seed(kv_client, app, name, vault_clock.now())
    use_rotator(CrashAfterAdd())
    with pytest.raises(Crash):
        await cloud_engine().sweep()
    use_rotator(EntraAppSecretRotator())
    await cloud_engine().sweep()
    register_app_secrets(secret_values, arm, app["id"])
    current = await kv_client.get_secret(name)
    secret_values.register(current.value)
    assert current.properties.tags["CredentialId"] != app["first"]["keyId"]


async def test_an_app_that_allows_two_secrets_rotates_once_the_overlap_is_over(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    app: dict[str, Any],
) -> None:
    arm.cloud.store.max_passwords = 2  # TooManyAppPasswords on a third
    name = "entra-two-max"
    await seed(kv_client, app, name, vault_clock.now())
    assert (await cloud_engine().rotate(name, ON_DEMAND)).outcome.value == "Rotated"
    register_app_secrets(secret_values, arm, app["id"])
    first_rotation = await kv_client.get_secret(name)
    secret_values.register(first_rotation.value)
    vault_clock.advance(120)
    with pytest.raises(TargetRefused) as refused:  # the previous secret is still in its overlap
        await cloud_engine().rotate(name, ON_DEMAND)
    assert "TooManyAppPasswords" in refused.value.message and "overlap" in refused.value.message
    assert arm.app_token_works(TENANT_ID, app["appId"], app["first"]["secretText"])
    vault_clock.days(3)  # past RotationOverlapDays (2)
    for _ in range(2):
        assert (await cloud_engine().rotate(name, ON_DEMAND)).outcome.value in ("Rotated", "Resumed")
        register_app_secrets(secret_values, arm, app["id"])
        current = await kv_client.get_secret(name)
        secret_values.register(current.value)
        assert arm.app_token_works(TENANT_ID, app["appId"], current.value)
        assert len(key_ids(arm, app["id"])) == 2
        vault_clock.days(3)
    assert not arm.app_token_works(TENANT_ID, app["appId"], app["first"]["secretText"])
