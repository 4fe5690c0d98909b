"""The four functions, called the way the host calls them, against the local Key Vault:
POST /api/secrets/{name}/rotate, GET /api/rotation/plan, the keyvault_events Event Grid function
(both schemas) and the scheduled_rotation timer — alone and all at once for one secret."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import azure.functions as func
import pytest

from blueprints import cleanup, events, rotation
from tests.fixtures.app import InProcessApi
from tests.fixtures.rotation import seed, versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")
TAGS = {"ValidityPeriodDays": "60", "CredentialId": "svc"}


def near_expiry(
    name: str,
    version: str,
    *,
    cloud: bool = False,
    event_type: str = "SecretNearExpiry",
    vault: str | None = None,
) -> Any:
    """A Key Vault event about `name` in `vault` (default: the configured vault), as Event Grid sends it."""
    from shared.settings import get_settings

    vault = vault or get_settings().vault_url
    data = {
        "Id": f"{vault}/secrets/{name}/{version}",
        "VaultName": (urlparse(vault).hostname or "").split(".")[0],
        "ObjectType": "Secret",
        "ObjectName": name,
        "Version": version,
        "NBF": "1559081980",
        "EXP": 1559082102,
    }
    full_type = f"Microsoft.KeyVault.{event_type}"
    if cloud:
        return func.CloudEvent(
            id="c1",
            source="/subscriptions/s/vaults/kv",
            type=full_type,
            specversion="1.0",
            time=datetime.now(UTC),
            subject=name,
            datacontenttype="application/json",
            dataschema=None,
            data=data,
        )
    return func.EventGridEvent(
        id="e1",
        data=data,
        topic="/subscriptions/s/vaults/kv",
        subject=name,
        event_type=full_type,
        event_time=datetime.now(UTC),
        data_version="1",
    )


async def call_rotate(api: InProcessApi, name: str, **params: str) -> Any:
    return await api.call(
        rotation.rotate_secret,
        "POST",
        f"/api/secrets/{name}/rotate",
        route_params={"name": name},
        params=params,
    )


async def test_on_demand_rotation_dry_run_min_interval_and_errors(
    kv_client: Any, api: InProcessApi, secret_values: Any, vault_control: Any
) -> None:
    now = datetime.now(UTC)
    await seed(
        kv_client,
        [
            dict(name="api-key", value=secret_values.new(), tags=TAGS, expires_on=now + timedelta(days=55)),
            dict(name="plain", value=secret_values.new(), tags={"Owner": "x"}),
        ],
    )
    dry = await call_rotate(api, "api-key", dryRun="true")
    assert dry.status == 200 and dry.json["outcome"] == "WouldRotate" and dry.json["dryRun"] is True
    assert vault_control.stats()["operations"].get("SetSecret", 0) == 2  # only the seeding

    first = await call_rotate(api, "api-key")
    assert first.status == 200 and first.json["outcome"] == "Rotated", first.json
    again = await call_rotate(api, "api-key")
    assert again.json["outcome"] == "AlreadyRotated" and again.json["version"] == first.json["version"]
    assert len(await versions_of(kv_client, "api-key")) == 2
    secret_values.register((await kv_client.get_secret("api-key")).value)

    unmanaged = await call_rotate(api, "plain")
    assert unmanaged.status == 409 and unmanaged.error["code"] == "RotationNotConfigured"
    assert "ValidityPeriodDays" in unmanaged.error["message"]
    missing = await call_rotate(api, "nope")
    assert missing.status == 404
    bad = await call_rotate(api, "bad_name")
    assert bad.status == 400


async def test_plan_shows_a_status_per_managed_secret_and_changes_nothing(
    kv_client: Any, api: InProcessApi, vault_control: Any
) -> None:
    now = datetime.now(UTC)
    await seed(
        kv_client,
        [
            dict(name="p-due", value="x", tags=TAGS, expires_on=now + timedelta(days=3)),
            dict(name="p-ok", value="x", tags=TAGS, expires_on=now + timedelta(days=50)),
            dict(name="p-expired", value="x", tags=TAGS, expires_on=now - timedelta(days=3)),
            dict(name="p-error", value="x", tags={"ValidityPeriodDays": "-1"}),
            dict(
                name="p-pending",
                value="x",
                enabled=False,
                tags={**TAGS, "RotationState": "pending", "RotationOperationId": "op9"},
            ),
            dict(name="p-unmanaged", value="x"),
        ],
    )
    before = vault_control.stats()["operations"]
    plan = await api.call(rotation.rotation_plan, "GET", "/api/rotation/plan")
    after = vault_control.stats()["operations"]
    assert plan.status == 200
    assert {op: n for op, n in after.items() if op in ("SetSecret", "UpdateSecret", "DeleteSecret")} == {
        op: n for op, n in before.items() if op in ("SetSecret", "UpdateSecret", "DeleteSecret")
    }
    statuses = {s["name"]: (s["status"], s.get("action")) for s in plan.json["rotation"]["secrets"]}
    assert statuses == {
        "p-due": ("Due", "WouldRotate"),
        "p-ok": ("UpToDate", "NotDue"),
        "p-expired": ("Expired", "WouldRotate"),
        "p-error": ("Error", "Failed"),
        "p-pending": ("PendingRecovery", "WouldResume"),
    }
    assert "must be between" in next(
        s["reason"] for s in plan.json["rotation"]["secrets"] if s["name"] == "p-error"
    )
    assert plan.json["rotation"]["dryRun"] and plan.json["cleanup"]["dryRun"]


@pytest.mark.parametrize("cloud", [False, True], ids=["eventgrid-schema", "cloudevents-schema"])
async def test_near_expiry_event_rotates_only_the_current_due_version(
    kv_client: Any, cloud: bool, vault_control: Any
) -> None:
    now = datetime.now(UTC)
    [due] = await seed(
        kv_client, [dict(name="ev", value="x", tags=TAGS, expires_on=now + timedelta(days=20))]
    )
    [fresh] = await seed(
        kv_client, [dict(name="ev-fresh", value="x", tags=TAGS, expires_on=now + timedelta(days=59))]
    )
    old = due.properties.version
    await events.keyvault_events(near_expiry("ev", "0" * 32, cloud=cloud))  # stale: not the current version
    await events.keyvault_events(near_expiry("ev-fresh", fresh.properties.version, cloud=cloud))  # not due
    assert vault_control.stats()["operations"].get("SetSecret", 0) == 2
    await events.keyvault_events(near_expiry("ev", old, cloud=cloud))  # current and due: rotate
    assert len(await versions_of(kv_client, "ev")) == 2
    await events.keyvault_events(near_expiry("ev", old, cloud=cloud))  # duplicate / out of order: no-op
    await events.keyvault_events(
        near_expiry("ev", old, cloud=cloud, event_type="SecretExpired")
    )  # alert only
    await events.keyvault_events(near_expiry("unknown-secret", "1" * 32, cloud=cloud))
    assert len(await versions_of(kv_client, "ev")) == 2
    assert vault_control.stats()["operations"].get("SetSecret", 0) == 3


async def test_expired_event_is_logged_as_an_alert(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="secrets.alert")
    await events.keyvault_events(near_expiry("gone", "2" * 32, event_type="SecretExpired"))
    alerts = [r for r in caplog.records if r.name == "secrets.alert"]
    assert len(alerts) == 1 and alerts[0].alert["name"] == "gone"  # type: ignore[attr-defined]


async def test_timer_events_and_twenty_on_demand_requests_at_once_make_one_version(
    kv_client: Any, api: InProcessApi, vault_control: Any
) -> None:
    now = datetime.now(UTC)
    [due] = await seed(
        kv_client, [dict(name="race", value="x", tags=TAGS, expires_on=now + timedelta(days=2))]
    )
    current = due.properties.version
    from azure.functions.timer import TimerRequest

    timer = TimerRequest(past_due=False)
    jobs = [
        rotation.scheduled_rotation(timer),
        events.keyvault_events(near_expiry("race", "3" * 32)),  # stale
        events.keyvault_events(near_expiry("race", current)),
    ]  # fresh
    jobs += [call_rotate(api, "race") for _ in range(20)]
    results = await asyncio.gather(*jobs)
    versions = await versions_of(kv_client, "race")
    assert len(versions) == 2, [(v.version, v.enabled, v.tags) for v in versions]
    new_version = next(v.version for v in versions if v.version != current)
    answers = [r.json for r in results[3:]]
    assert all(a["version"] == new_version for a in answers), answers
    assert {a["outcome"] for a in answers} <= {"Rotated", "AlreadyRotated"}
    assert vault_control.stats()["operations"]["SetSecret"] == 2


async def test_plan_maps_a_vault_that_refuses_the_cleanup_listing(
    kv_client: Any, api: InProcessApi, vault_control: Any
) -> None:
    vault_control.set_faults("GetDeletedSecrets", 403, rate=1.0)
    try:
        plan = await api.call(rotation.rotation_plan, "GET", "/api/rotation/plan")
    finally:
        vault_control.clear_faults()
    assert plan.status == 502, plan.json
    assert plan.error["code"] == "VaultAccessDenied" and "role" in plan.error["message"]


async def test_an_event_is_redelivered_only_for_a_transient_vault_failure(
    kv_client: Any, vault_control: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from shared.errors import VaultThrottled

    now = datetime.now(UTC)
    [due] = await seed(
        kv_client, [dict(name="ev-fail", value="x", tags=TAGS, expires_on=now + timedelta(days=2))]
    )
    event = near_expiry("ev-fail", due.properties.version)
    vault_control.set_faults("SetSecret", 403, rate=1.0)  # a missing role: redelivery cannot help
    try:
        await events.keyvault_events(event)
    finally:
        vault_control.clear_faults()
    assert "not rotated: VaultAccessDenied" in caplog.text
    vault_control.set_faults(
        "GetSecretVersions", 429, rate=1.0, retry_after=0.01
    )  # throttled: Event Grid retries
    try:
        with pytest.raises(VaultThrottled):
            await events.keyvault_events(event)
    finally:
        vault_control.clear_faults()
    assert len(await versions_of(kv_client, "ev-fail")) == 1


async def test_on_demand_rotation_outside_the_name_prefix_is_refused_before_any_vault_call(
    api: InProcessApi, vault_control: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("SECRETS_NAME_PREFIX", "app-")
    get_settings.cache_clear()
    before = vault_control.stats()["total"]
    for params in ({}, {"dryRun": "true"}):
        refused = await call_rotate(api, "other-secret", **params)
        assert refused.status == 403 and refused.error["code"] == "OutOfScope", refused.text
        assert "SECRETS_NAME_PREFIX" in refused.error["message"]
    assert vault_control.stats()["total"] == before


async def test_a_timer_run_without_a_setting_logs_which_one_to_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The local host logs a failed run's exception type only, so the app itself must say what to fix."""
    from azure.functions.timer import TimerRequest

    from shared.settings import SettingsError, get_settings

    monkeypatch.delenv("KEY_VAULT_URL")
    get_settings.cache_clear()
    for timer_function in (rotation.scheduled_rotation, cleanup.scheduled_cleanup):
        caplog.clear()
        with pytest.raises(SettingsError):
            await timer_function(TimerRequest(past_due=False))
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert any("KEY_VAULT_URL" in m and "Fix the app setting" in m for m in errors), errors


