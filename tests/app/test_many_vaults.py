"""Many vaults: KEY_VAULT_URLS adds vaults; each has its own client; `?vault=` picks one; an unknown one is a
400 naming `vault` before any vault call.

The second "vault" is the same local Key Vault under its other loopback name (https://127.0.0.1:<port>):
two emulators would each sign their own tokens, and one identity endpoint serves one issuer here."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.app import InProcessApi, SecretValues


@pytest.fixture
def second_vault(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    from shared.settings import get_settings

    url = app_env["KEY_VAULT_URL"].replace("localhost", "127.0.0.1")
    monkeypatch.setenv("KEY_VAULT_URLS", url)
    get_settings.cache_clear()
    return url


async def test_each_vault_has_its_own_client_and_the_api_picks_one(
    second_vault: str, api: InProcessApi, secret_values: SecretValues, vault_control: Any
) -> None:
    from shared.keyvault import get_secret_client
    from shared.settings import get_settings

    settings = get_settings()
    assert settings.vault_urls == (settings.vault_url, second_vault)
    first, second = await get_secret_client(), await get_secret_client(second_vault)
    assert first is not second and second.vault_url == second_vault
    assert await get_secret_client(second_vault) is second  # one per vault per process

    await first.close()  # from here on, only a request routed to the second vault's client can succeed
    answer = await api.put("app-multi", {"value": secret_values.new()}, params={"vault": "127.0.0.1"})
    assert answer.status == 201, answer.text

    before = vault_control.stats()["operations"]
    unknown = await api.put("app-multi", {"value": secret_values.new()}, params={"vault": "other-vault"})
    assert unknown.status == 400 and unknown.error["target"] == "vault", unknown.text
    assert "localhost" in unknown.error["message"] and "127" in unknown.error["message"]
    assert vault_control.stats()["operations"] == before  # refused before any vault call


def test_a_bad_vault_list_names_the_setting() -> None:
    from shared.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="KEY_VAULT_URLS"):
        load_settings(
            {"KEY_VAULT_URL": "https://a.vault.azure.net", "KEY_VAULT_URLS": "http://b.vault.azure.net"}
        )
    settings = load_settings(
        {
            "KEY_VAULT_URL": "https://a.vault.azure.net/",
            "KEY_VAULT_URLS": " https://b.vault.azure.net, ,https://a.vault.azure.net",
        }
    )
    assert settings.vault_urls == ("https://a.vault.azure.net", "https://b.vault.azure.net")
    assert settings.vault_named("b") == "https://b.vault.azure.net"
    assert settings.vault_named("b.vault.azure.net") == "https://b.vault.azure.net"
    assert settings.vault_named("c") is None
