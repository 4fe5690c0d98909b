"""Settings are validated when read: a bad value is a SettingsError that names the setting and what to set."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import SettingsError, load_settings

VAULT = {"KEY_VAULT_URL": "https://my-vault.vault.azure.net/"}


def test_defaults_from_the_vault_url_alone() -> None:
    settings = load_settings(VAULT)
    assert settings.vault_url == "https://my-vault.vault.azure.net"
    assert settings.credential == "managed_identity" and settings.verify_challenge_resource is True
    assert settings.rotation_concurrency == 8 and settings.retry_total == 4


@pytest.mark.parametrize(
    ("env", "setting", "says"),
    [
        ({}, "KEY_VAULT_URL", "Set it"),
        ({"KEY_VAULT_URL": "http://my-vault.vault.azure.net"}, "KEY_VAULT_URL", "https://"),
        ({**VAULT, "KEY_VAULT_CREDENTIAL": "cli"}, "KEY_VAULT_CREDENTIAL", "managed_identity or default"),
        ({**VAULT, "SECRETS_ALLOW_ADOPT": "maybe"}, "SECRETS_ALLOW_ADOPT", "true or false"),
        ({**VAULT, "SECRETS_NAME_PREFIX": "app_"}, "SECRETS_NAME_PREFIX", "letters, digits and dashes"),
        ({**VAULT, "ROTATION_BUDGET_SECONDS": "soon"}, "ROTATION_BUDGET_SECONDS", "a number"),
        ({**VAULT, "ROTATION_BUDGET_SECONDS": "0"}, "ROTATION_BUDGET_SECONDS", "at least 1"),
        ({**VAULT, "ROTATION_LOCK": "redis"}, "ROTATION_LOCK", "auto, blob or off"),
        ({**VAULT, "ROTATION_LOCK": "blob"}, "ROTATION_LOCK", "AzureWebJobsStorage"),
        (
            {**VAULT, "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false"},
            "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
            "loopback",
        ),
        ({**VAULT, "KEY_VAULT_CA_BUNDLE": "/nonexistent/ca.pem"}, "KEY_VAULT_CA_BUNDLE", "not found"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], setting: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as caught:
        load_settings(env)
    assert caught.value.setting == setting and setting in str(caught.value)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e400"])
@pytest.mark.parametrize(
    "setting", ["ROTATION_CONCURRENCY", "ROTATION_BUDGET_SECONDS", "CLEANUP_PURGE_GRACE_DAYS"]
)
def test_a_number_setting_must_be_finite(setting: str, raw: str) -> None:
    with pytest.raises(SettingsError, match="finite") as caught:
        load_settings({**VAULT, setting: raw})
    assert caught.value.setting == setting


@pytest.mark.parametrize(
    "setting", ["ROTATION_CONCURRENCY", "KEY_VAULT_RETRY_TOTAL", "CLEANUP_KEEP_VERSIONS"]
)
def test_a_count_setting_must_be_a_whole_number(setting: str) -> None:
    with pytest.raises(SettingsError, match="whole number") as caught:
        load_settings({**VAULT, setting: "2.5"})
    assert caught.value.setting == setting
    assert getattr(load_settings({**VAULT, setting: " 3 "}), setting.lower().replace("key_vault_", "")) == 3


def test_loopback_vault_may_skip_the_challenge_check(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not parsed here")
    settings = load_settings(
        {
            "KEY_VAULT_URL": "https://localhost:8443",
            "KEY_VAULT_CA_BUNDLE": str(bundle),
            "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        }
    )
    assert settings.is_loopback_vault and settings.verify_challenge_resource is False
    assert settings.ca_bundle == str(bundle)


def test_identity_based_storage_uses_its_own_client_id_like_the_functions_host() -> None:
    base = {
        "KEY_VAULT_URL": "https://kv.vault.azure.net",
        "AZURE_CLIENT_ID": "kv-identity",
        "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    }
    assert load_settings(base).storage_client_id == "kv-identity"  # one user-assigned identity for both
    separate = load_settings({**base, "AzureWebJobsStorage__clientId": "storage-identity"})
    assert separate.storage_client_id == "storage-identity" and separate.client_id == "kv-identity"


def _readme_settings_rows() -> dict[str, str]:
    """The README's settings table: setting name → default column."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def test_the_readme_settings_table_is_the_declaration() -> None:
    """Every declared setting has a README row with its default, and the README names no other setting."""
    from shared.settings import SETTINGS, readme_default

    rows = _readme_settings_rows()
    assert sorted(rows) == sorted(s.name for s in SETTINGS)
    for setting in SETTINGS:
        assert rows[setting.name] == readme_default(setting), setting.name


def test_every_settings_field_is_declared_once() -> None:
    from dataclasses import fields

    from shared.settings import SETTINGS, Settings

    declared = [s.field for s in SETTINGS if s.field is not None]
    assert len(declared) == len(set(declared))
    assert sorted(declared) == sorted(f.name for f in fields(Settings))


def test_auto_holds_the_lease_on_azurites_development_storage_too() -> None:
    """Before: `auto` ignored UseDevelopmentStorage=true, so two local hosts rotated without a lease."""
    dev = load_settings({**VAULT, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert dev.rotation_lock == "auto" and dev.cross_instance_lock
    assert not load_settings(VAULT).cross_instance_lock  # no storage at all: in-process only (and it says so)
    assert not load_settings(
        {**VAULT, "ROTATION_LOCK": "off", "AzureWebJobsStorage": "x"}
    ).cross_instance_lock
