"""Issue 8's measured defects, pinned: retries that multiply, a hung vault past its budget, two instances
promoting twice, and concurrent identical writes each creating a version.

The "two instances" are two engines with their own process locks, coalescers and storage clients (as two
Function hosts have), sharing only the local vault and one Azurite account."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from shared.locks import LOCK_CONTAINER, BlobLeaseLock, Coalescer, SecretLocks
from shared.rotation.engine import RotationRequest
from shared.vault.versions import SecretHistory, VersionInfo
from tests.fixtures.rotation import seed, versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")


async def test_one_failing_call_costs_at_most_five_requests(
    make_engine: Any, kv_client: Any, vault_control: Any
) -> None:
    """Before: azure-core's 4 retries inside the engine's own 6 attempts made 24 requests of one history()."""
    from shared.errors import VaultCall, VaultUnavailable, from_vault_error, vault_failures

    await seed(kv_client, [dict(name="failing", value="x", tags={"ValidityPeriodDays": "60"})])
    before = vault_control.stats()["operations"].get("GetSecretVersions", 0)
    vault_control.set_faults("GetSecretVersions", 500, rate=1.0)
    engine = make_engine()
    try:
        with pytest.raises(vault_failures()) as raised:
            await engine.history("failing")
    finally:
        vault_control.clear_faults()
    requests = vault_control.stats()["operations"].get("GetSecretVersions", 0) - before
    # at most 1 + KEY_VAULT_RETRY_TOTAL (4): nothing above azure-core's retry repeats the call
    assert requests == 5, requests
    assert engine.calls.transactions == 1 and engine.calls.requests == requests
    assert isinstance(from_vault_error(raised.value, VaultCall("failing")), VaultUnavailable)


async def test_a_hung_vault_ends_the_sweep_within_its_budget(
    make_engine: Any, kv_client: Any, vault_clock: Any, vault_control: Any
) -> None:
    """Before: each call could wait 4 × 30 s × 6 attempts; the budget was checked only between calls."""
    now = vault_clock.now()
    await seed(
        kv_client,
        [
            dict(
                name=f"hung-{i}",
                value="x",
                tags={"ValidityPeriodDays": "60"},
                expires_on=now + timedelta(days=1),
            )
            for i in range(6)
        ],
    )
    vault_control.set_faults("GetSecretVersions", 503, rate=1.0, latency=60.0)  # hangs for a minute
    budget = 2.0
    started = time.monotonic()
    try:
        summary = await make_engine().sweep(budget_seconds=budget)
    finally:
        vault_control.clear_faults()
    elapsed = time.monotonic() - started
    assert elapsed < budget + 5, elapsed
    assert summary.outcomes.get("Deferred") == 6 and summary.remaining == 6, summary.to_dict()
    assert summary.errors == []


def _instance(make_engine: Any, storage: Any) -> Any:
    lease = BlobLeaseLock(storage.get_container_client(LOCK_CONTAINER), wait_seconds=30)
    return make_engine(locks=SecretLocks(distributed=lease), coalescer=Coalescer())


@pytest.mark.slow
@pytest.mark.parametrize("latency", [0.0, 0.05])
async def test_two_hosts_racing_every_trigger_promote_exactly_one_version(
    make_engine: Any, kv_client: Any, vault_clock: Any, vault_control: Any, azurite: str, latency: float
) -> None:
    """20 rounds at once (one secret each): per host 20 on-demand rotations, a timer sweep and a
    SecretNearExpiry event for the current version — two hosts on one vault and one Azurite.
    Before (no lease under `auto` with development storage): 4 of 5 rounds promoted two versions."""
    from azure.storage.blob.aio import BlobServiceClient

    rounds = 20
    now = vault_clock.now()
    names = [f"race-{int(latency * 1000)}-{i}" for i in range(rounds)]
    seeded = await seed(
        kv_client,
        [
            dict(name=n, value="x", tags={"ValidityPeriodDays": "60"}, expires_on=now + timedelta(days=3))
            for n in names
        ],
    )
    original = {s.properties.name: s.properties.version for s in seeded}
    clients = [BlobServiceClient.from_connection_string(azurite) for _ in range(2)]
    vault_control.set_latency(latency)
    try:
        hosts = [_instance(make_engine, c) for c in clients]
        work: list[Any] = []
        for host in hosts:
            work.append(host.sweep())
            for name in names:
                work += [host.rotate(name, RotationRequest(trigger="http", force=True)) for _ in range(20)]
                work.append(
                    host.rotate(name, RotationRequest(trigger="event", expected_version=original[name]))
                )
        results = await asyncio.gather(*work, return_exceptions=True)
    finally:
        vault_control.set_latency(0.0)
        for c in clients:
            await c.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], failures[:3]
    for name in names:
        versions = [VersionInfo.from_properties(v) for v in await versions_of(kv_client, name)]
        history = SecretHistory.from_versions(name, versions)
        promoted = [v for v in history.versions if v.previous_version == original[name]]
        assert len(promoted) == 1 and history.promoted_twice() == [], [(v.version, v.tags) for v in versions]
        assert len(versions) == 2 and history.latest is not None and history.latest.enabled
