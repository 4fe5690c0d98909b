"""Every error row of the reference table (keyvault-protocol.md §1.4), through the sync AND the aio SDK.

Rows that cannot apply to this emulator: access-policy vaults (it is an RBAC vault; see test_auth.py for
ForbiddenByRbac) and the firewall. Rows the SDK cannot send (no token, unknown api-version) are checked raw.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from localdev.vault.auth import CHALLENGE


def _inner(exc: HttpResponseError) -> str | None:
    inner = exc.error.innererror if exc.error else None
    return inner.get("code") if isinstance(inner, dict) else None


def test_missing_token_gets_challenge_and_body(raw) -> None:
    response = raw.call("GET", "/secrets", token=None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert response.json() == {
        "error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
    }


def test_challenge_names_a_guid_tenant(raw) -> None:
    import uuid

    header = raw.call("GET", "/secrets", token=None).headers["WWW-Authenticate"]
    authorization = header.split('authorization="', 1)[1].split('"', 1)[0]
    uuid.UUID(authorization.rstrip("/").rsplit("/", 1)[1])
    assert 'resource="https://vault.azure.net"' in header


async def test_secret_not_found(kv) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        await kv.call("get_secret", "nope")
    assert info.value.error.code == "SecretNotFound"
    assert info.value.error.message.startswith(
        "A secret with (name/id) nope was not found in this key vault."
    )
    await kv.call("set_secret", "there", "v")
    with pytest.raises(ResourceNotFoundError) as info:
        await kv.call("get_secret", "there", "0" * 32)
    assert f"(name/id) there/{'0' * 32} was not found" in info.value.error.message


async def test_deleted_secret_not_found(kv) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        await kv.call("get_deleted_secret", "ghost")
    assert info.value.error.code == "SecretNotFound"
    assert info.value.error.message == "Deleted Secret not found: ghost"
    with pytest.raises(ResourceNotFoundError):
        await kv.call("purge_deleted_secret", "ghost")
    with pytest.raises(ResourceNotFoundError):
        await kv.call("recover_deleted_secret", "ghost", _polling_interval=0)


async def test_set_soft_deleted_name_conflicts(kv) -> None:
    await kv.call("set_secret", "Reused", "v")
    await kv.call("delete_secret", "Reused", _polling_interval=0)
    with pytest.raises(ResourceExistsError) as info:
        await kv.call("set_secret", "reused", "v2")  # another case is the same name
    assert info.value.status_code == 409
    assert info.value.error.code == "Conflict"
    assert _inner(info.value) == "ObjectIsDeletedButRecoverable"
    assert info.value.error.message == (
        "Secret Reused is currently in a deleted but recoverable state, and its name cannot be reused; "
        "in this state, the secret can only be recovered or purged."
    )


def test_set_while_being_deleted(sync_client, vault_control) -> None:
    """begin_delete_secret leaves the delete in flight (the aio call awaits the whole poll)."""
    vault_control.set_operation_latency(delete=30)
    sync_client.set_secret("busy", "v")
    sync_client.begin_delete_secret("busy", _polling_interval=0)  # started, not waited
    with pytest.raises(ResourceExistsError) as info:
        sync_client.set_secret("busy", "v2")
    assert _inner(info.value) == "ObjectIsBeingDeleted"
    with pytest.raises(ResourceNotFoundError):
        sync_client.get_deleted_secret("busy")  # what the poller sees meanwhile


async def test_set_while_being_recovered(kv, vault_control) -> None:
    """A recovery in flight (started, not awaited) refuses a write to the name, through either SDK."""
    await kv.call("set_secret", "busy", "v")
    await kv.call("delete_secret", "busy", _polling_interval=0)
    vault_control.set_operation_latency(recover=30)
    if kv.kind == "sync":  # begin_recover_deleted_secret sends the recover and returns its poller
        await asyncio.to_thread(kv.client.begin_recover_deleted_secret, "busy", _polling_interval=0)
        recovering = None
    else:  # the aio call awaits its whole poll: run it in the background until the vault saw it
        recovering = asyncio.create_task(kv.client.recover_deleted_secret("busy", _polling_interval=0.05))
        while vault_control.stats()["operations"].get("RecoverDeletedSecret", 0) == 0:
            await asyncio.sleep(0.01)
    try:
        with pytest.raises(ResourceExistsError) as info:
            await kv.call("set_secret", "busy", "v2")
        assert _inner(info.value) == "ObjectIsBeingRecovered"
        assert (
            info.value.error.message
            == "Secret busy is currently being recovered and cannot be re-created; retry later."
        )
    finally:
        if recovering is not None:
            recovering.cancel()


async def test_disabled_secret_is_forbidden(kv) -> None:
    first = await kv.call("set_secret", "off", "v", enabled=False)
    for version in (None, first.properties.version):
        with pytest.raises(HttpResponseError) as info:
            await kv.call("get_secret", "off", version)
        assert info.value.status_code == 403
        assert info.value.error.code == "Forbidden"
        assert info.value.error.message == "Operation get is not allowed on a disabled secret."
        assert _inner(info.value) == "SecretDisabled"
    listed = await kv.call("list_properties_of_secrets")
    assert listed[0].enabled is False  # lists still show disabled secrets


async def test_purge_protection(kv, vault_control) -> None:
    vault_control.set_soft_delete(retention_days=7, purge_protection=True)
    secret = await kv.call("set_secret", "kept", "v")
    assert secret.properties.recovery_level == "CustomizedRecoverable"
    assert secret.properties.recoverable_days == 7
    deleted = await kv.call("delete_secret", "kept", _polling_interval=0)
    assert (deleted.scheduled_purge_date - deleted.deleted_date).days == 7
    with pytest.raises(HttpResponseError) as info:
        await kv.call("purge_deleted_secret", "kept")
    assert info.value.status_code == 403
    assert info.value.error.message.startswith(
        'Operation "purge" is not allowed because purge protection is enabled for this vault. '
        "Key Vault service will automatically purge it after the retention period has passed.\r\nVault: "
    )


@pytest.mark.parametrize("name", ["my_secret", "a" * 128, "with.dot"])
async def test_invalid_name(kv, name) -> None:
    with pytest.raises(HttpResponseError) as info:
        await kv.call("set_secret", name, "v")
    assert info.value.status_code == 400
    assert info.value.error.code == "BadParameter"
    assert info.value.error.message == f"The request URI contains an invalid name: {name}"


async def test_name_of_127_characters_is_fine(kv) -> None:
    assert (await kv.call("set_secret", "a" * 127, "v")).name == "a" * 127


def test_unsupported_api_version(raw) -> None:
    response = raw.call("GET", "/secrets", api_version="7.9")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "BadParameter",
            "message": (
                "The specified version (7.9) is not recognized. "
                "Consider using the latest supported version (2026-04-01)."
            ),
        }
    }


async def test_value_and_metadata_limits(kv) -> None:
    marker = secrets.token_hex(16)
    assert (await kv.call("set_secret", "big", "x" * 25_600)).name == "big"
    cases = [
        dict(value="x" * 25_601),
        dict(value="é" * 12_801),  # 25,602 bytes: the limit is bytes, not characters
        dict(value=marker, tags={f"t{i}": "v" for i in range(16)}),
        dict(value=marker, tags={"t" * 257: "v"}),
        dict(value=marker, tags={"t": "v" * 257}),
        dict(value=marker, content_type="c" * 256),
    ]
    for case in cases:
        value = case.pop("value")
        with pytest.raises(HttpResponseError) as info:
            await kv.call("set_secret", "limits", value, **case)
        assert info.value.status_code == 400 and info.value.error.code == "BadParameter"
        assert value not in str(info.value)  # a refused value is never echoed
    await kv.call(
        "set_secret", "limits", "v", tags={f"t{i}": "v" * 256 for i in range(15)}, content_type="c" * 255
    )


async def test_maxresults_above_25(kv) -> None:
    with pytest.raises(HttpResponseError) as info:
        await kv.call("list_properties_of_secrets", max_page_size=26)
    assert info.value.status_code == 400 and info.value.error.code == "BadParameter"


def test_bad_json_and_bad_maxresults(raw) -> None:
    response = raw.session.put(
        raw.vault.vault_url + "/secrets/bad",
        params={"api-version": "7.6"},
        data=b"{not json",
        headers={"Authorization": f"Bearer {raw.token()}", "Content-Type": "application/json"},
        verify=raw.vault.ca_bundle,
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "BadParameter"
    for bad in ("0", "abc"):
        assert raw.call("GET", "/secrets", params={"maxresults": bad}).status_code == 400


def test_throttled_body(raw, vault_control) -> None:
    vault_control.set_throttling(True, transactions_per_10s=1, retry_after=None)
    assert raw.call("GET", "/secrets").status_code == 200
    response = raw.call("GET", "/secrets")
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert response.json() == {
        "error": {
            "code": "Throttled",
            "message": (
                "Request was not processed because too many requests were received. "
                "Reason: VaultRequestTypeLimitReached"
            ),
        }
    }


async def test_throttled_through_the_sdk(kv, vault_control) -> None:
    await kv.call("set_secret", "t", "v")
    vault_control.set_throttling(True, transactions_per_10s=1, retry_after=None)
    await kv.call("get_secret", "t")
    with pytest.raises(HttpResponseError) as info:
        await kv.call("get_secret", "t", retry_total=0)
    assert info.value.status_code == 429 and info.value.error.code == "Throttled"


async def test_restore_over_existing_name_conflicts(kv) -> None:
    await kv.call("set_secret", "dup", "v")
    backup = await kv.call("backup_secret", "dup")
    with pytest.raises(ResourceExistsError):
        await kv.call("restore_secret_backup", backup)


async def test_garbage_backup_is_refused(kv) -> None:
    with pytest.raises(HttpResponseError) as info:
        await kv.call("restore_secret_backup", b"not a backup")
    assert info.value.status_code == 400


class _FixedToken:
    """A credential that returns one pre-made token (sync and aio alike): the point is what the vault does."""

    def __init__(self, token: str) -> None:
        self.token = token

    def _access(self) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return self._access()

    async def close(self) -> None:
        pass


class _AsyncFixedToken(_FixedToken):
    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:  # type: ignore[override]
        return self._access()


async def _refusal(kind: str, vault, token: str) -> ClientAuthenticationError:
    """What get_secret raises, through the sync or the aio SDK, when its only credential is `token`."""
    options = {"connection_verify": vault.ca_bundle, "verify_challenge_resource": False}
    if kind == "aio":
        from azure.keyvault.secrets.aio import SecretClient as AioClient

        async with AioClient(vault.vault_url, _AsyncFixedToken(token), **options) as client:
            with pytest.raises(ClientAuthenticationError) as info:
                await client.get_secret("anything")
        return info.value
    from azure.keyvault.secrets import SecretClient

    def call() -> ClientAuthenticationError:
        with SecretClient(vault.vault_url, _FixedToken(token), **options) as client:
            with pytest.raises(ClientAuthenticationError) as info:
                client.get_secret("anything")
        return info.value

    return await asyncio.to_thread(call)


FOREIGN_TOKENS = [
    pytest.param({"audience": "https://storage.azure.com"}, "AKV10022: Invalid audience.", id="storage-aud"),
    pytest.param(
        {"audience": "https://management.azure.com"},
        "AKV10022: Invalid audience. Expected https://vault.azure.net or cfa8b339-82a2-471a-a3c9-0fc0be7a4093, "
        "found: https://management.azure.com.",
        id="management-aud",
    ),
    pytest.param(
        {"lifetime_seconds": -60}, "[TokenExpired] Error validating token: 'S2S12086'.", id="expired"
    ),
    pytest.param(None, "Error validating token", id="not-a-jwt"),
]


@pytest.mark.parametrize("kind", ["sync", "aio"])
@pytest.mark.parametrize(("mint", "message"), FOREIGN_TOKENS)
async def test_foreign_token_gets_401(vault, vault_control, vault_env, kind, mint, message) -> None:
    token = vault_control.issue_token(**mint) if mint is not None else "abc.def.ghi"
    refused = await _refusal(kind, vault, token)
    assert refused.status_code == 401
    assert refused.error.code == "Unauthorized"
    assert refused.error.message.startswith(message)
