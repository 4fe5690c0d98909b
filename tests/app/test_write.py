"""PUT /api/secrets/{name} through the real stack: blueprint → shared.secrets → aio SecretClient →
ManagedIdentityCredential → local vault over verified HTTPS."""

from __future__ import annotations

import pytest

from tests.fixtures.app import OWNER_TAG, OWNER_VALUE, InProcessApi, SecretValues

pytestmark = pytest.mark.usefixtures("app_env")


def sets(vault_control) -> int:
    return vault_control.stats()["operations"].get("SetSecret", 0)


async def test_new_name_is_201_then_new_version_200(api: InProcessApi, secret_values: SecretValues,
                                                    vault_control) -> None:
    first = await api.put("app-db", {"value": secret_values.new(), "contentType": "text/plain",
                                     "tags": {"env": "dev"}})
    assert first.status == 201, first.text
    body = first.json
    assert set(body) == {"name", "version", "id", "contentType", "tags", "enabled", "notBefore", "expiresOn",
                         "createdOn", "updatedOn"}
    assert body["name"] == "app-db" and body["contentType"] == "text/plain" and body["enabled"] is True
    assert body["tags"] == {"env": "dev", OWNER_TAG: OWNER_VALUE}
    assert body["id"].endswith(f"/secrets/app-db/{body['version']}")
    second = await api.put("app-db", {"value": secret_values.new()})
    assert second.status == 200 and second.json["version"] != body["version"]
    # Omitted tags and contentType carry over from the current version.
    assert second.json["tags"] == body["tags"] and second.json["contentType"] == "text/plain"
    assert sets(vault_control) == 2


async def test_identical_write_is_200_with_no_new_version(api: InProcessApi, secret_values: SecretValues,
                                                          vault_control) -> None:
    body = {"value": secret_values.new(), "tags": {"a": "b"}, "expiresOn": "2031-01-01T00:00:00Z",
            "notBefore": "2030-01-01T00:00:00.9Z"}
    first = await api.put("app-idem", body)
    assert first.status == 201
    before = sets(vault_control)
    again = await api.put("app-idem", body)
    assert again.status == 200 and again.json["version"] == first.json["version"]
    assert sets(vault_control) == before
    # Any difference (here: enabled) is a new version.
    changed = await api.put("app-idem", {**body, "enabled": False})
    assert changed.status == 200 and changed.json["version"] != first.json["version"]
    assert changed.json["enabled"] is False
    assert sets(vault_control) == before + 1
