"""All 12 secrets operations through the real SDK (sync and aio), and the exact wire shapes underneath."""

from __future__ import annotations

import re
import secrets
import time

import pytest
from azure.keyvault.secrets import KeyVaultSecretIdentifier

from localdev.vault.instrumentation import OPERATIONS

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _value() -> str:
    return secrets.token_urlsafe(24)


async def test_every_operation(kv, vault, vault_control) -> None:
    """One body for the sync and the aio SDK (the `kv` fixture runs it through each)."""
    first, second = _value(), _value()
    created = await kv.call(
        "set_secret", "db-password", first, content_type="text/plain", tags={"owner": "t"}, expires_on=None
    )
    assert created.value == first
    assert HEX32.match(created.properties.version)
    assert created.id == f"{vault.vault_url}/secrets/db-password/{created.properties.version}"
    assert created.properties.recovery_level == "Recoverable+Purgeable"
    assert created.properties.recoverable_days == 90
    newer = await kv.call("set_secret", "db-password", second)

    assert (await kv.call("get_secret", "db-password")).value == second
    # names ignore case
    assert (await kv.call("get_secret", "DB-PASSWORD", created.properties.version)).value == first

    listed = await kv.call("list_properties_of_secrets")
    assert [p.name for p in listed] == ["db-password"]
    assert listed[0].version is None and listed[0].id == f"{vault.vault_url}/secrets/db-password"
    versions = await kv.call("list_properties_of_secret_versions", "db-password")
    assert {v.version for v in versions} == {created.properties.version, newer.properties.version}

    updated = await kv.call(
        "update_secret_properties",
        "db-password",
        created.properties.version,
        content_type="application/json",
        tags={"a": "b"},
    )
    assert updated.content_type == "application/json" and updated.tags == {"a": "b"}
    assert updated.version == created.properties.version
    latest = await kv.call("update_secret_properties", "db-password", enabled=False, tags={"x": "y"})
    assert latest.version == newer.properties.version and latest.tags == {"x": "y"}
    assert latest.enabled is False
    await kv.call("update_secret_properties", "db-password", enabled=True)

    backup = await kv.call("backup_secret", "db-password")
    assert isinstance(backup, bytes) and first.encode() not in backup and second.encode() not in backup

    deleted = await kv.call("delete_secret", "db-password", _polling_interval=0)
    assert deleted.recovery_id == f"{vault.vault_url}/deletedsecrets/db-password"
    assert deleted.scheduled_purge_date.timestamp() - deleted.deleted_date.timestamp() == 90 * 86400
    assert (await kv.call("get_deleted_secret", "db-password")).name == "db-password"
    assert [d.name for d in await kv.call("list_deleted_secrets")] == ["db-password"]
    assert await kv.call("list_properties_of_secrets") == []

    recovered = await kv.call("recover_deleted_secret", "db-password", _polling_interval=0)
    assert recovered.version == newer.properties.version
    assert (await kv.call("get_secret", "db-password")).value == second

    await kv.call("delete_secret", "db-password", _polling_interval=0)
    await kv.call("purge_deleted_secret", "db-password")
    assert await kv.call("list_deleted_secrets") == []

    restored = await kv.call("restore_secret_backup", backup)
    assert restored.name == "db-password" and restored.version == newer.properties.version
    assert (await kv.call("get_secret", "db-password", created.properties.version)).value == first

    ops = vault_control.stats()["operations"]
    missing = [op for op in OPERATIONS if ops.get(op, 0) < 1]
    assert missing == []


async def test_paging_over_more_than_25(kv, vault_control) -> None:
    names = {f"page-{i:02d}" for i in range(31)}
    for name in names:
        await kv.call("set_secret", name, "v")
    for _ in range(27):
        await kv.call("set_secret", "page-00", "v")

    def pages() -> int:
        return vault_control.stats()["operations"].get("GetSecrets", 0)

    before = pages()
    assert {p.name for p in await kv.call("list_properties_of_secrets")} == names
    assert pages() - before == 2  # 25 + 6
    assert len(await kv.call("list_properties_of_secret_versions", "page-00")) == 28
    before = pages()
    assert len(await kv.call("list_properties_of_secrets", max_page_size=4)) == 31
    assert pages() - before == 8  # 7 pages of 4, then 3
    for name in names:
        await kv.call("delete_secret", name, _polling_interval=0)
    assert len(await kv.call("list_deleted_secrets")) == 31


