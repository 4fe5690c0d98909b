"""The local control plane speaks like Azure: real clients (requests, azure-core, azure-storage-blob,
azure-identity) over verified TLS, with the vault's managed-identity tokens, get the services' shapes."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from localdev.cloud.store import Fault
from localdev.vault.auth import SUBSCRIPTION_ID, TENANT_ID
from tests.fixtures.cloud import GROUP, ArmSeeder


def _post(
    arm: ArmSeeder, path: str, body: Any = None, *, token: str | None = "arm", version: str = "2023-05-01"
):
    headers = {}
    if token == "arm":
        headers["Authorization"] = f"Bearer {arm.token('https://management.azure.com')}"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    params = {"api-version": version} if version else {}
    return arm.session.post(f"{arm.cloud.url}{path}", params=params, json=body, headers=headers, timeout=10)


def test_storage_list_and_regenerate_shapes(arm: ArmSeeder) -> None:
    resource = arm.resource("storage-account-key")
    listed = _post(arm, f"{resource}/listKeys", None)
    assert listed.status_code == 200 and listed.headers["x-ms-request-id"]
    keys = listed.json()["keys"]
    assert [k["keyName"] for k in keys] == ["key1", "key2"]
    assert {"value", "permissions", "creationTime"} <= set(keys[0])
    before = {k["keyName"]: k["value"] for k in keys}
    regenerated = _post(arm, f"{resource}/regenerateKey", {"keyName": "key2"}).json()["keys"]
    after = {k["keyName"]: k["value"] for k in regenerated}
    assert after["key1"] == before["key1"] and after["key2"] != before["key2"]
    assert arm.cloud.store.regenerations[resource.lower()] == 1
    bad = _post(arm, f"{resource}/regenerateKey", {"keyName": "key3"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidValuesForRequestParameters"


def test_arm_refusals(arm: ArmSeeder) -> None:
    resource = arm.resource("storage-account-key")
    missing = _post(arm, f"{resource}/listKeys", token=None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in missing.headers
    graph_token = arm.token("https://graph.microsoft.com")
    wrong = _post(arm, f"{resource}/listKeys", token=graph_token)
    assert wrong.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert (
        _post(arm, f"{resource}/listKeys", version="").json()["error"]["code"] == "MissingApiVersionParameter"
    )
    absent = _post(
        arm,
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{GROUP}/providers/Microsoft.Storage/"
        "storageAccounts/nosuchaccount/listKeys",
    )
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "ResourceNotFound"
    assert "was not found" in absent.json()["error"]["message"]


def test_rbac_roles_decide(arm: ArmSeeder) -> None:
    store = arm.cloud.store
    resource = arm.resource("storage-account-key")
    principal = store.default_principals[0]
    store.unassign(principal)
    store.assign(principal, "Reader", resource)
    denied = _post(arm, f"{resource}/listKeys")
    assert denied.status_code == 403
    error = denied.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert (
        "Microsoft.Storage/storageAccounts/listKeys/action" in error["message"]
        and resource in error["message"]
    )
    store.unassign(principal, "Reader")
    store.assign(principal, "Storage Account Key Operator Service Role", resource)
    assert _post(arm, f"{resource}/listKeys").status_code == 200
    # the key operator role cannot read the account itself
    read = arm.session.get(
        f"{arm.cloud.url}{resource}",
        params={"api-version": "2023-05-01"},
        headers={"Authorization": f"Bearer {arm.token('https://management.azure.com')}"},
        timeout=10,
    )
    assert read.status_code == 403


def test_throttling_fault_carries_retry_after(arm: ArmSeeder) -> None:
    resource = arm.resource("redis-key")
    arm.cloud.store.inject(
        Fault("arm", "listKeys", 429, "TooManyRequests", "Too many requests.", {"Retry-After": "7"}, times=1)
    )
    throttled = _post(arm, f"{resource}/listKeys")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert _post(arm, f"{resource}/listKeys").status_code == 200


def test_cosmos_regenerate_is_a_long_running_operation(arm: ArmSeeder) -> None:
    store = arm.cloud.store
    store.lro_polls = 2
    resource = arm.resource("cosmosdb-key")
    before = _post(arm, f"{resource}/listKeys").json()
    assert set(before) == {
        "primaryMasterKey",
        "secondaryMasterKey",
        "primaryReadonlyMasterKey",
        "secondaryReadonlyMasterKey",
    }
    started = _post(arm, f"{resource}/regenerateKey", {"keyKind": "secondary"})
    assert started.status_code == 202 and not started.content
    status_url = started.headers["Azure-AsyncOperation"]
    assert status_url.startswith(arm.cloud.url) and started.headers["Location"]
    headers = {"Authorization": f"Bearer {arm.token('https://management.azure.com')}"}
    assert arm.session.get(status_url, headers=headers, timeout=10).json()["status"] == "InProgress"
    assert _post(arm, f"{resource}/listKeys").json()["secondaryMasterKey"] == before["secondaryMasterKey"]
    assert arm.session.get(status_url, headers=headers, timeout=10).json()["status"] == "Succeeded"
    after = _post(arm, f"{resource}/listKeys").json()
    assert after["secondaryMasterKey"] != before["secondaryMasterKey"]
    assert after["primaryMasterKey"] == before["primaryMasterKey"]


def test_service_bus_takes_the_callers_key(arm: ArmSeeder) -> None:
    resource = arm.resource("servicebus-key")
    key = "k" * 44
    reply = _post(
        arm, f"{resource}/regenerateKeys", {"keyType": "SecondaryKey", "key": key}, version="2021-11-01"
    )
    body = reply.json()
    assert body["secondaryKey"] == key and body["keyName"] == "send-listen"
    assert f"SharedAccessKeyName=send-listen;SharedAccessKey={key}" in body["secondaryConnectionString"]
    # the namespace came with Azure's default rule
    namespace = resource.rsplit("/AuthorizationRules/", 1)[0]
    assert _post(arm, f"{namespace}/AuthorizationRules/RootManageSharedAccessKey/listKeys").status_code == 200


async def test_blob_endpoint_checks_the_shared_key_signature(arm: ArmSeeder) -> None:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
    from azure.storage.blob.aio import BlobServiceClient

    resource = arm.resource("storage-account-key")
    name = resource.rsplit("/", 1)[1]
    endpoint = f"{arm.cloud.url}/blob/{name}/"
    for slot in ("key1", "key2"):
        key = arm.key("storage-account-key", resource, slot)
        async with BlobServiceClient(
            endpoint, credential=AzureNamedKeyCredential(name, key), connection_verify=arm.cloud.ca_bundle
        ) as client:
            await client.get_service_properties()
    wrong = "A" * 86 + "=="
    async with BlobServiceClient(
        endpoint,
        credential=AzureNamedKeyCredential(name, wrong),
        connection_verify=arm.cloud.ca_bundle,
        retry_total=0,
    ) as client:
        with pytest.raises((ClientAuthenticationError, HttpResponseError)) as failure:
            await client.get_service_properties()
    assert failure.value.status_code == 403


def test_graph_passwords_and_the_token_endpoint(arm: ArmSeeder) -> None:
    app = arm.application()
    added = arm.add_password(app["id"], "by hand")
    assert {"keyId", "secretText", "hint", "endDateTime", "startDateTime", "displayName"} <= set(added)
    assert added["hint"] == added["secretText"][:3]
    graph = {"Authorization": f"Bearer {arm.token('https://graph.microsoft.com')}"}
    listed = arm.session.get(
        f"{arm.cloud.url}/v1.0/applications/{app['id']}", headers=graph, timeout=10
    ).json()
    assert [c["secretText"] for c in listed["passwordCredentials"]] == [None]
    by_app_id = arm.session.get(
        f"{arm.cloud.url}/v1.0/applications(appId='{app['appId']}')", headers=graph, timeout=10
    )
    assert by_app_id.json()["id"] == app["id"]
    assert arm.app_token_works(TENANT_ID, app["appId"], added["secretText"])
    assert not arm.app_token_works(TENANT_ID, app["appId"], "not-the-secret")
    refused = requests.post(
        f"{arm.cloud.url}/{TENANT_ID}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": app["appId"], "client_secret": "x"},
        verify=arm.cloud.ca_bundle,
        timeout=10,
    ).json()
    assert refused["error"] == "invalid_client" and "AADSTS7000215" in refused["error_description"]
    removed = arm.session.post(
        f"{arm.cloud.url}/v1.0/applications/{app['id']}/removePassword",
        json={"keyId": added["keyId"]},
        headers=graph,
        timeout=10,
    )
    assert removed.status_code == 204
    assert not arm.app_token_works(TENANT_ID, app["appId"], added["secretText"])
    arm.cloud.store.apps[app["id"]].owners.clear()
    denied = arm.session.post(
        f"{arm.cloud.url}/v1.0/applications/{app['id']}/addPassword", json={}, headers=graph, timeout=10
    )
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "Authorization_RequestDenied"
    assert "request-id" in denied.json()["error"]["innerError"]


async def test_azure_identity_client_secret_credential_gets_a_token(arm: ArmSeeder) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity.aio import ClientSecretCredential

    app = arm.application()
    secret = arm.add_password(app["id"])["secretText"]
    async with ClientSecretCredential(
        TENANT_ID, app["appId"], secret, connection_verify=arm.cloud.ca_bundle
    ) as credential:
        token = await credential.get_token("https://graph.microsoft.com/.default")
    assert token.token
    async with ClientSecretCredential(
        TENANT_ID, app["appId"], "wrong-secret", connection_verify=arm.cloud.ca_bundle
    ) as credential:
        with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
            await credential.get_token("https://graph.microsoft.com/.default")


def test_control_routes_need_the_vault_control_key(arm: ArmSeeder) -> None:
    from localdev.vault.control import CONTROL_KEY_HEADER
    from localdev.vault.runtime import CONTROL_KEY_FILE

    url = f"{arm.cloud.url}/_cloud"
    assert arm.session.get(f"{url}/state", timeout=10).status_code == 401
    key = (arm.cloud.state_dir / CONTROL_KEY_FILE).read_text().strip()
    headers = {CONTROL_KEY_HEADER: key}
    resource = arm.resource("redis-key")
    state = arm.session.get(f"{url}/state", headers=headers, timeout=10).json()
    assert resource in state["resources"] and "keys" not in str(state).lower().replace("regenerations", "")
    injected = arm.session.post(
        f"{url}/faults",
        headers=headers,
        json={"service": "arm", "match": "listKeys", "status": 503, "code": "ServiceUnavailable"},
        timeout=10,
    )
    assert injected.json() == {"faults": 1}
    assert _post(arm, f"{resource}/listKeys").status_code == 503
    assert _post(arm, f"{resource}/listKeys").status_code == 200
    principal = arm.cloud.store.default_principals[0]
    removed = arm.session.post(
        f"{url}/roles", headers=headers, json={"principal": principal, "remove": True}, timeout=10
    )
    assert removed.status_code == 200 and _post(arm, f"{resource}/listKeys").status_code == 403
    bad = arm.session.post(
        f"{url}/roles", headers=headers, json={"principal": principal, "role": "God"}, timeout=10
    )
    assert bad.status_code == 400 and "Storage Account Key Operator Service Role" in bad.text


async def test_the_real_management_sdks_talk_to_it(arm: ArmSeeder) -> None:
    """azure-mgmt-storage and azure-mgmt-cosmosdb (aio, ARM pipeline, real managed identity) as against Azure."""
    from azure.identity.aio import ManagedIdentityCredential
    from azure.mgmt.cosmosdb.aio import CosmosDBManagementClient
    from azure.mgmt.cosmosdb.models import DatabaseAccountRegenerateKeyParameters
    from azure.mgmt.storage.aio import StorageManagementClient
    from azure.mgmt.storage.models import StorageAccountRegenerateKeyParameters

    options = {"base_url": arm.cloud.url, "connection_verify": arm.cloud.ca_bundle}
    async with ManagedIdentityCredential() as credential:
        async with StorageManagementClient(credential, SUBSCRIPTION_ID, **options) as storage:
            poller = await storage.storage_accounts.begin_create(
                GROUP,
                "sdkcreated",
                {"location": "westeurope", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"},
            )
            account = await poller.result()
            assert account.name == "sdkcreated" and account.primary_endpoints.blob.startswith(arm.cloud.url)
            listed = await storage.storage_accounts.list_keys(GROUP, "sdkcreated")  # sends $expand=kerb
            before = {k.key_name: k.value for k in listed.keys_property}
            after = await storage.storage_accounts.regenerate_key(
                GROUP, "sdkcreated", StorageAccountRegenerateKeyParameters(key_name="key1")
            )
            regenerated = {k.key_name: k.value for k in after.keys_property}
            assert regenerated["key1"] != before["key1"] and regenerated["key2"] == before["key2"]
        resource = arm.resource("cosmosdb-key")
        account_name = resource.rsplit("/", 1)[1]
        arm.cloud.store.lro_polls = 2
        async with CosmosDBManagementClient(credential, SUBSCRIPTION_ID, **options) as cosmos:
            keys = await cosmos.database_accounts.list_keys(GROUP, account_name)
            poller = await cosmos.database_accounts.begin_regenerate_key(
                GROUP,
                account_name,
                DatabaseAccountRegenerateKeyParameters(key_kind="primary"),
                polling_interval=0,
            )
            await poller.result()
            again = await cosmos.database_accounts.list_keys(GROUP, account_name)
            assert again.primary_master_key != keys.primary_master_key
            assert again.secondary_master_key == keys.secondary_master_key


async def test_the_service_bus_event_hubs_and_redis_sdks_talk_to_it(arm: ArmSeeder) -> None:
    from azure.identity.aio import ManagedIdentityCredential
    from azure.mgmt.eventhub.aio import EventHubManagementClient
    from azure.mgmt.redis.aio import RedisManagementClient
    from azure.mgmt.servicebus.aio import ServiceBusManagementClient

    options = {"base_url": arm.cloud.url, "connection_verify": arm.cloud.ca_bundle}
    supplied = "s" * 44
    async with ManagedIdentityCredential() as credential:
        bus = arm.resource("servicebus-key").split("/")
        async with ServiceBusManagementClient(credential, SUBSCRIPTION_ID, **options) as client:
            keys = await client.namespaces.list_keys(GROUP, bus[8], bus[10])
            assert keys.key_name == "send-listen" and keys.primary_connection_string.endswith(
                keys.primary_key
            )
            changed = await client.namespaces.regenerate_keys(
                GROUP, bus[8], bus[10], {"keyType": "SecondaryKey", "key": supplied}
            )
            assert changed.secondary_key == supplied and changed.primary_key == keys.primary_key
        hub = arm.resource("eventhubs-key").split("/")
        async with EventHubManagementClient(credential, SUBSCRIPTION_ID, **options) as client:
            keys = await client.namespaces.list_keys(GROUP, hub[8], hub[10])
            changed = await client.namespaces.regenerate_keys(
                GROUP, hub[8], hub[10], {"keyType": "PrimaryKey", "key": supplied}
            )
            assert changed.primary_key == supplied and changed.secondary_key == keys.secondary_key
        cache = arm.resource("redis-key").rsplit("/", 1)[1]
        async with RedisManagementClient(credential, SUBSCRIPTION_ID, **options) as client:
            keys = await client.redis.list_keys(GROUP, cache)
            changed = await client.redis.regenerate_key(GROUP, cache, {"keyType": "Primary"})
            assert changed.primary_key != keys.primary_key and changed.secondary_key == keys.secondary_key
