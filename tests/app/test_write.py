"""PUT /api/secrets/{name} through the real stack: blueprint → shared.secrets → aio SecretClient →
ManagedIdentityCredential → local vault over verified HTTPS."""

from __future__ import annotations

import pytest

from tests.fixtures.app import OWNER_TAG, OWNER_VALUE, InProcessApi, SecretValues

pytestmark = pytest.mark.usefixtures("app_env")


def sets(vault_control) -> int:
    return vault_control.stats()["operations"].get("SetSecret", 0)


async def test_new_name_is_201_then_new_version_200(
    api: InProcessApi, secret_values: SecretValues, vault_control
) -> None:
    first = await api.put(
        "app-db", {"value": secret_values.new(), "contentType": "text/plain", "tags": {"env": "dev"}}
    )
    assert first.status == 201, first.text
    body = first.json
    assert set(body) == {
        "name",
        "version",
        "id",
        "contentType",
        "tags",
        "enabled",
        "notBefore",
        "expiresOn",
        "createdOn",
        "updatedOn",
    }
    assert body["name"] == "app-db" and body["contentType"] == "text/plain" and body["enabled"] is True
    assert body["tags"] == {"env": "dev", OWNER_TAG: OWNER_VALUE}
    assert body["id"].endswith(f"/secrets/app-db/{body['version']}")
    second = await api.put("app-db", {"value": secret_values.new()})
    assert second.status == 200 and second.json["version"] != body["version"]
    # Omitted tags and contentType carry over from the current version.
    assert second.json["tags"] == body["tags"] and second.json["contentType"] == "text/plain"
    assert sets(vault_control) == 2


async def test_identical_write_is_200_with_no_new_version(
    api: InProcessApi, secret_values: SecretValues, vault_control
) -> None:
    body = {
        "value": secret_values.new(),
        "tags": {"a": "b"},
        "expiresOn": "2031-01-01T00:00:00Z",
        "notBefore": "2030-01-01T00:00:00.9Z",
    }
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


async def test_generate_writes_a_value_from_the_preset_and_never_returns_it(
    api: InProcessApi, secret_values: SecretValues, aio_client, vault_control
) -> None:
    response = await api.put("app-gen", {"generate": {"length": 48, "alphabet": "hex"}})
    assert response.status == 201
    stored = secret_values.register((await aio_client.get_secret("app-gen")).value)
    assert len(stored) == 48 and set(stored) <= set("0123456789abcdef")
    # A generate request is never "identical": it always makes a new version.
    again = await api.put("app-gen", {"generate": {"length": 48, "alphabet": "hex"}})
    assert again.status == 200 and again.json["version"] != response.json["version"]
    secret_values.register((await aio_client.get_secret("app-gen")).value)
    default = await api.put("app-gen2", {"generate": {}})
    stored = secret_values.register((await aio_client.get_secret("app-gen2")).value)
    assert default.status == 201 and len(stored) == 32 and stored.isalnum()


@pytest.mark.parametrize(
    ("name", "body", "status", "target"),
    [
        ("app_bad", {"value": "x"}, 400, "name"),
        ("app-" + "x" * 124, {"value": "x"}, 400, "name"),
        ("app-a", {"value": "é" * 12_801}, 413, "value"),
        ("app-a", {"value": "x", "tags": {f"t{i}": "v" for i in range(15)}}, 400, "tags"),
        ("app-a", {"value": "x", "tags": {"t": "v" * 257}}, 400, "tags.t"),
        ("app-a", {"value": "x", "tags": {"t" * 257: "v"}}, 400, "tags"),
        ("app-a", {"value": "x", "contentType": "c" * 256}, 400, "contentType"),
        (
            "app-a",
            {"value": "x", "notBefore": "2031-01-01T00:00:00Z", "expiresOn": "2030-01-01T00:00:00Z"},
            400,
            "notBefore",
        ),
        ("app-a", {"value": "x", "expiresOn": "soon"}, 400, "expiresOn"),
        ("app-a", {"value": "x", "enabled": "true"}, 400, "enabled"),
        ("app-a", {"generate": {"alphabet": "base64"}}, 400, "generate.alphabet"),
        ("app-a", {}, 400, "value"),
    ],
)
async def test_rejected_writes_name_the_field_and_never_reach_the_vault(
    api: InProcessApi, vault_control, name: str, body: dict, status: int, target: str
) -> None:
    response = await api.put(name, body)
    assert response.status == status, response.text
    assert response.error["target"] == target and response.error["message"]
    assert vault_control.stats()["total"] == 0


