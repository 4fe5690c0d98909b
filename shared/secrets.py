"""The secrets service: write, read metadata, list, delete and recover, inside the app's scope.

Knows Key Vault, not HTTP. Every operation checks scope before any vault write, maps vault failures
through shared.errors, and mutations emit one audit line (shared.audit). Values go to the vault and
nowhere else: results carry metadata only.

Idempotency rule: a write is "identical" when the current version already has the same value
(constant-time compare), content type, tags (after bookkeeping), enabled flag, notBefore and expiresOn
(whole seconds). Then no version is created and the current one is returned. That costs one read of
the current version, which the write needs anyway for the ownership check and for 201-vs-200.
A `generate` request is never identical.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlparse

from . import generator
from .audit import audited
from .errors import (
    InvalidRequest,
    SecretDisabled,
    SecretNotFound,
    VaultCall,
    from_vault_error,
    vault_failures,
)
from .keyvault import get_secret_client
from .locks import SecretLocks
from .scope import (
    name_in_scope,
    ownership_tags,
    require_name_in_scope,
    require_owned,
    require_owned_or_adoptable,
)
from .settings import Settings, get_settings
from .validation import ListQuery, SecretWrite, validate_tags
from .vault.versions import SecretHistory, VersionInfo, format_optional

if TYPE_CHECKING:
    from azure.keyvault.secrets import DeletedSecret, KeyVaultSecret
    from azure.keyvault.secrets.aio import SecretClient

# The SDK polls delete/recover completion every 2 s by default; the service is usually faster.
_POLL_SECONDS = 0.5


def _seconds(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


@dataclass(frozen=True)
class WriteResult:
    metadata: VersionInfo
    created: bool  # the name was new (201)
    recovered: bool = False


@dataclass(frozen=True)
class SecretDetails:
    current: VersionInfo
    versions: list[VersionInfo] | None = None  # newest first, when asked for


@dataclass(frozen=True)
class SecretPage:
    items: list[VersionInfo]
    continuation_token: str | None


@dataclass(frozen=True)
class DeletedSecretInfo:
    name: str
    id: str | None
    recovery_id: str | None
    deleted_on: datetime | None
    scheduled_purge_date: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "recoveryId": self.recovery_id,
            "deletedOn": format_optional(self.deleted_on),
            "scheduledPurgeDate": format_optional(self.scheduled_purge_date),
        }


@dataclass
class _Current:
    """The current version as read for a write: value is None when it is disabled (unreadable)."""

    metadata: VersionInfo
    value: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Desired:
    value: str = field(repr=False)
    content_type: str | None
    tags: dict[str, str]
    enabled: bool
    not_before: datetime | None
    expires_on: datetime | None


async def _vault(call: VaultCall, awaitable: Any) -> Any:
    """Await a vault call, turning vault/network failures into DomainErrors worded for `call`."""
    try:
        return await awaitable
    except vault_failures() as exc:
        raise from_vault_error(exc, call) from exc


async def _read_current(client: SecretClient, name: str, access: str) -> _Current | None:
    """The current version (None if the name has no live secret); one GET in the common case."""
    call = VaultCall(name, access)
    try:
        secret: KeyVaultSecret = await _vault(call, client.get_secret(name))
    except SecretNotFound:
        return None
    except SecretDisabled:
        # A disabled current version cannot be read, but its metadata can: take the newest version's.
        versions = await _versions(client, name, access)
        return _Current(versions[0]) if versions else None
    return _Current(VersionInfo.from_properties(secret.properties), secret.value)


async def _versions(client: SecretClient, name: str, access: str) -> list[VersionInfo]:
    call = VaultCall(name, access)

    async def collect() -> list[VersionInfo]:
        return [VersionInfo.from_properties(p) async for p in client.list_properties_of_secret_versions(name)]

    found = await _vault(call, collect())
    return SecretHistory.from_versions(name, found).newest_first()


def _desired(request: SecretWrite, value: str, current: _Current | None, settings: Settings) -> _Desired:
    """What the new version would be: omitted tags/contentType carry over from the current version."""
    if request.tags is not None:
        tags = dict(request.tags)
    else:
        tags = dict(current.metadata.tags) if current else {}
    tags.update(ownership_tags(settings))
    validate_tags(tags)
    if request.content_type is not None:
        content_type = request.content_type or None  # "" clears it
    else:
        content_type = current.metadata.content_type if current else None
    return _Desired(
        value=value,
        content_type=content_type,
        tags=tags,
        enabled=True if request.enabled is None else request.enabled,
        not_before=request.not_before,
        expires_on=request.expires_on,
    )


def _is_identical(current: _Current, desired: _Desired) -> bool:
    if current.value is None:
        return False
    meta = current.metadata
    same_value = hmac.compare_digest(current.value.encode("utf-8"), desired.value.encode("utf-8"))
    return (
        same_value
        and meta.content_type == desired.content_type
        and meta.tags == desired.tags
        and bool(meta.enabled) == desired.enabled
        and _seconds(meta.not_before) == _seconds(desired.not_before)
        and _seconds(meta.expires_on) == _seconds(desired.expires_on)
    )


async def _recover_deleted(client: SecretClient, name: str, settings: Settings) -> bool:
    """Recover `name` if it is deleted-but-recoverable and ours to recover; False if nothing is deleted."""
    call = VaultCall(name, "write")
    try:
        deleted: DeletedSecret = await _vault(call, client.get_deleted_secret(name))
    except SecretNotFound:
        return False
    require_owned_or_adoptable(name, deleted.properties.tags, settings)
    await _vault(call, client.recover_deleted_secret(name, _polling_interval=_POLL_SECONDS))
    return True


def settings_for(vault: str | None) -> Settings:
    """The app's settings aimed at `vault` (a configured vault's URL or name; None: the default vault).

    An unknown vault is the caller's 400 naming `vault`, before any vault call."""
    settings = get_settings()
    if vault is None:
        return settings
    url = settings.vault_named(vault)
    if url is None:
        names = ", ".join(sorted({(urlparse(u).hostname or u).split(".", 1)[0] for u in settings.vault_urls}))
        raise InvalidRequest(f"vault must be one of the configured vaults: {names}.", field="vault")
    return settings.for_vault(url)


