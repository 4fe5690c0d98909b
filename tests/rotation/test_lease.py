"""Serialization across instances: a blob lease per secret name in AzureWebJobsStorage (Azurite here).

Two "instances" are two engines with their own process locks, coalescers and storage clients, sharing only
the vault and the storage account — as two Function hosts do."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from shared.locks import LEASE_STORE_RETRY, LOCK_CONTAINER, BlobLeaseLock, Coalescer, SecretLocks
from shared.rotation.engine import RotationRequest
from shared.rotation.results import Outcome
from tests.fixtures.rotation import seed, versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")


@pytest.fixture
async def storage(azurite: str) -> Any:
    """Two independent blob service clients (one per instance) on the same Azurite account."""
    from azure.storage.blob.aio import BlobServiceClient

    clients = [BlobServiceClient.from_connection_string(azurite) for _ in range(2)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.close()


def instance(make_engine: Any, lease: BlobLeaseLock | None, hook: Any) -> Any:
    return make_engine(locks=SecretLocks(distributed=lease), coalescer=Coalescer(), hook=hook)


async def race_two_instances(make_engine: Any, name: str, leases: list[BlobLeaseLock | None]) -> list[Any]:
    """Both instances rotate `name` on demand; each waits (up to 1 s) at the decision for the other to get there."""
    arrived = [asyncio.Event(), asyncio.Event()]

    def hook_for(me: int) -> Any:
        async def hook(step: str, secret: str) -> None:
            if step == "decided" and secret == name:
                arrived[me].set()
                try:
                    await asyncio.wait_for(arrived[1 - me].wait(), 1.0)
                except TimeoutError:
                    pass

        return hook

    engines = [instance(make_engine, leases[i], hook_for(i)) for i in range(2)]
    return await asyncio.gather(
        *(e.rotate(name, RotationRequest(trigger="http", force=True)) for e in engines)
    )


async def test_the_lease_makes_two_instances_rotate_once(
    kv_client: Any, make_engine: Any, vault_clock: Any, storage: list[Any]
) -> None:
    now = vault_clock.now()
    await seed(
        kv_client,
        [
            dict(name=n, value="x", tags={"ValidityPeriodDays": "60"}, expires_on=now + timedelta(days=3))
            for n in ("leased", "unleased")
        ],
    )
    leases = [BlobLeaseLock(c.get_container_client(LOCK_CONTAINER), wait_seconds=10) for c in storage]
    results = await race_two_instances(make_engine, "leased", leases)
    assert sorted(r.outcome for r in results) == sorted([Outcome.ROTATED, Outcome.ALREADY_ROTATED])
    assert results[0].version == results[1].version
    assert len(await versions_of(kv_client, "leased")) == 2

    # Control: the same race without the lease gets past the re-check on both instances.
    unleased = await race_two_instances(make_engine, "unleased", [None, None])
    assert [r.outcome for r in unleased] == [Outcome.ROTATED, Outcome.ROTATED]
    assert len(await versions_of(kv_client, "unleased")) == 3


async def test_a_name_leased_elsewhere_is_deferred_then_rotated(
    kv_client: Any, make_engine: Any, vault_clock: Any, storage: list[Any]
) -> None:
    now = vault_clock.now()
    await seed(
        kv_client,
        [dict(name="busy", value="x", tags={"ValidityPeriodDays": "60"}, expires_on=now + timedelta(days=3))],
    )
    other = BlobLeaseLock(storage[1].get_container_client(LOCK_CONTAINER))
    async with other.hold("busy"):  # another instance is working on it
        mine = BlobLeaseLock(storage[0].get_container_client(LOCK_CONTAINER), wait_seconds=0.3)
        deferred = await instance(make_engine, mine, None).sweep()
        assert deferred.outcomes == {"Deferred": 1} and deferred.remaining == 1
    assert len(await versions_of(kv_client, "busy")) == 1
    done = await instance(make_engine, mine, None).sweep()
    assert done.outcomes == {"Rotated": 1}
    blob = storage[0].get_container_client(LOCK_CONTAINER).get_blob_client("busy")
    assert not await blob.exists()  # freed after use, and no blob left behind per secret
    async with mine.hold("busy"):  # and the name can be held again (its blob created anew)
        assert (await blob.get_blob_properties()).lease.state == "leased"
    assert not await blob.exists()


async def test_the_app_uses_the_lease_when_rotation_lock_is_blob(
    kv_client: Any, azurite: str, storage: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from blueprints import rotation
    from shared.settings import get_settings
    from tests.fixtures.app import InProcessApi, SecretValues

    monkeypatch.setenv("ROTATION_LOCK", "blob")
    monkeypatch.setenv("ROTATION_LOCK_WAIT_SECONDS", "0.3")
    monkeypatch.setenv("AzureWebJobsStorage", azurite)
    get_settings.cache_clear()
    await seed(kv_client, [dict(name="via-app", value="x", tags={"ValidityPeriodDays": "60"})])

    async def rotate() -> Any:
        return await InProcessApi(SecretValues()).call(
            rotation.rotate_secret, "POST", "/api/secrets/via-app/rotate", route_params={"name": "via-app"}
        )

    async with BlobLeaseLock(storage[1].get_container_client(LOCK_CONTAINER)).hold("via-app"):
        busy = await rotate()  # another instance (another storage client) holds the name's lease
    assert busy.status == 409 and busy.json["error"]["code"] == "SecretBusy", busy.text
    assert len(await versions_of(kv_client, "via-app")) == 1
    answer = await rotate()
    assert answer.status == 200 and answer.json["outcome"] == "Rotated", answer.text
    names = [b.name async for b in storage[0].get_container_client(LOCK_CONTAINER).list_blobs()]
    assert "via-app" not in names  # the lease blob lives only while the name is held


async def test_an_unreachable_lock_store_is_a_503_that_says_what_to_check(
    kv_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from blueprints import rotation
    from shared.settings import get_settings
    from tests.fixtures.app import InProcessApi, SecretValues
    from tests.fixtures.rotation import AZURITE_ACCOUNT, AZURITE_KEY

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(LEASE_STORE_RETRY, "retry_total", 0)  # keep the test quick; the mapping is the point
    monkeypatch.setenv("ROTATION_LOCK", "blob")
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};",
    )
    get_settings.cache_clear()
    await seed(kv_client, [dict(name="no-store", value="x", tags={"ValidityPeriodDays": "60"})])
    answer = await InProcessApi(SecretValues()).call(
        rotation.rotate_secret, "POST", "/api/secrets/no-store/rotate", route_params={"name": "no-store"}
    )
    assert answer.status == 503 and answer.error["code"] == "LockUnavailable"
    assert "AzureWebJobsStorage" in answer.error["message"] and "ROTATION_LOCK=off" in answer.error["message"]
    assert len(await versions_of(kv_client, "no-store")) == 1


async def test_a_queue_step_bounds_the_wait_for_a_held_name_and_the_lease_lasts_as_set(
    storage: list[Any],
) -> None:
    """waiting_at_most (what the fan-out's steps use) cuts a 60 s wait for a held name to its bound, and
    SecretBusy's retry-after is the lease duration (ROTATION_LEASE_SECONDS): when the name is free again."""
    from shared.errors import SecretBusy
    from shared.locks import waiting_at_most

    other = BlobLeaseLock(storage[1].get_container_client(LOCK_CONTAINER), lease_seconds=15)
    mine = BlobLeaseLock(storage[0].get_container_client(LOCK_CONTAINER), lease_seconds=15, wait_seconds=60)
    async with other.hold("held-elsewhere"):
        async with asyncio.timeout(10):  # unbounded, this would wait 60 s and fail here
            with waiting_at_most(0.3), pytest.raises(SecretBusy) as busy:
                async with mine.hold("held-elsewhere"):
                    pass
    assert busy.value.retry_after == 15
    blob = storage[0].get_container_client(LOCK_CONTAINER).get_blob_client("held-elsewhere")
    assert not await blob.exists()  # the other instance's hold ended: name free, blob gone