async def test_an_event_reaches_the_vault_it_names_and_one_for_another_vault_changes_nothing(
    kv_client: Any, vault_control: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two configured vaults (the local vault's two loopback names): the event's data.Id picks the client;
    an event about a vault the app is not configured for is logged and acknowledged without a vault call
    (before, it rotated the default vault's secret of the same name)."""
    from shared.keyvault import get_secret_client
    from shared.settings import get_settings

    first = get_settings().vault_url
    second = first.replace("localhost", "127.0.0.1")
    monkeypatch.setenv("KEY_VAULT_URLS", second)
    get_settings.cache_clear()
    now = datetime.now(UTC)
    [due] = await seed(
        kv_client, [dict(name="ev-two", value="x", tags=TAGS, expires_on=now + timedelta(days=20))]
    )
    before = vault_control.stats()["total"]
    await events.keyvault_events(
        near_expiry("ev-two", due.properties.version, vault="https://other.vault.azure.net")
    )
    assert vault_control.stats()["total"] == before and "not configured" in caplog.text
    await (
        await get_secret_client(first)
    ).close()  # only a rotation through the second vault's client can work
    await events.keyvault_events(near_expiry("ev-two", due.properties.version, vault=second))
    assert len(await versions_of(await get_secret_client(second), "ev-two")) == 2


async def test_an_event_naming_no_valid_secret_is_ignored_without_a_vault_call(
    kv_client: Any, vault_control: Any, caplog: pytest.LogCaptureFixture
) -> None:
    before = vault_control.stats()["total"]
    for bad_name in ("a/b", "under_score", "x" * 128):
        event = near_expiry("placeholder", "4" * 32)
        event.get_json()["ObjectName"] = bad_name
        await events.keyvault_events(event)  # neither raised (no redelivery) nor sent to the vault
    assert vault_control.stats()["total"] == before
    assert caplog.text.count("is not a Key Vault secret name") == 3


async def test_plan_stops_within_its_own_budget_and_says_the_listing_is_incomplete(
    kv_client: Any, api: InProcessApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.settings import get_settings

    now = datetime.now(UTC)
    await seed(
        kv_client,
        [dict(name=f"pb{i}", value="x", tags=TAGS, expires_on=now + timedelta(days=3)) for i in range(30)],
    )
    monkeypatch.setenv("ROTATION_PLAN_BUDGET_SECONDS", "0")  # the HTTP answer must not wait for a whole vault
    get_settings.cache_clear()
    plan = await api.call(rotation.rotation_plan, "GET", "/api/rotation/plan")
    assert plan.status == 200
    assert (
        plan.json["rotation"]["listingComplete"] is False and plan.json["cleanup"]["listingComplete"] is False
    )
    assert plan.json["rotation"]["listed"] < 30  # stopped after the first page of 25
    monkeypatch.setenv("ROTATION_PLAN_BUDGET_SECONDS", "111")
    get_settings.cache_clear()
    too_long = await api.call(rotation.rotation_plan, "GET", "/api/rotation/plan")
    assert too_long.status == 500 and "ROTATION_PLAN_BUDGET_SECONDS" in too_long.error["message"]
