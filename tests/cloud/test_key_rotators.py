"""Key-pair rotators end to end: the engine, the local Key Vault and the local control plane, over verified
TLS with the real managed-identity credential, for storage, Cosmos DB, Service Bus, Event Hubs and Redis.

Locks: `cloud_engine` passes SecretLocks(distributed=OneProcessLease()) — an in-process DistributedLock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from localdev.cloud.store import Fault
from shared.errors import TargetRefused, TargetUnavailable
from shared.rotation.engine import STEPS, RotationRequest
from shared.rotation.rotators import PendingCredential, RotationContext, register_rotator
from shared.rotation.rotators.azure_keys import (
    CosmosDbKeyRotator,
    EventHubsKeyRotator,
    RedisKeyRotator,
    ServiceBusKeyRotator,
    StorageAccountKeyRotator,
)
from tests.fixtures.cloud import SLOTS, ArmSeeder
from tests.fixtures.rotation import versions_of

KEY_TYPES = list(SLOTS)
DEFAULTS = {
    "storage-account-key": StorageAccountKeyRotator,
    "cosmosdb-key": CosmosDbKeyRotator,
    "servicebus-key": ServiceBusKeyRotator,
    "eventhubs-key": EventHubsKeyRotator,
    "redis-key": RedisKeyRotator,
}
ON_DEMAND = RotationRequest(trigger="http", force=True)


class Crash(Exception):
    """The process dies here."""


class Sleeps:
    """An injected sleep: records the waits, never waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def use_rotator() -> Any:
    """Register a configured rotator instance for a type; the default instance comes back afterwards."""
    used: list[str] = []

    def use(rotator: Any) -> Any:
        register_rotator(rotator)
        used.append(rotator.rotation_type)
        return rotator

    yield use
    for rotation_type in used:
        register_rotator(DEFAULTS[rotation_type]())


async def seed_secret(
    kv_client: Any, arm: ArmSeeder, rotation_type: str, name: str, now: Any, **extra_tags: str
) -> tuple[str, Any]:
    resource = arm.resource(rotation_type)
    first = next(iter(SLOTS[rotation_type]))
    tags = {
        "ValidityPeriodDays": "60",
        "RotationType": rotation_type,
        "ProviderAddress": resource,
        "CredentialId": first,
        **extra_tags,
    }
    secret = await kv_client.set_secret(
        name, arm.key(rotation_type, resource, first), tags=tags, expires_on=now + timedelta(days=1)
    )
    return resource, secret


def register_all_keys(values: Any, arm: ArmSeeder, resource: str) -> None:
    store = arm.cloud.store
    with store.lock:
        for value in store.resources[resource.lower()].keys.values():
            values.register(value)


async def storage_accepts(arm: ArmSeeder, resource: str, key: str) -> bool:
    """A Shared Key-signed call with the real storage SDK against the emulator's blob endpoint."""
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob.aio import BlobServiceClient

    name = resource.rsplit("/", 1)[1]
    async with BlobServiceClient(
        f"{arm.cloud.url}/blob/{name}/",
        credential=AzureNamedKeyCredential(name, key),
        connection_verify=arm.cloud.ca_bundle,
        retry_total=0,
    ) as client:
        try:
            await client.get_service_properties()
        except HttpResponseError as exc:
            assert exc.status_code == 403
            return False
    return True


