"""What callers see when the vault or the app's identity fails: mapped statuses, never a 500."""

from __future__ import annotations

import pytest

from tests.fixtures.app import InProcessApi, SecretValues
from tests.fixtures.eventually import eventually

pytestmark = pytest.mark.usefixtures("app_env")


@pytest.mark.usefixtures("reader_env")
async def test_identity_without_write_role_is_502_naming_the_role(
    api: InProcessApi, secret_values: SecretValues
) -> None:
    write = await api.put("app-rbac", {"value": secret_values.new()})
    assert write.status == 502 and write.error["code"] == "VaultAccessDenied"
    assert "Key Vault Secrets Officer" in write.error["message"]
    read = await api.get("app-rbac")
    assert read.status == 502 and "Key Vault Secrets User" in read.error["message"]
    listed = await api.list()  # Reader may list metadata
    assert listed.status == 200 and listed.json["value"] == []
    ready = await api.health({"ready": "true"})
    assert ready.status == 200  # readiness proves reach + list, which Reader has


async def test_throttling_is_503_with_retry_after_once_retries_are_exhausted(
    api: InProcessApi, secret_values, vault_control
) -> None:
    vault_control.set_faults("SetSecret", 429, 1.0, retry_after=1)
    response = await api.put("app-busy", {"value": secret_values.new()})
    assert response.status == 503 and response.error["code"] == "VaultThrottled"
    assert response.headers["Retry-After"] == "1"
    # KEY_VAULT_RETRY_TOTAL=1 in app_env: the SDK retried once, honouring Retry-After, then gave up.
    assert vault_control.stats()["statuses"]["429"] == 2
    vault_control.clear_faults()
    assert (await api.put("app-busy", {"value": secret_values.new()})).status == 201


async def test_a_slow_vault_is_504(api: InProcessApi, secret_values, vault_control, reconfigure) -> None:
    await reconfigure(KEY_VAULT_TIMEOUT_SECONDS="1", KEY_VAULT_RETRY_TOTAL="0")
    assert (await api.get("app-none")).status == 404  # challenge and token paid before the fault
    vault_control.set_latency(1.6)
    response = await api.put("app-slow", {"value": secret_values.new()})
    assert response.status == 504 and response.error["code"] == "VaultTimeout"
    vault_control.set_latency(0)
    # The vault still serves the read the app gave up on (as Key Vault would) once its 1.6 s pass: wait
    # for it here, or it lands in the next test's counts (a stray GetSecret 404 after its reset).
    await eventually(lambda: vault_control.stats()["operations"].get("GetSecret", 0) == 2, timeout=10)


async def test_an_unreachable_vault_is_502_and_health_says_what_to_fix(
    api: InProcessApi, secret_values, reconfigure
) -> None:
    await reconfigure(KEY_VAULT_URL="https://127.0.0.1:9", KEY_VAULT_RETRY_TOTAL="0")
    response = await api.put("app-x", {"value": secret_values.new()})
    assert response.status == 502 and response.error["code"] == "VaultUnavailable"
    assert "KEY_VAULT_URL" in response.error["message"]
    health = await api.health({"ready": "true"})
    assert health.status == 503 and health.json["status"] == "notReady"
    assert "KEY_VAULT_URL" in health.json["error"]["message"]


async def test_a_missing_setting_is_a_configuration_error_naming_it(
    api: InProcessApi, secret_values, monkeypatch, reconfigure
) -> None:
    monkeypatch.delenv("KEY_VAULT_URL")
    await reconfigure()
    response = await api.put("app-x", {"value": secret_values.new()})
    assert response.status == 500 and response.error["code"] == "ConfigurationError"
    assert "KEY_VAULT_URL" in response.error["message"]
    health = await api.health({"ready": "1"})
    assert health.status == 503 and "KEY_VAULT_URL" in health.json["error"]["message"]
    # One wording from one place, ending in what to do (no doubled full stop before it).
    assert health.json["error"] == response.error
    assert ".." not in response.error["message"] and response.error["message"].endswith("restart the app.")
    assert (await api.health()).json == {"status": "alive"}


async def test_a_request_the_vault_refuses_is_not_answered_retry_later(
    api: InProcessApi, secret_values, vault_control
) -> None:
    vault_control.set_faults("SetSecret", 400, 1.0)
    try:
        response = await api.put("app-refused", {"value": secret_values.new()})
    finally:
        vault_control.clear_faults()
    assert response.status == 502 and response.error["code"] == "VaultRejectedRequest", response.text
    assert "retry later" not in response.error["message"] and "HTTP 400" in response.error["message"]
    assert vault_control.stats()["statuses"]["400"] == 1  # a 400 is not retried
