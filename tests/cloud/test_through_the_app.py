"""The whole path as deployed: the HTTP rotate function (blueprint) → the engine with the app's own locks,
holding the real blob lease on Azurite (ROTATION_LOCK=blob) → the rotator → the local control plane."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.fixtures.cloud import ArmSeeder


async def test_the_rotate_function_rotates_a_storage_key_under_the_blob_lease(
    kv_client: Any,
    arm: ArmSeeder,
    azurite: str,
    vault_clock: Any,
    secret_values: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    from blueprints import rotation
    from shared.locks import LOCK_CONTAINER, BlobLeaseLock
    from shared.settings import get_settings
    from tests.fixtures.app import InProcessApi

    monkeypatch.setenv("ROTATION_LOCK", "blob")
    monkeypatch.setenv("ROTATION_LOCK_WAIT_SECONDS", "0.3")
    monkeypatch.setenv("AzureWebJobsStorage", azurite)
    get_settings.cache_clear()
    resource = arm.resource("storage-account-key")
    key1 = arm.key("storage-account-key", resource, "key1")
    key2_before = arm.key("storage-account-key", resource, "key2")
    secret_values.register(key1)
    secret_values.register(key2_before)
    name = "app-storage-key"
    await kv_client.set_secret(
        name,
        key1,
        tags={
            "ValidityPeriodDays": "60",
            "RotationType": "storage-account-key",
            "ProviderAddress": resource,
            "CredentialId": "key1",
        },
        expires_on=vault_clock.now() + timedelta(days=1),
    )

    async def rotate() -> Any:
        return await InProcessApi(secret_values).call(
            rotation.rotate_secret, "POST", f"/api/secrets/{name}/rotate", route_params={"name": name}
        )

    async with BlobServiceClient.from_connection_string(azurite) as storage:
        other = BlobLeaseLock(storage.get_container_client(LOCK_CONTAINER))
        async with other.hold(name):  # another instance holds the name: the target is not touched
            busy = await rotate()
        assert busy.status == 409 and busy.json["error"]["code"] == "SecretBusy", busy.text
        assert arm.key("storage-account-key", resource, "key2") == key2_before  # not regenerated
        assert (await kv_client.get_secret(name)).properties.tags["CredentialId"] == "key1"
        answer = await rotate()
        names = [b.name async for b in storage.get_container_client(LOCK_CONTAINER).list_blobs()]
    assert answer.status == 200 and answer.json["outcome"] == "Rotated", answer.text
    assert name not in names, "the lease blob lives only while the name is held"
    current = await kv_client.get_secret(name)
    secret_values.register(current.value)
    assert current.properties.tags["CredentialId"] == "key2"
    assert current.value == arm.key("storage-account-key", resource, "key2")
    assert arm.key("storage-account-key", resource, "key1") == key1


async def test_without_a_cross_instance_lock_the_app_refuses_to_touch_the_target(
    kv_client: Any, arm: ArmSeeder, vault_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blueprints import rotation
    from shared.settings import get_settings
    from tests.fixtures.app import InProcessApi, SecretValues

    monkeypatch.setenv("ROTATION_LOCK", "off")
    get_settings.cache_clear()
    resource = arm.resource("redis-key")
    name = "app-redis-key"
    await kv_client.set_secret(
        name,
        arm.key("redis-key", resource, "Primary"),
        tags={"ValidityPeriodDays": "60", "RotationType": "redis-key", "ProviderAddress": resource},
        expires_on=vault_clock.now() + timedelta(days=1),
    )
    answer = await InProcessApi(SecretValues()).call(
        rotation.rotate_secret, "POST", f"/api/secrets/{name}/rotate", route_params={"name": name}
    )
    assert answer.status >= 400 and "lease" in answer.text, answer.text
    assert arm.cloud.store.regenerations[resource.lower()] == 0