@pytest.mark.parametrize("rotation_type", KEY_TYPES)
async def test_three_rotations_alternate_and_keep_the_previous_key_working(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    rotation_type: str,
) -> None:
    name = f"keys-{rotation_type}"
    resource, seeded = await seed_secret(kv_client, arm, rotation_type, name, vault_clock.now())
    first, second = list(SLOTS[rotation_type])
    store = arm.cloud.store
    previous_value = seeded.value
    expected_slot = second
    for rotation in range(1, 4):
        register_all_keys(secret_values, arm, resource)
        result = await cloud_engine().rotate(name, ON_DEMAND)
        assert result.outcome.value == "Rotated", result.reason
        current = await kv_client.get_secret(name)
        secret_values.register(current.value)
        assert current.properties.tags["CredentialId"] == expected_slot
        # the vault holds the regenerated key, the other key (the previous value) is untouched
        assert current.value == arm.key(rotation_type, resource, expected_slot)
        other = first if expected_slot == second else second
        assert arm.key(rotation_type, resource, other) == previous_value
        assert current.value != previous_value
        if rotation_type == "storage-account-key":
            assert await storage_accepts(arm, resource, current.value)
            assert await storage_accepts(arm, resource, previous_value), "the previous key must keep working"
        assert store.regenerations[resource.lower()] == rotation
        assert "RotationState" not in current.properties.tags
        previous_value, expected_slot = current.value, other
        vault_clock.advance(120)  # past ROTATION_MIN_INTERVAL_SECONDS
    register_all_keys(secret_values, arm, resource)


@pytest.mark.parametrize(
    "rotation_type", ["storage-account-key", "servicebus-key", "cosmosdb-key", "redis-key"]
)
async def test_connection_string_format(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    rotation_type: str,
) -> None:
    name = f"cs-{rotation_type}"
    resource, _ = await seed_secret(
        kv_client, arm, rotation_type, name, vault_clock.now(), ValueFormat="connection-string"
    )
    await cloud_engine().rotate(name, ON_DEMAND)
    current = await kv_client.get_secret(name)
    slot = current.properties.tags["CredentialId"]
    key = arm.key(rotation_type, resource, slot)
    secret_values.register(current.value)
    register_all_keys(secret_values, arm, resource)
    account = resource.rsplit("/", 1)[1]
    expected = {
        "storage-account-key": f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={arm.cloud.url}/blob/{account}/",
        "servicebus-key": f"SharedAccessKeyName=send-listen;SharedAccessKey={key}",
        "cosmosdb-key": f"AccountEndpoint=https://{account}.documents.azure.com:443/;AccountKey={key};",
        "redis-key": f"{account}.redis.cache.windows.net:6380,password={key},ssl=True,abortConnect=False",
    }[rotation_type]
    assert expected in current.value
    if rotation_type == "storage-account-key":
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient.from_connection_string(
            current.value, connection_verify=arm.cloud.ca_bundle
        ) as client:
            await client.get_service_properties()


def crash_after_regenerate(rotation_type: str) -> Any:
    """The type's rotator, dying after the provider regenerated the key, before the engine could store it."""

    class CrashAfterRegenerate(DEFAULTS[rotation_type]):  # type: ignore[misc,valid-type]
        async def apply(self, ctx: RotationContext, pending: PendingCredential) -> PendingCredential | None:
            produced = await super().apply(ctx, pending)
            if produced is not None:
                raise Crash("after regenerate")
            return produced

    return CrashAfterRegenerate()


@pytest.mark.parametrize("rotation_type", KEY_TYPES)
async def test_a_crash_at_every_step_converges_with_one_regenerate(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    secret_values: Any,
    use_rotator: Any,
    rotation_type: str,
) -> None:
    store = arm.cloud.store
    generated = rotation_type not in ("servicebus-key", "eventhubs-key")
    for step in [*STEPS, "produced_stored", "after_regenerate"] if generated else STEPS:
        name = f"crash-{rotation_type}-{step}".replace("_", "-")
        resource, seeded = await seed_secret(kv_client, arm, rotation_type, name, vault_clock.now())
        register_all_keys(secret_values, arm, resource)

        async def crash(at: str, secret: str, step: str = step, name: str = name) -> None:
            if at == step and secret == name:
                raise Crash(step)

        if step == "after_regenerate":
            use_rotator(crash_after_regenerate(rotation_type))
            with pytest.raises(Crash):
                await cloud_engine().sweep()
            use_rotator(DEFAULTS[rotation_type]())
        else:
            with pytest.raises(Crash):
                await cloud_engine(hook=crash).sweep()
        register_all_keys(secret_values, arm, resource)
        rerun = await cloud_engine().sweep()
        assert rerun.errors == [], (step, rerun.errors)
        current = await kv_client.get_secret(name)
        secret_values.register(current.value)
        slot = current.properties.tags["CredentialId"]
        assert current.value == arm.key(rotation_type, resource, slot), (
            f"vault and resource disagree after {step}"
        )
        assert current.value != seeded.value
        assert "RotationState" not in current.properties.tags
        assert store.regenerations[resource.lower()] == 1, f"{step}: {store.regenerations[resource.lower()]}"
        enabled = [v for v in await versions_of(kv_client, name) if v.enabled]
        assert enabled, step


