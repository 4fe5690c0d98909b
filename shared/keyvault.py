"""THE Key Vault client module: one credential and one async `SecretClient` per process.

Every function (HTTP, timer, Event Grid, queue) calls `get_secret_client(vault_url)`; the first call for
a vault builds its client, later calls reuse it, so the challenge, the token and the connection pool
are paid for once per process.
Nothing here touches the network at import time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .settings import Settings, get_settings

if TYPE_CHECKING:  # imported lazily: keeps `import function_app` cheap
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.keyvault.secrets.aio import SecretClient

_log = logging.getLogger(__name__)

_clients: dict[str, SecretClient] = {}  # vault URL → its one client, on `_loop`
_credential: AsyncTokenCredential | None = None
_loop: asyncio.AbstractEventLoop | None = None


def build_credential(settings: Settings) -> AsyncTokenCredential:
    """Managed identity (user-assigned when AZURE_CLIENT_ID is set); DefaultAzureCredential only on opt-in."""
    if settings.credential == "default":
        from azure.identity.aio import DefaultAzureCredential

        _log.warning("KEY_VAULT_CREDENTIAL=default: using DefaultAzureCredential (developer machines only)")
        return DefaultAzureCredential(managed_identity_client_id=settings.client_id)
    from azure.identity.aio import ManagedIdentityCredential

    # The credential ignores AZURE_CLIENT_ID by itself; pass it explicitly for a user-assigned identity.
    return (
        ManagedIdentityCredential(client_id=settings.client_id)
        if settings.client_id
        else ManagedIdentityCredential()
    )


def build_client(settings: Settings, credential: AsyncTokenCredential) -> SecretClient:
    """An aio SecretClient whose retries fit inside the function timeout."""
    from azure.keyvault.secrets.aio import SecretClient

    from .transport import client_options
    from .vault.retry import build_request_counter, build_retry_policy

    quiet_sdk_loggers(settings.sdk_log_level)
    kwargs: dict[str, object] = {
        "verify_challenge_resource": settings.verify_challenge_resource,
        # the one retry layer (shared.vault.retry): every method, at most retry_total + 1 requests per call
        "retry_policy": build_retry_policy(settings.retry_total, settings.retry_backoff_seconds),
        "per_retry_policies": [build_request_counter()],
        "logging_enable": False,  # never let the SDK's HTTP logging near a body
        **client_options(
            settings.vault_url,
            settings.ca_bundle,
            connection_timeout=10,
            read_timeout=settings.request_timeout_seconds,
        ),
    }
    return SecretClient(vault_url=settings.vault_url, credential=credential, **kwargs)


# azure-core logs every request at INFO. host.json's log levels filter the host's categories, not the
# worker's Python loggers, so in Azure those lines would reach Application Insights unless set here.
SDK_LOGGERS = ("azure.core", "azure.identity", "azure.keyvault", "azure.storage", "azure.monitor")


def quiet_sdk_loggers(level: str) -> None:
    """Azure SDK loggers at AZURE_SDK_LOG_LEVEL (WARNING unless the operator chose info or debug)."""
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


async def get_secret_client(vault_url: str | None = None) -> SecretClient:
    """The process-wide client of `vault_url` (default: the first configured vault), built on first use on
    the running event loop. Every vault's client shares the one credential (one token cache)."""
    global _credential, _loop
    loop = asyncio.get_running_loop()
    url = (vault_url or get_settings().vault_url).rstrip("/")
    if _loop is loop and url in _clients:
        return _clients[url]
    async with _lock_for(loop):
        if _loop is not loop:
            if _clients:
                # A new event loop (only in tests): the old clients' sessions belong to the old loop.
                _log.debug("event loop changed; building new Key Vault clients")
            _clients.clear()
            _credential = None
            _loop = loop
        if url not in _clients:
            settings = get_settings()
            if url not in settings.vault_urls:
                raise ValueError(f"{url} is not one of the configured vaults (KEY_VAULT_URL, KEY_VAULT_URLS)")
            if _credential is None:
                _credential = build_credential(settings)
            _clients[url] = build_client(settings.for_vault(url), _credential)
        return _clients[url]


_locks: dict[int, asyncio.Lock] = {}


def _lock_for(loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
    """The lock guarding the first build on this loop (only the current loop's is kept)."""
    if id(loop) not in _locks:
        _locks.clear()
        _locks[id(loop)] = asyncio.Lock()
    return _locks[id(loop)]


async def close_secret_client() -> None:
    """Close every shared client and the credential (host shutdown, tests)."""
    global _credential, _loop
    clients, credential = list(_clients.values()), _credential
    _clients.clear()
    _credential = None
    _loop = None
    for client in clients:
        await client.close()
    if credential is not None:
        await credential.close()
