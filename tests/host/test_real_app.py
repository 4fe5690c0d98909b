"""The real function_app.py served by the host in-process, against the local Key Vault (real SDK, real MI).

Every HTTP route and method through the host, the timers fired through the admin API, Key Vault events
through the Event Grid webhook in both schemas. What the app answers is the app helper's business;
here we check that the host routes, authorizes, invokes and writes back each of them.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import aiohttp
import pytest

from localdev.host import HostConfig, start_host

from ..fixtures.eventually import eventually

REPO = Path(__file__).resolve().parents[2]
NEVER = "0 0 0 1 1 *"  # timers must not fire on their own during these tests


@pytest.fixture
async def real_host(tmp_path, clean_environ, vault_env, vault_control):
    clean_environ["ROTATION_SCHEDULE"] = NEVER
    clean_environ["CLEANUP_SCHEDULE"] = NEVER
    clean_environ["ROTATION_LOCK"] = (
        "off"  # one host process and no Azurite here: the in-process lock suffices
    )
    running = await start_host(HostConfig(app_dir=REPO, port=0, state_dir=tmp_path / "state"))
    yield running
    await running.stop()
    from shared.keyvault import close_secret_client

    await close_secret_client()


def invocations(caplog, function: str, status: str = "succeeded") -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "localdev.host"
        and f"function={function} " in r.getMessage()
        and f"status={status}" in r.getMessage()
    )


async def test_every_route_and_method_of_the_real_app(real_host, caplog) -> None:
    caplog.set_level(logging.INFO)
    base, key = real_host.base_url, {"x-functions-key": real_host.keys.defaultFunctionKey}
    name, value = f"host-{secrets.token_hex(4)}", f"v-{secrets.token_urlsafe(18)}"
    async with aiohttp.ClientSession(headers=key) as http:
        async with http.put(
            f"{base}/api/secrets/{name}", json={"value": value, "tags": {"ValidityPeriodDays": "60"}}
        ) as resp:
            assert resp.status == 201, await resp.text()
            assert value not in await resp.text()
        async with http.put(
            f"{base}/api/secrets/{name}", json={"value": value + "2", "tags": {"ValidityPeriodDays": "60"}}
        ) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/api/secrets/{name}") as resp:
            assert resp.status == 200
            assert (await resp.json())["name"] == name
        async with http.get(f"{base}/api/secrets") as resp:
            assert resp.status == 200
            assert name in await resp.text()
        async with http.post(f"{base}/api/secrets/{name}/rotate") as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(f"{base}/api/rotation/plan") as resp:
            assert resp.status == 200
        async with http.patch(f"{base}/api/secrets/{name}") as resp:
            assert resp.status == 404  # Azure: a method no function declares is 404, not 405
        async with http.delete(f"{base}/api/secrets/{name}") as resp:
            assert resp.status == 200

        async def recovered() -> tuple[int, str] | None:
            # Soft delete completes asynchronously in the vault, as in Azure: 409 until it has.
            async with http.post(f"{base}/api/secrets/{name}/recover") as resp:
                return None if resp.status == 409 else (resp.status, await resp.text())

        status, text = await eventually(recovered)
        assert status == 200, text
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{base}/api/health") as resp:
            assert resp.status == 200
        async with anonymous.head(f"{base}/api/health") as resp:
            assert resp.status == 404  # health declares GET only; Azure answers 404 (was 405 locally)
        async with anonymous.get(f"{base}/api/openapi.json") as resp:
            assert resp.status == 200
            assert "paths" in await resp.json()
        async with anonymous.get(f"{base}/api/secrets/{name}") as resp:
            assert resp.status == 401
    assert value not in caplog.text


async def test_timers_fired_through_the_admin_api(real_host, caplog) -> None:
    caplog.set_level(logging.INFO)
    master = {"x-functions-key": real_host.keys.masterKey}
    async with aiohttp.ClientSession(headers=master) as http:
        for function in ("scheduled_rotation", "scheduled_cleanup"):
            async with http.post(
                f"{real_host.base_url}/admin/functions/{function}", json={"input": ""}
            ) as resp:
                assert resp.status == 202
    await eventually(
        lambda: (
            invocations(caplog, "scheduled_rotation") == 1 and invocations(caplog, "scheduled_cleanup") == 1
        ),
        timeout=10.0,
    )


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
async def test_key_vault_events_reach_keyvault_events(real_host, caplog, schema: str) -> None:
    caplog.set_level(logging.INFO)
    vault = "https://localhost/"
    data = {
        "Id": f"{vault}secrets/some-secret/0123456789abcdef0123456789abcdef",
        "VaultName": "localvault",
        "ObjectType": "Secret",
        "ObjectName": "some-secret",
        "Version": "0123456789abcdef0123456789abcdef",
    }
    topic = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/localvault"
    if schema == "eventgrid":
        event = {
            "id": "e1",
            "topic": topic,
            "subject": "some-secret",
            "eventTime": "2026-01-01T00:00:00.0000000Z",
            "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
            "data": data,
            "dataVersion": "1",
            "metadataVersion": "1",
        }
    else:
        event = {
            "id": "e1",
            "source": topic,
            "specversion": "1.0",
            "subject": "some-secret",
            "type": "Microsoft.KeyVault.SecretNewVersionCreated",
            "time": "2026-01-01T00:00:00Z",
            "data": data,
        }
    url = (
        f"{real_host.base_url}/runtime/webhooks/eventgrid?functionName=keyvault_events"
        f"&code={real_host.keys.eventGridSystemKey}"
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=[event], headers={"aeg-event-type": "Notification"}) as resp:
            assert resp.status == 202, await resp.text()
    assert invocations(caplog, "keyvault_events") == 1