async def test_missing_role_is_terminal_and_names_it(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, secret_values: Any
) -> None:
    store = arm.cloud.store
    name = "refused-storage"
    resource, seeded = await seed_secret(kv_client, arm, "storage-account-key", name, vault_clock.now())
    register_all_keys(secret_values, arm, resource)
    principal = store.default_principals[0]
    store.unassign(principal)
    store.assign(principal, "Reader", resource)
    with pytest.raises(TargetRefused) as refused:
        await cloud_engine().rotate(name, ON_DEMAND)
    message = refused.value.message
    assert "Storage Account Key Operator Service Role" in message and resource in message
    assert "AuthorizationFailed" in message
    assert not refused.value.transient
    versions = await versions_of(kv_client, name)
    assert [v.version for v in versions] == [seeded.properties.version], "nothing written when refused"
    assert store.regenerations[resource.lower()] == 0


async def test_least_privilege_role_is_enough(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, secret_values: Any
) -> None:
    """Only the Storage Account Key Operator Service Role (no read): listKeys proves the key."""
    store = arm.cloud.store
    name = "least-privilege-storage"
    resource, _ = await seed_secret(kv_client, arm, "storage-account-key", name, vault_clock.now())
    principal = store.default_principals[0]
    store.unassign(principal)
    store.assign(principal, "Storage Account Key Operator Service Role", resource)
    result = await cloud_engine().rotate(name, ON_DEMAND)
    assert result.outcome.value == "Rotated"
    current = await kv_client.get_secret(name)
    secret_values.register(current.value)
    register_all_keys(secret_values, arm, resource)
    assert current.value == arm.key("storage-account-key", resource, "key2")


@pytest.mark.parametrize("rotation_type", ["storage-account-key", "servicebus-key"])
async def test_throttling_is_retried_then_reported_as_unavailable(
    kv_client: Any,
    arm: ArmSeeder,
    cloud_engine: Any,
    vault_clock: Any,
    use_rotator: Any,
    secret_values: Any,
    rotation_type: str,
) -> None:
    store = arm.cloud.store
    name = f"throttled-{rotation_type}"
    resource, _ = await seed_secret(kv_client, arm, rotation_type, name, vault_clock.now())
    register_all_keys(secret_values, arm, resource)
    # One 429 with Retry-After: azure-core's retry policy honours it and the rotation goes through.
    store.inject(Fault("arm", "listKeys", 429, "TooManyRequests", "Too many requests.", {"Retry-After": "0"}))
    assert (await cloud_engine().rotate(name, ON_DEMAND)).outcome.value == "Rotated"
    assert not store.faults
    # Throttled past the retries: retryable, with the service's Retry-After.
    use_rotator(DEFAULTS[rotation_type](retry_total=0))
    vault_clock.advance(120)
    store.inject(
        Fault("arm", "listKeys", 429, "TooManyRequests", "Too many requests.", {"Retry-After": "17"}, times=5)
    )
    with pytest.raises(TargetUnavailable) as unavailable:
        await cloud_engine().rotate(name, ON_DEMAND)
    register_all_keys(secret_values, arm, resource)
    assert unavailable.value.transient and unavailable.value.retry_after == 17
    assert "429" in unavailable.value.message