@pytest.mark.parametrize(
    ("raw", "headers", "status", "target"),
    [
        (b'{"value": "x"}', {"content-type": "text/plain"}, 415, "Content-Type"),
        (b'{"value": "x"}', {}, 415, "Content-Type"),
        (b"[1, 2]", {"content-type": "application/json"}, 400, "body"),
        (b"{not json", {"content-type": "application/json"}, 400, "body"),
        (b"", {"content-type": "application/json"}, 400, "body"),
    ],
)
async def test_body_must_be_a_json_object_sent_as_json(
    api: InProcessApi, vault_control, raw: bytes, headers: dict, status: int, target: str
) -> None:
    response = await api.put("app-a", raw, headers=headers)
    assert (response.status, response.error["target"]) == (status, target)
    assert vault_control.stats()["total"] == 0


async def test_names_outside_the_prefix_are_403_before_any_vault_call(
    api: InProcessApi, secret_values, vault_control
) -> None:
    for response in (
        await api.put("other-db", {"value": secret_values.new()}),
        await api.get("other-db"),
        await api.delete("other-db"),
        await api.recover("other-db"),
    ):
        assert response.status == 403 and response.error["code"] == "OutOfScope"
        assert "SECRETS_NAME_PREFIX" in response.error["message"]
    assert vault_control.stats()["total"] == 0


async def test_unowned_secret_is_403_unless_adoption_is_allowed(
    api: InProcessApi, secret_values, aio_client, vault_control, reconfigure
) -> None:
    await aio_client.set_secret("app-legacy", secret_values.new(), tags={"team": "db"})
    writes_before = vault_control.stats()["operations"]["SetSecret"]
    refused = await api.put("app-legacy", {"value": secret_values.new()})
    assert refused.status == 403 and "SECRETS_ALLOW_ADOPT" in refused.error["message"]
    assert (await api.delete("app-legacy")).status == 403
    assert vault_control.stats()["operations"]["SetSecret"] == writes_before
    assert vault_control.stats()["operations"].get("DeleteSecret", 0) == 0

    await reconfigure(SECRETS_ALLOW_ADOPT="true")
    adopted = await api.put("app-legacy", {"value": secret_values.new()})
    assert adopted.status == 200
    assert adopted.json["tags"] == {"team": "db", OWNER_TAG: OWNER_VALUE}  # user tags kept, ownership added


async def test_adoption_that_would_exceed_15_tags_is_refused_before_writing(
    api: InProcessApi, secret_values, aio_client, vault_control, reconfigure
) -> None:
    await aio_client.set_secret("app-full", secret_values.new(), tags={f"t{i}": "v" for i in range(15)})
    await reconfigure(SECRETS_ALLOW_ADOPT="true")
    response = await api.put("app-full", {"value": secret_values.new()})
    assert response.status == 400 and response.error["target"] == "tags"
    assert vault_control.stats()["operations"]["SetSecret"] == 1


async def test_deleted_but_recoverable_is_409_then_recover_then_write(
    api: InProcessApi, secret_values, vault_control
) -> None:
    created = await api.put("app-gone", {"value": secret_values.new(), "tags": {"k": "v"}})
    assert created.status == 201
    deleted = await api.delete("app-gone")
    assert deleted.status == 200
    conflict = await api.put("app-gone", {"value": secret_values.new()})
    assert conflict.status == 409 and conflict.error["code"] == "SecretDeletedButRecoverable"
    message = conflict.error["message"]
    assert "deleted but recoverable" in message and "?recover=true" in message and "/recover" in message
    recovered_write = await api.put("app-gone", {"value": secret_values.new()}, params={"recover": "true"})
    assert recovered_write.status == 200, recovered_write.text
    assert recovered_write.json["version"] != created.json["version"]
    assert recovered_write.json["tags"] == {"k": "v", OWNER_TAG: OWNER_VALUE}
    assert vault_control.stats()["operations"]["RecoverDeletedSecret"] == 1
    # The body flag works too.
    await api.delete("app-gone")
    again = await api.put("app-gone", {"value": secret_values.new(), "recover": True})
    assert again.status == 200


async def test_recover_true_on_a_new_name_just_creates(api: InProcessApi, secret_values) -> None:
    response = await api.put("app-fresh", {"value": secret_values.new()}, params={"recover": "true"})
    assert response.status == 201


async def test_recovering_an_unowned_deleted_secret_needs_adoption(
    api: InProcessApi, secret_values, aio_client, vault_control, reconfigure
) -> None:
    await aio_client.set_secret("app-theirs", secret_values.new())
    await aio_client.delete_secret("app-theirs", _polling_interval=0)
    refused = await api.recover("app-theirs")
    assert refused.status == 403 and refused.error["code"] == "OutOfScope"
    assert (
        await api.put("app-theirs", {"value": secret_values.new()}, params={"recover": "true"})
    ).status == 403
    assert vault_control.stats()["operations"].get("RecoverDeletedSecret", 0) == 0
    await reconfigure(SECRETS_ALLOW_ADOPT="true")
    assert (await api.recover("app-theirs")).status == 200
