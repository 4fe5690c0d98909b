"""Rotation against the local Key Vault through the real stack (shared aio client, managed identity, TLS)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from shared.rotation.engine import RotationRequest
from shared.rotation.results import Outcome
from shared.vault.versions import parse_time
from tests.fixtures.rotation import seed, versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")

CONTRACT = {
    "ValidityPeriodDays": "60",
    "CredentialId": "sqlAdmin",
    "ProviderAddress": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/db1",
}


def writes(stats: dict[str, Any]) -> int:
    ops = stats["operations"]
    return sum(ops.get(op, 0) for op in ("SetSecret", "UpdateSecret", "DeleteSecret", "PurgeDeletedSecret"))


async def test_due_secret_gets_one_new_version_with_the_sample_contract(
    kv_client: Any, make_engine: Any, vault_clock: Any, vault_control: Any, secret_values: Any
) -> None:
    now = vault_clock.now()
    [old] = await seed(
        kv_client,
        [
            dict(
                name="db-password",
                value=secret_values.new(),
                content_type="text/plain",
                tags=CONTRACT,
                expires_on=now + timedelta(days=10),
            )
        ],
    )
    before = vault_control.stats()["operations"]

    summary = await make_engine().sweep()

    after = vault_control.stats()["operations"]
    assert summary.outcomes == {"Rotated": 1} and summary.statuses == {"Due": 1}
    # list page + list versions + set + update: the transaction budget of one due secret
    assert {
        op: after.get(op, 0) - before.get(op, 0) for op in after if after.get(op, 0) != before.get(op, 0)
    } == {"GetSecrets": 1, "GetSecretVersions": 1, "SetSecret": 1, "UpdateSecret": 1}
    versions = {v.version: v for v in await versions_of(kv_client, "db-password")}
    assert len(versions) == 2
    new = next(v for k, v in versions.items() if k != old.properties.version)
    assert new.enabled and versions[old.properties.version].enabled  # the old one stays until cleanup
    assert new.content_type == "text/plain"
    assert abs((new.not_before - now).total_seconds()) < 5
    assert abs((new.expires_on - (new.not_before + timedelta(days=60))).total_seconds()) < 1
    assert {k: new.tags[k] for k in CONTRACT} == CONTRACT
    assert new.tags["RotationPreviousVersion"] == old.properties.version and "RotationState" not in new.tags
    revoke_after = parse_time(new.tags["RotationRevokeAfter"])
    assert revoke_after is not None and abs(revoke_after - (now + timedelta(days=2))) < timedelta(seconds=10)
    value = (await kv_client.get_secret("db-password")).value
    secret_values.register(value)
    assert re.fullmatch(r"[A-Za-z0-9]{32}", value)


async def test_only_due_and_expired_managed_secrets_rotate(
    kv_client: Any, make_engine: Any, vault_clock: Any, vault_control: Any
) -> None:
    now = vault_clock.now()
    tags = {"ValidityPeriodDays": "60"}
    await seed(
        kv_client,
        [
            dict(name="due", value="v-due", tags=tags, expires_on=now + timedelta(days=5)),
            dict(name="not-due", value="v-not-due", tags=tags, expires_on=now + timedelta(days=50)),
            dict(
                name="no-tag",
                value="v-no-tag",
                tags={"CredentialId": "x"},
                expires_on=now - timedelta(days=1),
            ),
            dict(name="expired", value="v-expired", tags=tags, expires_on=now - timedelta(days=1)),
            dict(
                name="disabled",
                value="v-disabled",
                tags=tags,
                expires_on=now + timedelta(days=1),
                enabled=False,
            ),
            dict(name="deleted", value="v-deleted", tags=tags, expires_on=now + timedelta(days=1)),
            dict(name="bad-policy", value="v-bad", tags={"ValidityPeriodDays": "ninety"}),
        ],
    )
    await kv_client.delete_secret("deleted")
    summary = await make_engine().sweep()
    assert summary.statuses == {"Due": 1, "Expired": 1, "UpToDate": 1, "Disabled": 1, "Error": 1}
    assert summary.outcomes == {"Rotated": 2, "NotDue": 1, "Skipped": 1, "Failed": 1}
    assert summary.errors[0]["name"] == "bad-policy" and "ValidityPeriodDays" in summary.errors[0]["reason"]
    for name, count in {
        "due": 2,
        "expired": 2,
        "not-due": 1,
        "no-tag": 1,
        "disabled": 1,
        "bad-policy": 1,
    }.items():
        assert len(await versions_of(kv_client, name)) == count, name
    again = await make_engine().sweep()
    assert "Rotated" not in again.outcomes  # converged: nothing is due any more


async def test_dry_run_changes_nothing(
    kv_client: Any, make_engine: Any, vault_clock: Any, vault_control: Any
) -> None:
    now = vault_clock.now()
    await seed(
        kv_client,
        [
            dict(
                name=f"s{i}", value="x", tags={"ValidityPeriodDays": "30"}, expires_on=now + timedelta(days=i)
            )
            for i in range(0, 40, 4)
        ],
    )
    before = vault_control.stats()
    summary = await make_engine().sweep(dry_run=True, include_items=True)
    after = vault_control.stats()
    assert writes(after) == writes(before)
    assert after["operations"].get("GetSecretVersions", 0) == before["operations"].get("GetSecretVersions", 0)
    assert summary.outcomes == {"WouldRotate": 4, "NotDue": 6}  # threshold: min(30, 30/2) = 15 days
    assert {i["name"]: i["status"] for i in summary.items}["s12"] == "Due"
    single = await make_engine().rotate("s20", RotationRequest(trigger="http", force=True, dry_run=True))
    assert single.outcome is Outcome.WOULD_ROTATE and single.dry_run
    assert writes(vault_control.stats()) == writes(before)


async def test_throttled_patch_without_retry_after_is_retried_by_azure_core(
    kv_client: Any, make_engine: Any, vault_clock: Any, vault_control: Any
) -> None:
    """azure-core alone leaves a 429 on PATCH without Retry-After unretried; the app's policy retries it."""
    now = vault_clock.now()
    count = 20
    await seed(
        kv_client,
        [
            dict(
                name=f"t{i}", value="x", tags={"ValidityPeriodDays": "60"}, expires_on=now + timedelta(days=1)
            )
            for i in range(count)
        ],
    )
    vault_control.set_faults("UpdateSecret", 429, rate=0.1, retry_after=None)
    vault_control.set_faults("SetSecret", 429, rate=0.1, retry_after=0.05)
    summary = await make_engine().sweep()  # 0.1**5 per call: exhausting the 4 retries is a 1-in-100,000 event
    vault_control.clear_faults()
    assert summary.outcomes == {"Rotated": count}, summary.errors
    assert summary.throttled > 0 and vault_control.stats()["statuses"].get("429", 0) > 0
    for i in range(count):
        assert [v.enabled for v in await versions_of(kv_client, f"t{i}")].count(True) == 2