def test_wire_shapes(raw, vault) -> None:
    body = {"value": "v1", "attributes": {"enabled": True, "exp": 1893456000}}
    set_resp = raw.call("PUT", "/secrets/shape", json=body)
    assert set_resp.status_code == 200
    assert set_resp.headers["Content-Type"].startswith("application/json")
    bundle = set_resp.json()
    assert set(bundle) == {"value", "id", "attributes"}  # no contentType/tags/kid/managed when absent
    attrs = bundle["attributes"]
    assert all(isinstance(attrs[k], int) for k in ("created", "updated", "exp", "recoverableDays"))
    assert "nbf" not in attrs
    assert abs(attrs["created"] - time.time()) < 5
    # trailing-slash paths as the SDK sends them
    assert raw.call("GET", "/secrets/shape/").json()["value"] == "v1"
    patched = raw.call("PATCH", "/secrets/shape/", json={"contentType": "x"}).json()
    assert "value" not in patched and patched["contentType"] == "x"
    listed = raw.call("GET", "/secrets").json()
    assert listed["value"][0]["id"] == f"{vault.vault_url}/secrets/shape"
    assert "value" not in listed["value"][0]
    deleted = raw.call("DELETE", "/secrets/shape").json()
    assert deleted["scheduledPurgeDate"] - deleted["deletedDate"] == 7_776_000
    assert "value" not in deleted
    item = raw.call("GET", "/deletedsecrets").json()["value"][0]
    assert item["id"] == f"{vault.vault_url}/secrets/shape"  # versionless in the list
    assert raw.call("DELETE", "/deletedsecrets/shape").status_code == 204


def test_next_link_is_absolute_with_opaque_skiptoken(raw, vault) -> None:
    for i in range(3):
        raw.call("PUT", f"/secrets/link-{i}", json={"value": "v"})
    page = raw.call("GET", "/secrets", params={"maxresults": "2"}).json()
    link = page["nextLink"]
    assert link.startswith(f"{vault.vault_url}/secrets?api-version=") and "$skiptoken=" in link
    assert "link-1" not in link  # opaque marker
    second = raw.call("GET", link, api_version=None).json()
    assert [i["id"].rsplit("/", 1)[1] for i in second["value"]] == ["link-2"]
    assert second["nextLink"] is None


def test_listing_shows_every_change(raw, vault_control) -> None:
    """List items are cached between sweeps: each kind of change must still show in the next listing."""

    def listed() -> dict:
        return raw.call("GET", "/secrets").json()["value"][0]

    raw.call("PUT", "/secrets/cached", json={"value": "v", "tags": {"a": "1"}})
    first = listed()
    assert first["tags"] == {"a": "1"} and listed() == first
    raw.call("PATCH", "/secrets/cached/", json={"tags": {"a": "2"}, "attributes": {"exp": 1893456000}})
    assert listed()["tags"] == {"a": "2"} and listed()["attributes"]["exp"] == 1893456000
    raw.call("PUT", "/secrets/cached", json={"value": "v2", "contentType": "text/plain"})
    assert listed()["contentType"] == "text/plain" and "tags" not in listed()
    vault_control.set_soft_delete(retention_days=7)
    assert listed()["attributes"]["recoverableDays"] == 7
    assert listed()["attributes"]["recoveryLevel"] == "CustomizedRecoverable+Purgeable"
    raw.call("DELETE", "/secrets/cached")
    assert raw.call("GET", "/secrets").json()["value"] == []
    vault_control.reset()
    raw.call("PUT", "/secrets/cached", json={"value": "v"})
    assert "tags" not in listed() and listed()["attributes"]["recoverableDays"] == 90


@pytest.mark.parametrize(
    "api_version",
    [
        "2016-10-01",
        "7.0",
        "7.1",
        "7.2",
        "7.3",
        "7.4",
        "7.5",
        "7.6",
        "2025-07-01",
        "2026-04-01",
        "7.6-preview.2",
        "2025-06-01-preview",
        "2026-01-01-preview",
        "2026-03-01-preview",
    ],
)
def test_every_sdk_api_version_is_accepted(raw, api_version) -> None:
    assert raw.call("GET", "/secrets", api_version=api_version).status_code == 200


@pytest.mark.parametrize("api_version", ["7.6", "2025-07-01", "2026-04-01"])
def test_sdk_clients_with_older_versions(vault, vault_env, vault_control, api_version) -> None:
    from tests.fixtures.vault import make_sync_client

    with make_sync_client(vault, api_version=api_version) as client:
        client.set_secret("versioned", "v")
        assert client.get_secret("versioned").value == "v"


def test_identifier_parses(sync_client) -> None:
    secret = sync_client.set_secret("parse-me", "v")
    parsed = KeyVaultSecretIdentifier(secret.id)
    assert parsed.name == "parse-me" and parsed.version == secret.properties.version


def test_nbf_and_exp_are_informational(sync_client) -> None:
    import datetime as dt

    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    future = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    sync_client.set_secret("expired", "v", expires_on=past)
    sync_client.set_secret("not-yet", "v", not_before=future)
    assert sync_client.get_secret("expired").properties.expires_on == past
    assert sync_client.get_secret("not-yet").properties.not_before == future


def test_an_emulator_bug_answers_500_and_keeps_serving(raw, vault, monkeypatch) -> None:
    """Provokes a failure inside the store (not the transport) to see the wire layer contain it."""

    def broken(*args, **kwargs):
        raise RuntimeError("simulated emulator bug")

    monkeypatch.setattr(vault.runtime.store, "list_secrets", broken)
    response = raw.call("GET", "/secrets")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "InternalServerError"
    monkeypatch.undo()
    assert raw.call("GET", "/secrets").status_code == 200
