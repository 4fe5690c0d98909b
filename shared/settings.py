"""Typed app settings, read once from the environment (Azure app settings / local.settings.json Values).

Every setting is validated when first read; a bad or missing one raises `SettingsError` naming it,
so a misconfigured app fails with a message that says what to fix instead of a stack trace later.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import urlparse

from .errors import ConfigurationError

CredentialKind = Literal["managed_identity", "default"]
RotationLock = Literal["auto", "blob", "off"]

_log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NAME_PREFIX = re.compile(r"^[0-9a-zA-Z-]{0,100}$")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it and says what is expected."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"App setting {setting}: {problem}")
        self.setting = setting


@dataclass(frozen=True)
class Settings:
    """What the app needs to know about its vault, identity and scope."""

    vault_url: str
    client_id: str | None = None
    ca_bundle: str | None = None
    verify_challenge_resource: bool = True
    credential: CredentialKind = "managed_identity"
    # Scope of the HTTP API and of destructive cleanup.
    name_prefix: str = ""
    owner_tag: str = "ManagedBy"
    owner_value: str = "keyvault-secrets-functions"
    allow_adopt: bool = False
    # Client behaviour: retries must fit inside functionTimeout.
    retry_total: int = 4
    request_timeout_seconds: float = 30.0
    # Rotation and cleanup.
    rotation_min_interval_seconds: float = 60.0
    rotation_budget_seconds: float = 480.0
    # Each of the plan's two dry runs; both together stay below the 230 s an HTTP response may take in Azure.
    plan_budget_seconds: float = 100.0
    rotation_concurrency: int = 8
    cleanup_allow_purge: bool = False
    cleanup_keep_versions: int = 2
    cleanup_purge_grace_days: float = 7.0
    cleanup_expired_grace_days: float = 30.0
    # Serialization of rotations across instances: a blob lease per secret name in AzureWebJobsStorage.
    rotation_lock: RotationLock = "auto"
    rotation_lock_wait_seconds: float = 20.0
    storage_connection_string: str | None = None
    storage_blob_uri: str | None = None
    # The identity for identity-based AzureWebJobsStorage, as the Functions host reads it (may differ from Key Vault's).
    storage_client_id: str | None = None

    @property
    def lock_storage_configured(self) -> bool:
        """Storage the lease can use: identity-based, or a connection string other than the local emulator's
        shortcut (which `auto` ignores so `make run` works without Azurite; ROTATION_LOCK=blob uses it)."""
        if self.storage_blob_uri:
            return True
        raw = (self.storage_connection_string or "").strip()
        return bool(raw) and raw.lower() != "usedevelopmentstorage=true"

    @property
    def is_loopback_vault(self) -> bool:
        host = (urlparse(self.vault_url).hostname or "").lower()
        return host in {"localhost", "127.0.0.1", "::1"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(name, f"expected true or false, got {raw!r}")


def _number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float = 0, maximum: float = math.inf
) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):  # nan passes every comparison and inf overflows timedelta: refuse both here
        raise SettingsError(name, f"expected a finite number, got {raw!r}")
    if value < minimum:
        raise SettingsError(name, f"must be at least {minimum:g}, got {raw!r}")
    if value > maximum:
        raise SettingsError(name, f"must be at most {maximum:g}, got {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """A whole-number setting: '2.5' is refused rather than silently truncated."""
    value = _number(env, name, default, minimum=minimum)
    if not float(value).is_integer():
        raise SettingsError(name, f"expected a whole number, got {env.get(name)!r}")
    return int(value)


def _optional(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw.strip() if raw and raw.strip() else None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    vault_url = _optional(env, "KEY_VAULT_URL")
    if vault_url is None:
        raise SettingsError(
            "KEY_VAULT_URL",
            "is not set. Set it to your vault's URL, e.g. https://my-vault.vault.azure.net/ "
            "(`make run` sets it to the local Key Vault).",
        )
    parsed = urlparse(vault_url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise SettingsError("KEY_VAULT_URL", f"must be an https:// URL, got {vault_url!r}")

    ca_bundle = _optional(env, "KEY_VAULT_CA_BUNDLE")
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        raise SettingsError("KEY_VAULT_CA_BUNDLE", f"file not found: {ca_bundle!r}")

    credential = (_optional(env, "KEY_VAULT_CREDENTIAL") or "managed_identity").lower()
    if credential not in ("managed_identity", "default"):
        raise SettingsError(
            "KEY_VAULT_CREDENTIAL", f"expected managed_identity or default, got {credential!r}"
        )

    prefix = _optional(env, "SECRETS_NAME_PREFIX") or ""
    if not _NAME_PREFIX.match(prefix):
        raise SettingsError("SECRETS_NAME_PREFIX", "may contain only letters, digits and dashes")

    rotation_lock = (_optional(env, "ROTATION_LOCK") or "auto").lower()
    if rotation_lock not in ("auto", "blob", "off"):
        raise SettingsError("ROTATION_LOCK", f"expected auto, blob or off, got {rotation_lock!r}")

    settings = Settings(
        vault_url=vault_url.rstrip("/"),
        client_id=_optional(env, "AZURE_CLIENT_ID"),
        ca_bundle=ca_bundle,
        verify_challenge_resource=_bool(env, "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", True),
        credential=credential,  # type: ignore[arg-type]
        name_prefix=prefix,
        owner_tag=_optional(env, "SECRETS_OWNER_TAG") or Settings.owner_tag,
        owner_value=_optional(env, "SECRETS_OWNER_VALUE") or Settings.owner_value,
        allow_adopt=_bool(env, "SECRETS_ALLOW_ADOPT", False),
        retry_total=_count(env, "KEY_VAULT_RETRY_TOTAL", Settings.retry_total),
        request_timeout_seconds=_number(
            env, "KEY_VAULT_TIMEOUT_SECONDS", Settings.request_timeout_seconds, minimum=1
        ),
        rotation_min_interval_seconds=_number(
            env, "ROTATION_MIN_INTERVAL_SECONDS", Settings.rotation_min_interval_seconds
        ),
        rotation_budget_seconds=_number(
            env, "ROTATION_BUDGET_SECONDS", Settings.rotation_budget_seconds, minimum=1
        ),
        plan_budget_seconds=_number(
            env, "ROTATION_PLAN_BUDGET_SECONDS", Settings.plan_budget_seconds, maximum=110
        ),
        rotation_concurrency=_count(env, "ROTATION_CONCURRENCY", Settings.rotation_concurrency, minimum=1),
        cleanup_allow_purge=_bool(env, "CLEANUP_ALLOW_PURGE", False),
        cleanup_keep_versions=_count(env, "CLEANUP_KEEP_VERSIONS", Settings.cleanup_keep_versions, minimum=1),
        cleanup_purge_grace_days=_number(env, "CLEANUP_PURGE_GRACE_DAYS", Settings.cleanup_purge_grace_days),
        cleanup_expired_grace_days=_number(
            env, "CLEANUP_EXPIRED_GRACE_DAYS", Settings.cleanup_expired_grace_days
        ),
        rotation_lock=rotation_lock,  # type: ignore[arg-type]
        rotation_lock_wait_seconds=_number(
            env, "ROTATION_LOCK_WAIT_SECONDS", Settings.rotation_lock_wait_seconds
        ),
        storage_connection_string=_optional(env, "AzureWebJobsStorage"),
        storage_blob_uri=_optional(env, "AzureWebJobsStorage__blobServiceUri"),
        storage_client_id=_optional(env, "AzureWebJobsStorage__clientId")
        or _optional(env, "AZURE_CLIENT_ID"),
    )
    if settings.rotation_lock == "blob" and not (
        settings.storage_blob_uri or settings.storage_connection_string
    ):
        raise SettingsError(
            "ROTATION_LOCK",
            "is blob, but neither AzureWebJobsStorage nor AzureWebJobsStorage__blobServiceUri is set; set one "
            "of them, or ROTATION_LOCK=auto (lease when storage is configured) or off",
        )
    if not settings.verify_challenge_resource and not settings.is_loopback_vault:
        raise SettingsError(
            "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
            "may be false only for a loopback vault (localhost); a real vault must pass the challenge check",
        )
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import time).

    A bad setting is logged here, with what to do, because timer and Event Grid runs have no caller to
    answer it to."""
    try:
        return load_settings()
    except SettingsError as exc:
        _log.error("configuration problem: %s", ConfigurationError.of(exc).message)
        raise
