"""Cleanup against the local Key Vault: revocation after the overlap, opt-in soft delete of expired secrets,
purge of owned soft-deleted secrets (setting, grace, purge protection), and dry runs that write nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.rotation.engine import RotationRequest
from shared.settings import get_settings
from tests.fixtures.rotation import seed, versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")
OWNED = {"ManagedBy": "keyvault-secrets-functions"}


def writes(control: Any) -> int:
    ops = control.stats()["operations"]
    return sum(ops.get(op, 0) for op in ("SetSecret", "UpdateSecret", "DeleteSecret", "PurgeDeletedSecret"))


async def test_superseded_versions_are_revoked_after_the_overlap(
    kv_client: Any,
    make_engine: Any,
    make_cleanup: Any,
    vault_clock: Any,
    vault_control: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLEANUP_KEEP_VERSIONS", "1")
    get_settings.cache_clear()
    [old] = await seed(
        kv_client, [dict(name="ov", value="x", tags={"ValidityPeriodDays": "60", "RotationOverlapDays": "1"})]
    )
    rotated = await make_engine().rotate("ov", RotationRequest(trigger="http", force=True))
    assert rotated.outcome.value == "Rotated"

    early = await make_cleanup().sweep()
    assert early.outcomes == {} and all(v.enabled for v in await versions_of(kv_client, "ov"))

    vault_clock.days(1.5)
    before = writes(vault_control)
    plan = await make_cleanup().sweep(dry_run=True, include_items=True)
    assert writes(vault_control) == before
    assert plan.items == [
        {
            "action": "DisableVersion",
            "name": "ov",
            "outcome": "WouldDo",
            "version": old.properties.version,
            "reason": plan.items[0]["reason"],
        }
    ]
    done = await make_cleanup().sweep()
    assert done.outcomes == {"DisableVersion:Done": 1}
    versions = {v.version: v for v in await versions_of(kv_client, "ov")}
    assert not versions[old.properties.version].enabled
    assert "RotationRevoked" in versions[old.properties.version].tags
    assert versions[rotated.version].enabled
    assert (await make_cleanup().sweep()).outcomes == {}  # idempotent


async def test_keep_versions_keeps_the_newest_enabled(
    kv_client: Any, make_engine: Any, make_cleanup: Any, vault_clock: Any
) -> None:
    await seed(
        kv_client,
        [dict(name="keep", value="x", tags={"ValidityPeriodDays": "60", "RotationOverlapDays": "0"})],
    )
    for _ in range(3):
        vault_clock.advance(120)  # past ROTATION_MIN_INTERVAL_SECONDS
        await make_engine().rotate("keep", RotationRequest(trigger="http", force=True))
    await make_cleanup().sweep()  # CLEANUP_KEEP_VERSIONS defaults to 2
    enabled = [v.enabled for v in sorted(await versions_of(kv_client, "keep"), key=lambda v: v.created_on)]
    assert enabled.count(True) == 2 and enabled[-2:] == [True, True]


async def test_expired_secrets_are_soft_deleted_only_when_opted_in_and_owned(
    kv_client: Any, make_cleanup: Any, vault_clock: Any
) -> None:
    now = vault_clock.now()
    long_ago = now - timedelta(days=40)
    await seed(
        kv_client,
        [
            dict(
                name="exp-both",
                value="x",
                tags={**OWNED, "CleanupDeleteExpired": "true"},
                expires_on=long_ago,
            ),
            dict(name="exp-not-owned", value="x", tags={"CleanupDeleteExpired": "true"}, expires_on=long_ago),
            dict(name="exp-not-opted", value="x", tags=OWNED, expires_on=long_ago),
            dict(
                name="exp-recent",
                value="x",
                tags={**OWNED, "CleanupDeleteExpired": "true"},
                expires_on=now - timedelta(days=5),
            ),
        ],
    )
    summary = await make_cleanup().sweep()
    assert summary.outcomes == {"DeleteExpired:Done": 1}
    deleted = [d.name async for d in kv_client.list_deleted_secrets()]
    assert deleted == ["exp-both"]


async def test_purge_needs_ownership_grace_and_the_setting_and_reports_purge_protection(
    kv_client: Any, make_cleanup: Any, vault_clock: Any, vault_control: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(
        kv_client, [dict(name="gone-owned", value="x", tags=OWNED), dict(name="gone-other", value="x")]
    )
    for name in ("gone-owned", "gone-other"):
        await kv_client.delete_secret(name, _polling_interval=0)
    young = await make_cleanup().sweep()
    assert young.outcomes == {}  # inside the grace period
    vault_clock.days(8)
    refused = await make_cleanup().sweep(include_items=True)
    assert (
        refused.outcomes == {"Purge:PurgeNotAllowed": 1}
        and "CLEANUP_ALLOW_PURGE" in refused.items[0]["reason"]
    )

    monkeypatch.setenv("CLEANUP_ALLOW_PURGE", "true")
    get_settings.cache_clear()
    vault_control.set_soft_delete(retention_days=90, purge_protection=True)
    protected = await make_cleanup().sweep()
    assert protected.outcomes == {"Purge:PurgeProtected": 1} and protected.errors == []

    vault_control.set_soft_delete(retention_days=90, purge_protection=False)
    before = writes(vault_control)
    assert (await make_cleanup().sweep(dry_run=True)).outcomes == {"Purge:WouldDo": 1}
    assert writes(vault_control) == before
    purged = await make_cleanup().sweep()
    assert purged.outcomes == {"Purge:Done": 1}
    assert [d.name async for d in kv_client.list_deleted_secrets()] == ["gone-other"]


async def test_a_vault_whose_deleted_secrets_cannot_be_listed_fails_the_run_with_a_summary(
    kv_client: Any, make_cleanup: Any, vault_control: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from shared.errors import VaultAccessDenied

    caplog.set_level("INFO", logger="secrets.summary")
    await seed(kv_client, [dict(name="kept", value="x", tags=OWNED)])
    vault_control.set_faults("GetDeletedSecrets", 403, rate=1.0)
    try:
        with pytest.raises(VaultAccessDenied, match="Grant it"):
            await make_cleanup().sweep()
    finally:
        vault_control.clear_faults()
    [record] = [r for r in caplog.records if r.name == "secrets.summary"]
    assert record.summary["listingComplete"] is False  # type: ignore[attr-defined]
    assert record.summary["errors"][0]["code"] == "VaultAccessDenied"  # type: ignore[attr-defined]


async def test_cleanup_logs_progress_while_it_acts_not_only_while_it_lists(
    kv_client: Any,
    make_cleanup: Any,
    vault_clock: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shared.vault.sweep

    monkeypatch.setattr(shared.vault.sweep, "PROGRESS_EVERY_SECONDS", 0.0)  # every chance to report is taken
    caplog.set_level("INFO", logger="shared.cleanup")
    long_ago = vault_clock.now() - timedelta(days=40)
    await seed(
        kv_client,
        [
            dict(
                name=f"exp-{i}",
                value="x",
                tags={**OWNED, "CleanupDeleteExpired": "true"},
                expires_on=long_ago,
            )
            for i in range(3)
        ],
    )
    summary = await make_cleanup().sweep(dry_run=True)
    assert summary.pages == 2 and summary.outcomes == {"DeleteExpired:WouldDo": 3}
    lines = [r.progress for r in caplog.records if hasattr(r, "progress")]
    assert len(lines) >= 4, lines  # one for the page of live secrets, then one per step acted on
    assert all(line["kind"] == "cleanup" for line in lines)  # JSON, like the summary