async def test_time_budget_stops_cleanly_and_the_next_run_continues(
    kv_client: Any, make_engine: Any, vault_clock: Any
) -> None:
    now = vault_clock.now()
    await seed(
        kv_client,
        [
            dict(
                name=f"b{i}", value="x", tags={"ValidityPeriodDays": "60"}, expires_on=now + timedelta(days=1)
            )
            for i in range(30)
        ],
    )
    stopped = await make_engine().sweep(budget_seconds=0)
    assert not stopped.listing_complete and "Rotated" not in stopped.outcomes
    assert stopped.remaining == stopped.outcomes.get("Deferred", 0)
    finished = await make_engine().sweep()
    assert finished.outcomes == {"Rotated": 30}


async def test_a_vault_that_cannot_be_listed_fails_the_run_with_a_summary(
    vault: Any, vault_control: Any, vault_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from shared.errors import VaultUnavailable
    from shared.rotation.engine import RotationEngine
    from shared.settings import get_settings
    from tests.fixtures.vault import aclose_client, make_aio_client

    caplog.set_level("INFO", logger="secrets.summary")
    client = make_aio_client(vault, retry_total=0)  # no retries: the listing failure itself is under test
    vault_control.set_faults("GetSecrets", 500, rate=1.0)
    try:
        with pytest.raises(VaultUnavailable, match="HTTP 500"):
            await RotationEngine(client, get_settings(), now=vault_clock.now).sweep()
    finally:
        vault_control.clear_faults()
        await aclose_client(client)
    [record] = [r for r in caplog.records if r.name == "secrets.summary"]
    assert record.summary["listingComplete"] is False  # type: ignore[attr-defined]
    assert record.summary["errors"][0]["code"] == "VaultUnavailable"  # type: ignore[attr-defined]


async def test_every_engine_of_the_process_draws_on_one_vault_budget(kv_client: Any) -> None:
    """Key Vault's 300 creates / 10 s are per vault: a sweep and on-demand rotations must share one limiter."""
    from shared.rotation import default_engine
    from shared.vault.calls import process_limiters

    sweep, on_demand = await default_engine(), await default_engine()
    assert sweep.calls is not on_demand.calls  # each run still counts its own transactions
    creates, transactions = process_limiters(
        sweep.settings.vault_url
    )  # what every sweep's (rotation and cleanup) calls draw on too
    assert sweep.calls._creates is on_demand.calls._creates is creates
    assert sweep.calls._transactions is on_demand.calls._transactions is transactions