async def test_cosmos_waits_for_the_long_running_regenerate(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, use_rotator: Any, secret_values: Any
) -> None:
    store = arm.cloud.store
    store.lro_polls = 3
    sleeps = Sleeps()
    use_rotator(CosmosDbKeyRotator(sleep=sleeps))
    name = "cosmos-lro"
    resource, _ = await seed_secret(kv_client, arm, "cosmosdb-key", name, vault_clock.now())
    await cloud_engine().rotate(name, ON_DEMAND)
    current = await kv_client.get_secret(name)
    secret_values.register(current.value)
    register_all_keys(secret_values, arm, resource)
    assert current.value == arm.key("cosmosdb-key", resource, "Secondary")
    assert sleeps.waits == [0.0, 0.0, 0.0]  # Retry-After: 0 each time, three polls
    assert store.regenerations[resource.lower()] == 1


async def test_no_credential_id_tag_is_found_from_the_value(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, secret_values: Any
) -> None:
    """Written by hand with key2 and no CredentialId: rotation regenerates key1, not the key in use."""
    resource = arm.resource("storage-account-key")
    key2 = arm.key("storage-account-key", resource, "key2")
    register_all_keys(secret_values, arm, resource)
    name = "no-credential-id"
    await kv_client.set_secret(
        name,
        key2,
        tags={"ValidityPeriodDays": "60", "RotationType": "storage-account-key", "ProviderAddress": resource},
        expires_on=vault_clock.now() + timedelta(days=1),
    )
    await cloud_engine().rotate(name, ON_DEMAND)
    current = await kv_client.get_secret(name)
    secret_values.register(current.value)
    assert current.properties.tags["CredentialId"] == "key1"
    assert arm.key("storage-account-key", resource, "key2") == key2


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({"ProviderAddress": "/subscriptions/x/storageAccounts/y"}, "ProviderAddress"),
        ({"CredentialId": "key3"}, "CredentialId"),
        ({"ValueFormat": "json"}, "ValueFormat"),
    ],
)
async def test_bad_tags_are_refused_before_anything_is_written(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, tags: dict[str, str], problem: str
) -> None:
    from shared.errors import DomainError

    name = f"bad-tags-{problem.lower()}"
    resource, seeded = await seed_secret(kv_client, arm, "storage-account-key", name, vault_clock.now())
    await kv_client.update_secret_properties(
        name, seeded.properties.version, tags={**seeded.properties.tags, **tags}
    )
    with pytest.raises(DomainError) as refused:
        await cloud_engine().rotate(name, ON_DEMAND)
    assert problem in refused.value.message
    assert len(await versions_of(kv_client, name)) == 1
    assert arm.cloud.store.regenerations[resource.lower()] == 0


async def test_a_resumed_placeholder_version_ends_disabled(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any, secret_values: Any
) -> None:
    name = "resumed-placeholder"
    resource, seeded = await seed_secret(kv_client, arm, "storage-account-key", name, vault_clock.now())
    register_all_keys(secret_values, arm, resource)

    async def crash(at: str, secret: str) -> None:
        if at == "pending_stored":
            raise Crash(at)

    with pytest.raises(Crash):
        await cloud_engine(hook=crash).rotate(name, ON_DEMAND)
    await cloud_engine().sweep()
    register_all_keys(secret_values, arm, resource)
    current = await kv_client.get_secret(name)
    enabled = [v.version for v in await versions_of(kv_client, name) if v.enabled]
    assert sorted(enabled) == sorted([seeded.properties.version, current.properties.version])


async def test_no_credential_id_and_an_unknown_value_is_refused(
    kv_client: Any, arm: ArmSeeder, cloud_engine: Any, vault_clock: Any
) -> None:
    resource = arm.resource("redis-key")
    name = "unknown-value"
    await kv_client.set_secret(
        name,
        "not-a-key-of-this-cache",
        tags={"ValidityPeriodDays": "60", "RotationType": "redis-key", "ProviderAddress": resource},
        expires_on=vault_clock.now() + timedelta(days=1),
    )
    with pytest.raises(TargetRefused, match="CredentialId"):
        await cloud_engine().rotate(name, ON_DEMAND)
    assert arm.cloud.store.regenerations[resource.lower()] == 0