# Writes to one name are serialized in this process, so identical writes that arrive together see each
# other's version (one 201, then 200s naming it) and different values each get their own version.
_WRITE_LOCKS = SecretLocks()


async def write(request: SecretWrite, *, caller: str | None = None, vault: str | None = None) -> WriteResult:
    """Create or add a version of `request.name`; identical repeats create nothing (see module docstring)."""
    settings = settings_for(vault)
    async with audited("write", request.name, caller=caller) as entry:
        require_name_in_scope(request.name, settings)
        async with _WRITE_LOCKS.hold(request.name):
            return await _write_locked(request, settings, entry)


async def _write_locked(request: SecretWrite, settings: Settings, entry: Any) -> WriteResult:
    """The write itself, under the name's write lock (see `write`)."""
    client = await get_secret_client(settings.vault_url)
    call = VaultCall(request.name, "write")
    current = await _read_current(client, request.name, "write")
    recovered = False
    if current is None and request.recover:
        recovered = await _recover_deleted(client, request.name, settings)
        if recovered:
            current = await _read_current(client, request.name, "write")
    if current is not None:
        require_owned_or_adoptable(request.name, current.metadata.tags, settings)
    generated = request.generate is not None
    if request.generate is not None:
        value = generator.generate_value(request.generate.length, request.generate.alphabet)
    else:
        assert request.value is not None  # validation guarantees exactly one of value/generate
        value = request.value
    desired = _desired(request, value, current, settings)
    entry.details.update(generated=generated, recovered=recovered)
    if current is not None and not generated and _is_identical(current, desired):
        entry.version = current.metadata.version
        entry.details.update(newVersion=False, created=False)
        return WriteResult(current.metadata, created=False, recovered=recovered)
    # 409 deleted-but-recoverable surfaces as SecretDeletedButRecoverable, telling how to recover.
    secret: KeyVaultSecret = await _vault(
        call,
        client.set_secret(
            request.name,
            desired.value,
            content_type=desired.content_type,
            tags=desired.tags,
            enabled=desired.enabled,
            not_before=desired.not_before,
            expires_on=desired.expires_on,
        ),
    )
    metadata = VersionInfo.from_properties(secret.properties)
    entry.version = metadata.version
    entry.details["newVersion"] = True
    created = current is None and not recovered
    entry.details["created"] = created
    return WriteResult(metadata, created=created, recovered=recovered)


