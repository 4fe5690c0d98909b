"""Readiness: proof that the settings load and the app's identity can reach and list the vault.

One cheap call (list with maxresults=1) through the shared client, so the probe exercises exactly
what requests use: settings, credential, challenge, token, TLS and the role to list secrets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import ConfigurationError, VaultCall, from_vault_error, vault_failures
from .keyvault import get_secret_client
from .settings import SettingsError, get_settings


@dataclass(frozen=True)
class Readiness:
    ready: bool
    vault_url: str | None
    duration_ms: float
    code: str | None = None
    message: str | None = None  # what to fix, when not ready


async def probe_vault() -> Readiness:
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 2)

    try:
        settings = get_settings()
    except SettingsError as exc:
        error = ConfigurationError.of(exc)
        return Readiness(False, None, elapsed(), error.code, error.message)
    try:
        client = await get_secret_client()
        pages = client.list_properties_of_secrets(max_page_size=1).by_page()
        try:
            await pages.__anext__()
        except StopAsyncIteration:
            pass
    except vault_failures() as exc:
        mapped = from_vault_error(exc, VaultCall(None, "write"))  # name the role the app needs to work
        return Readiness(False, settings.vault_url, elapsed(), mapped.code, mapped.message)
    return Readiness(True, settings.vault_url, elapsed())
