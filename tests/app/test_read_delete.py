"""GET (metadata, versions), list paging, DELETE and recover, against the local vault."""

from __future__ import annotations

import json
import logging

import pytest

from tests.fixtures.app import OWNER_TAG, OWNER_VALUE, InProcessApi, SecretValues

pytestmark = pytest.mark.usefixtures("app_env")


async def test_get_returns_metadata_and_versions_newest_first(
    api: InProcessApi, secret_values: SecretValues, vault_control
) -> None:
    v1 = (await api.put("app-read", {"value": secret_values.new()})).json
    v2 = (await api.put("app-read", {"value": secret_values.new(), "expiresOn": "2031-01-01T00:00:00Z"})).json
    current = await api.get("app-read")
    assert current.status == 200 and "versions" not in current.json
    assert current.json["version"] == v2["version"] and current.json["expiresOn"] == "2031-01-01T00:00:00Z"
    with_versions = await api.get("app-read", params={"versions": "true"})
    assert [v["version"] for v in with_versions.json["versions"]] == [v2["version"], v1["version"]]
    assert (await api.get("app-missing")).status == 404
    assert (await api.get("app-read", params={"versions": "perhaps"})).status == 400


async def test_get_of_a_disabled_current_version_still_gives_metadata(
    api: InProcessApi, secret_values
) -> None:
    await api.put("app-off", {"value": secret_values.new()})
    disabled = await api.put("app-off", {"value": secret_values.new(), "enabled": False})
    response = await api.get("app-off")
    assert response.status == 200 and response.json["enabled"] is False
    assert response.json["version"] == disabled.json["version"]
    # Writing over a disabled (unreadable) current version adds a version; ownership came from its metadata.
    assert (await api.put("app-off", {"value": secret_values.new()})).status == 200


async def test_list_pages_through_only_in_scope_secrets(api: InProcessApi, secret_values, aio_client) -> None:
    names = [f"app-list-{i}" for i in range(5)]
    for name in names:
        await api.put(name, {"value": secret_values.new()})
    for name in ("zz-other-1", "zz-other-2"):
        await aio_client.set_secret(name, secret_values.new())
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"maxresults": "2", **({"continuationToken": token} if token else {})}
        page = await api.list(params)
        assert page.status == 200, page.text
        assert len(page.json["value"]) <= 2
        seen += [item["name"] for item in page.json["value"]]
        token = page.json["continuationToken"]
        pages += 1
        if token is None:
            break
    assert sorted(seen) == names and pages >= 3
    assert all(item["tags"][OWNER_TAG] == OWNER_VALUE for item in page.json["value"])


async def test_a_forged_continuation_token_is_400_and_never_leaves_the_vault(
    api: InProcessApi, vault_control, secret_values
) -> None:
    import base64

    for token in (
        "%%%",
        "not-base64!",
        "aHR0cHM6Ly9ldmlsLmV4YW1wbGUv",
        "",
        "é",
    ):  # #3 is https://evil.example/
        response = await api.list({"continuationToken": token} if token else {"continuationToken": "="})
        assert response.status == 400 and response.error["target"] == "continuationToken", token
    assert vault_control.stats()["total"] == 0
    # A decodable query is rebuilt on the configured vault URL: the bearer token never goes elsewhere.
    await api.put("app-page", {"value": secret_values.new()})
    forged = base64.urlsafe_b64encode(b"maxresults=1&next=https://evil.example/").decode()
    page = await api.list({"continuationToken": forged})
    assert page.status == 200 and [i["name"] for i in page.json["value"]] == ["app-page"]
    assert (await api.list({"maxresults": "26"})).status == 400


@pytest.mark.parametrize("query", [b"$skiptoken=garbage", b"maxresults=999", b"maxresults=abc"])
async def test_a_token_the_vault_rejects_is_the_callers_400_not_a_vault_outage(
    api: InProcessApi, secret_values: SecretValues, query: bytes
) -> None:
    import base64

    await api.put("app-page", {"value": secret_values.new()})
    response = await api.list({"continuationToken": base64.urlsafe_b64encode(query).decode()})
    assert response.status == 400, response.text
    assert response.error["target"] == "continuationToken" and "without it" in response.error["message"]


async def test_delete_and_recover_shapes(api: InProcessApi, secret_values, vault_control) -> None:
    created = (await api.put("app-del", {"value": secret_values.new()})).json
    deleted = await api.delete("app-del")
    assert deleted.status == 200, deleted.text
    body = deleted.json
    assert body["name"] == "app-del" and body["recoveryId"].endswith("/deletedsecrets/app-del")
    assert body["deletedOn"].endswith("Z") and body["scheduledPurgeDate"] > body["deletedOn"]
    assert (await api.get("app-del")).status == 404
    assert (await api.delete("app-del")).status == 404
    recovered = await api.recover("app-del")
    assert recovered.status == 200 and recovered.json["version"] == created["version"]
    assert (await api.recover("app-del")).status == 404
    assert (await api.recover("app-never")).status == 404


async def test_one_audit_line_per_mutation_with_caller_and_no_key(
    api: InProcessApi, secret_values, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    await api.put(
        "app-audit",
        {"value": secret_values.new()},
        headers={"X-MS-CLIENT-PRINCIPAL-NAME": "alice@example.com"},
    )
    await api.put("app-audit", {"value": secret_values.new()})
    await api.delete("app-audit")
    await api.put("other-x", {"value": secret_values.new()})
    audits = [r.audit for r in caplog.records if r.name == "secrets.audit"]
    assert [(a["operation"], a["outcome"]) for a in audits] == [
        ("write", "ok"),
        ("write", "ok"),
        ("delete", "ok"),
        ("write", "error"),
    ]
    assert audits[0]["caller"] == "principal:alice@example.com" and audits[1]["caller"] == "function-key"
    assert audits[0]["details"]["created"] is True and audits[1]["details"]["created"] is False
    assert audits[3]["error_code"] == "OutOfScope"
    assert all(a["version"] for a in audits[:3]) and all(a["duration_ms"] >= 0 for a in audits)
    text = json.dumps(audits) + caplog.text
    assert api.key not in text


async def test_anonymous_caller_is_recorded_as_such(secret_values, caplog: pytest.LogCaptureFixture) -> None:
    anonymous = InProcessApi(secret_values, key=None)
    caplog.set_level(logging.INFO, logger="secrets.audit")
    await anonymous.put("app-anon", {"value": secret_values.new()})
    assert [r.audit["caller"] for r in caplog.records if r.name == "secrets.audit"] == ["anonymous"]