async def read(name: str, *, include_versions: bool = False, vault: str | None = None) -> SecretDetails:
    """Metadata of the current version (and of every version, newest first, when asked)."""
    settings = settings_for(vault)
    require_name_in_scope(name, settings)
    client = await get_secret_client(settings.vault_url)
    current = await _read_current(client, name, "read")
    if current is None:
        raise SecretNotFound(f"Secret '{name}' was not found in the vault.", field="name")
    versions = await _versions(client, name, "metadata") if include_versions else None
    return SecretDetails(current.metadata, versions)


def _encode_token(next_link: str | None) -> str | None:
    """Opaque to callers: only the vault's query string, so a token can never point the client elsewhere."""
    if not next_link:
        return None
    query = urlparse(next_link).query
    return base64.urlsafe_b64encode(query.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_token(token: str, settings: Settings) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        query = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        if not pairs:
            raise ValueError("empty continuation token")
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidRequest(
            "continuationToken is not one this API returned; start again without it.",
            field="continuationToken",
        ) from None
    # Rebuilt on the configured vault URL: the bearer token only ever goes to our vault.
    return f"{settings.vault_url}/secrets?{urlencode(pairs)}"


async def list_page(query: ListQuery, *, vault: str | None = None) -> SecretPage:
    """One vault page of secrets (metadata), filtered to the app's name prefix.

    A page may hold fewer than `max_results` items (even none) and still have a continuation token,
    because out-of-scope secrets are filtered out of the vault's page; keep paging while there is a token.
    """
    settings = settings_for(vault)
    link = _decode_token(query.continuation_token, settings) if query.continuation_token else None
    client = await get_secret_client(settings.vault_url)

    async def first_page() -> SecretPage:
        pages = client.list_properties_of_secrets(max_page_size=query.max_results).by_page(
            continuation_token=link
        )
        items: list[VersionInfo] = []
        try:
            page = await pages.__anext__()
        except StopAsyncIteration:
            return SecretPage([], None)
        async for props in page:
            if name_in_scope(props.name or "", settings):
                items.append(VersionInfo.from_properties(props))
        return SecretPage(items, _encode_token(getattr(pages, "continuation_token", None)))

    call = VaultCall(None, "metadata")
    try:
        return await first_page()
    except vault_failures() as exc:
        if link is not None and getattr(exc, "status_code", None) == 400:
            # The vault refused the page the token names (forged, stale or from another vault): the caller's
            # fault, and retrying the same token cannot help.
            raise InvalidRequest(
                "continuationToken is not one this API returned, or it has expired; start again without it.",
                field="continuationToken",
            ) from None
        raise from_vault_error(exc, call) from exc


async def delete(name: str, *, caller: str | None = None, vault: str | None = None) -> DeletedSecretInfo:
    """Soft-delete every version of an owned secret."""
    settings = settings_for(vault)
    async with audited("delete", name, caller=caller) as entry:
        require_name_in_scope(name, settings)
        client = await get_secret_client(settings.vault_url)
        current = await _read_current(client, name, "write")
        if current is None:
            raise SecretNotFound(f"Secret '{name}' was not found in the vault.", field="name")
        require_owned(name, current.metadata.tags, settings)
        deleted: DeletedSecret = await _vault(
            VaultCall(name, "write"), client.delete_secret(name, _polling_interval=_POLL_SECONDS)
        )
        entry.version = current.metadata.version
        return DeletedSecretInfo(
            name=name,
            id=deleted.id,
            recovery_id=deleted.recovery_id,
            deleted_on=deleted.deleted_date,
            scheduled_purge_date=deleted.scheduled_purge_date,
        )


async def recover(name: str, *, caller: str | None = None, vault: str | None = None) -> VersionInfo:
    """Recover a deleted-but-recoverable secret that is ours (or adoptable)."""
    settings = settings_for(vault)
    async with audited("recover", name, caller=caller) as entry:
        require_name_in_scope(name, settings)
        client = await get_secret_client(settings.vault_url)
        if not await _recover_deleted(client, name, settings):
            raise SecretNotFound(
                f"There is no deleted secret named '{name}' to recover (it may be live already, or purged).",
                field="name",
            )
        current = await _read_current(client, name, "write")
        if current is None:  # recovered but not yet visible: rare, the SDK already polled for it
            raise SecretNotFound(f"Secret '{name}' was recovered but is not visible yet; retry GET shortly.")
        entry.version = current.metadata.version
        return current.metadata
