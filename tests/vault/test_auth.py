"""Authentication and authorization like the service: TLS, challenge, token checks, RBAC roles, identity endpoint."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from localdev.vault.auth import make_identity
from localdev.vault.server import ThreadedVault, VaultConfig, start_vault_in_thread
from tests.fixtures.vault import aclose_client, make_aio_client, make_sync_client

IDENTITIES = [
    make_identity("system", ["Key Vault Secrets Officer", "purge"], system_assigned=True),
    make_identity("reader", ["Key Vault Reader"]),
    make_identity("app", ["Key Vault Secrets User"]),
    make_identity("admin", ["administrator"]),
]


@pytest.fixture(scope="module")
def rbac_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedVault]:
    config = VaultConfig(
        state_dir=tmp_path_factory.mktemp("rbac"), port=0, identity_port=0, memory=True, identities=IDENTITIES
    )
    running = start_vault_in_thread(config)
    yield running
    running.stop()


@pytest.fixture
def rbac_env(rbac_vault: ThreadedVault, monkeypatch: pytest.MonkeyPatch) -> ThreadedVault:
    for key, value in rbac_vault.env().items():
        monkeypatch.setenv(key, value)
    return rbac_vault


def _client_id(name: str) -> str:
    return next(i.client_id for i in IDENTITIES if i.name == name)


def _assert_forbidden(exc: HttpResponseError, action: str, client_id: str) -> None:
    assert exc.status_code == 403
    assert exc.error.code == "Forbidden"
    assert exc.error.innererror == {"code": "ForbiddenByRbac"}
    message = exc.error.message
    assert message.startswith("Caller is not authorized to perform action on resource.\r\n")
    assert f"Action: 'Microsoft.KeyVault/vaults/secrets/{action}'" in message
    assert f"appid={client_id};" in message


def test_reader_sees_metadata_but_no_values(rbac_env) -> None:
    with make_sync_client(rbac_env) as owner:
        owner.set_secret("listed", "v")
    with make_sync_client(rbac_env, client_id=_client_id("reader")) as reader:
        assert [p.name for p in reader.list_properties_of_secrets()] == ["listed"]
        with pytest.raises(HttpResponseError) as info:
            reader.get_secret("listed")
        _assert_forbidden(info.value, "getSecret/action", _client_id("reader"))
        with pytest.raises(HttpResponseError) as info:
            reader.set_secret("listed", "v2")
        _assert_forbidden(info.value, "setSecret/action", _client_id("reader"))


async def test_secrets_user_reads_but_cannot_write_or_delete(rbac_env) -> None:
    owner = make_aio_client(rbac_env)
    user = make_aio_client(rbac_env, client_id=_client_id("app"))
    try:
        await owner.set_secret("readable", "v")
        assert (await user.get_secret("readable")).value == "v"
        with pytest.raises(HttpResponseError) as info:
            await user.set_secret("readable", "v2")
        _assert_forbidden(info.value, "setSecret/action", _client_id("app"))
        with pytest.raises(HttpResponseError) as info:
            await user.delete_secret("readable", _polling_interval=0)
        _assert_forbidden(info.value, "delete", _client_id("app"))
        await owner.delete_secret("readable", _polling_interval=0)
        await owner.purge_deleted_secret("readable")  # the default identity holds purge
    finally:
        await aclose_client(owner)
        await aclose_client(user)


def test_administrator_may_do_everything(rbac_env) -> None:
    with make_sync_client(rbac_env, client_id=_client_id("admin")) as admin:
        admin.set_secret("admin-made", "v")
        admin.begin_delete_secret("admin-made", _polling_interval=0).wait()
        admin.purge_deleted_secret("admin-made")


@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_user_assigned_by_resource_id(rbac_env, kind) -> None:
    """Sync sends mi_res_id (MSAL), aio sends resource_id: both select the identity."""
    import jwt

    reader = next(i for i in IDENTITIES if i.name == "reader")
    config = {"resource_id": reader.resource_id}
    scope = "https://vault.azure.net/.default"
    if kind == "sync":
        from azure.identity import ManagedIdentityCredential

        token = await asyncio.to_thread(ManagedIdentityCredential(identity_config=config).get_token, scope)
    else:
        from azure.identity.aio import ManagedIdentityCredential as AioCredential

        async with AioCredential(identity_config=config) as credential:
            token = await credential.get_token(scope)
    assert jwt.decode(token.token, options={"verify_signature": False})["oid"] == reader.object_id


def test_token_from_another_vault_is_refused(vault, rbac_vault, vault_control) -> None:
    other = requests.get(
        rbac_vault.identity_endpoint,
        timeout=10,
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": rbac_vault.identity_header},
    ).json()["access_token"]
    response = requests.get(
        f"{vault.vault_url}/secrets",
        params={"api-version": "7.6"},
        timeout=10,
        headers={"Authorization": f"Bearer {other}"},
        verify=vault.ca_bundle,
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("AKV10046")
    assert "WWW-Authenticate" in response.headers


def test_identity_endpoint_response(vault) -> None:
    response = requests.get(
        vault.identity_endpoint,
        timeout=10,
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": vault.identity_header, "Metadata": "true"},
    )
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str) and body["expires_on"].isdigit()
    assert body["resource"] == "https://vault.azure.net" and body["token_type"] == "Bearer"


@pytest.mark.parametrize("header", [None, "wrong"])
def test_identity_endpoint_refuses_wrong_header(vault, header) -> None:
    headers = {"X-IDENTITY-HEADER": header} if header else {}
    response = requests.get(
        vault.identity_endpoint,
        timeout=10,
        headers=headers,
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
    )
    assert response.status_code == 401
    assert "IDENTITY_HEADER" in response.json()["message"]


def test_credential_with_wrong_header_fails(vault, vault_env, monkeypatch) -> None:
    from azure.identity import ManagedIdentityCredential

    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token("https://vault.azure.net/.default")


def test_unknown_user_assigned_identity(vault) -> None:
    response = requests.get(
        vault.identity_endpoint,
        timeout=10,
        headers={"X-IDENTITY-HEADER": vault.identity_header},
        params={
            "api-version": "2019-08-01",
            "resource": "https://vault.azure.net",
            "client_id": "00000000-0000-0000-0000-000000000001",
        },
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("Unable to load the proper Managed Identity.")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_verifies_against_the_generated_ca(vault, host) -> None:
    port = int(vault.vault_url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=vault.ca_bundle)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_is_refused_without_the_ca(vault) -> None:
    port = int(vault.vault_url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=ssl.get_default_verify_paths().cafile or None)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(sock, server_hostname="localhost")


def test_plain_http_is_not_served(vault) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(vault.vault_url.replace("https://", "http://") + "/secrets", timeout=5)


def test_certificate_names_every_loopback(vault) -> None:
    import ipaddress
    from pathlib import Path

    from cryptography import x509

    server = x509.load_pem_x509_certificate((Path(vault.ca_bundle).parent / "server.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert vault.vault_url.startswith("https://localhost:")
