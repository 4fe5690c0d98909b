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
SweepMode = Literal["inline", "queue"]

_log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NAME_PREFIX = re.compile(r"[0-9a-zA-Z-]{0,100}")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it and says what is expected."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"App setting {setting}: {problem}")
        self.setting = setting


@dataclass(frozen=True)
class Settings:
    """What the app needs to know about its vault, identity and scope."""

    vault_url: str
    # Every vault the app serves (the first is vault_url, the default); KEY_VAULT_URLS adds more.
    vault_urls: tuple[str, ...] = ()
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
    retry_backoff_seconds: float = 0.5
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
    rotation_lease_seconds: int = 30
    storage_connection_string: str | None = None
    storage_blob_uri: str | None = None
    # The identity of identity-based AzureWebJobsStorage, as the host reads it (may differ from Key Vault's).
    storage_client_id: str | None = None
    # Where the rotators of Azure keys and Entra app secrets reach Resource Manager and Microsoft Graph.
    resource_manager_url: str = "https://management.azure.com"
    # CA bundle for database rotators' verify-full TLS (None: the system store).
    db_ca_bundle: str | None = None
    # Level of the Azure SDK's loggers (the app sets them itself; see shared.keyvault.quiet_sdk_loggers).
    sdk_log_level: str = "warning"
    graph_url: str = "https://graph.microsoft.com"
    # Fan-out (shared.fanout): sweeps inline in the timer, or as scan/rotate/cleanup messages on queues.
    sweep_mode: SweepMode = "inline"
    scan_queue: str = "kv-scan"
    rotate_queue: str = "kv-rotate"
    cleanup_queue: str = "kv-cleanup"
    events_queue: str = "kv-events"
    fanout_creates_per_second: float = 20.0
    storage_queue_uri: str | None = None

    @property
    def lock_storage_configured(self) -> bool:
        """Storage the lease can use: identity-based, or any connection string — Azurite's
        `UseDevelopmentStorage=true` included, so local runs serialize across instances as Azure does."""
        return bool(self.storage_blob_uri or (self.storage_connection_string or "").strip())

    def for_vault(self, url: str) -> Settings:
        """These settings aimed at one of the configured vaults (engines and clients read `vault_url`)."""
        from dataclasses import replace

        return replace(self, vault_url=url.rstrip("/"))

    def vault_named(self, name: str) -> str | None:
        """The configured vault whose URL or host's first label is `name` (`?vault=` in the HTTP API)."""
        wanted = name.strip().lower().rstrip("/")
        for url in self.vault_urls:
            host = (urlparse(url).hostname or "").lower()
            if wanted in (url.lower(), host, host.split(".", 1)[0], urlparse(url).netloc.lower()):
                return url
        return None

    @property
    def cross_instance_lock(self) -> bool:
        """Whether rotations hold the blob lease (ROTATION_LOCK blob, or auto with storage configured)."""
        return self.rotation_lock == "blob" or (self.rotation_lock == "auto" and self.lock_storage_configured)

    @property
    def is_loopback_vault(self) -> bool:
        host = (urlparse(self.vault_url).hostname or "").lower()
        return host in {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, how it is read, its default and what it means — declared once, here.

    The loader, the README's settings table (a test compares them) and the deployment templates' check
    all come from `SETTINGS`. `field` is the `Settings` attribute it fills; None for settings only the
    Functions host reads (schedules, AzureWebJobsStorage's own parts)."""

    name: str
    field: str | None
    kind: Literal["text", "bool", "number", "count", "choice"]
    default: object
    doc: str
    required: bool = False
    minimum: float = 0
    maximum: float = math.inf
    choices: tuple[str, ...] = ()

    def read(self, env: Mapping[str, str]) -> object:
        raw = env.get(self.name)
        if raw is None or raw.strip() == "":
            return self.default
        value = raw.strip()
        if self.kind == "bool":
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise SettingsError(self.name, f"expected true or false, got {raw!r}")
        if self.kind == "choice":
            if value.lower() not in self.choices:
                raise SettingsError(self.name, f"expected {_either(self.choices)}, got {raw!r}")
            return value.lower()
        if self.kind in ("number", "count"):
            return self._number(raw)
        return value

    def _number(self, raw: str) -> float | int:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(self.name, f"expected a number, got {raw!r}") from None
        if not math.isfinite(value):  # nan passes every comparison and inf overflows timedelta: refuse both
            raise SettingsError(self.name, f"expected a finite number, got {raw!r}")
        if value < self.minimum:
            raise SettingsError(self.name, f"must be at least {self.minimum:g}, got {raw!r}")
        if value > self.maximum:
            raise SettingsError(self.name, f"must be at most {self.maximum:g}, got {raw!r}")
        if self.kind == "count":
            if not value.is_integer():  # '2.5' is refused rather than silently truncated
                raise SettingsError(self.name, f"expected a whole number, got {raw!r}")
            return int(value)
        return value


def _either(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


_D = Settings  # defaults live on the dataclass; the declarations point at them

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "KEY_VAULT_URL",
        "vault_url",
        "text",
        None,
        "The vault, `https://<name>.vault.azure.net`. `make run` points it at the local Key Vault.",
        required=True,
    ),
    Setting(
        "KEY_VAULT_URLS",
        "vault_urls",
        "text",
        None,
        "More vaults, comma-separated `https://` URLs: sweeps cover every one (each with its own throttle "
        "budget), and the HTTP API picks one with `?vault=<name>` (the host's first label).",
    ),
    Setting(
        "AZURE_CLIENT_ID",
        "client_id",
        "text",
        None,
        "Client id of a **user-assigned** identity; unset = "
        "system-assigned. (`ManagedIdentityCredential` ignores this variable by itself; the app passes it.)",
    ),
    Setting(
        "KEY_VAULT_CREDENTIAL",
        "credential",
        "choice",
        _D.credential,
        "`default` opts into "
        "`DefaultAzureCredential` (e.g. `az login` on a developer machine). Never chosen silently.",
        choices=("managed_identity", "default"),
    ),
    Setting(
        "KEY_VAULT_CA_BUNDLE",
        "ca_bundle",
        "text",
        None,
        "CA file to trust for the vault's TLS (the local Key Vault's `ca.pem`).",
    ),
    Setting(
        "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
        "verify_challenge_resource",
        "bool",
        _D.verify_challenge_resource,
        "`false` is accepted only for a loopback vault (localhost cannot be a "
        "subdomain of the challenge resource).",
    ),
    Setting(
        "KEY_VAULT_RETRY_TOTAL",
        "retry_total",
        "count",
        _D.retry_total,
        "azure-core retries per call "
        "(429 on every method, 5xx, timeouts, dropped connections): at most this + 1 requests per call.",
    ),
    Setting(
        "KEY_VAULT_RETRY_BACKOFF_SECONDS",
        "retry_backoff_seconds",
        "number",
        _D.retry_backoff_seconds,
        "First retry's backoff; it doubles per retry (capped at 8 s), or Key Vault's Retry-After when sent.",
        maximum=8,
    ),
    Setting(
        "KEY_VAULT_TIMEOUT_SECONDS",
        "request_timeout_seconds",
        "number",
        _D.request_timeout_seconds,
        "Read timeout per vault request (never more than what is left of a sweep's budget); exceeded → 504.",
        minimum=1,
    ),
    Setting(
        "SECRETS_NAME_PREFIX",
        "name_prefix",
        "text",
        _D.name_prefix,
        "Names the API, rotation and cleanup may touch (letters, digits, dashes); empty = every name.",
    ),
    Setting(
        "SECRETS_OWNER_TAG",
        "owner_tag",
        "text",
        _D.owner_tag,
        "Name of the ownership tag the app sets on "
        "what it writes; required for delete, soft delete by cleanup, and purge.",
    ),
    Setting("SECRETS_OWNER_VALUE", "owner_value", "text", _D.owner_value, "Value of the ownership tag."),
    Setting(
        "SECRETS_ALLOW_ADOPT",
        "allow_adopt",
        "bool",
        _D.allow_adopt,
        "Let writes take over existing secrets that lack the ownership tag.",
    ),
    Setting(
        "ROTATION_SCHEDULE",
        None,
        "text",
        None,
        "NCRONTAB (six fields, seconds first) of "
        "`scheduled_rotation`; the example sets `0 0 * * * *` (hourly).",
        required=True,
    ),
    Setting(
        "CLEANUP_SCHEDULE",
        None,
        "text",
        None,
        "NCRONTAB of `scheduled_cleanup`; the example sets `0 30 3 * * *` (03:30 UTC).",
        required=True,
    ),
    Setting(
        "ROTATION_MIN_INTERVAL_SECONDS",
        "rotation_min_interval_seconds",
        "number",
        _D.rotation_min_interval_seconds,
        "An on-demand rotation within this long after a completed one returns that one's result.",
    ),
    Setting(
        "ROTATION_BUDGET_SECONDS",
        "rotation_budget_seconds",
        "number",
        _D.rotation_budget_seconds,
        "Time budget of a sweep, below `functionTimeout` (10 min); every vault call gets at most what is "
        "left; the rest is `Deferred` to the next run.",
        minimum=1,
    ),
    Setting(
        "ROTATION_PLAN_BUDGET_SECONDS",
        "plan_budget_seconds",
        "number",
        _D.plan_budget_seconds,
        "Budget of each of the plan endpoint's two dry runs (at most 110), so its answer stays inside the "
        "230 s Azure gives an HTTP response; a cut listing says `listingComplete: false`.",
        maximum=110,
    ),
    Setting(
        "ROTATION_CONCURRENCY",
        "rotation_concurrency",
        "count",
        _D.rotation_concurrency,
        "Secrets rotated or cleaned at once.",
        minimum=1,
    ),
    Setting(
        "ROTATION_LOCK",
        "rotation_lock",
        "choice",
        _D.rotation_lock,
        "Cross-instance lock: `auto` = a blob "
        "lease per secret name whenever `AzureWebJobsStorage` is set (Azurite's `UseDevelopmentStorage=true` "
        "included); `blob` = always; `off` = in-process lock only — **for a single instance only**, and "
        "rotators of external targets refuse to run with it.",
        choices=("auto", "blob", "off"),
    ),
    Setting(
        "ROTATION_LOCK_WAIT_SECONDS",
        "rotation_lock_wait_seconds",
        "number",
        _D.rotation_lock_wait_seconds,
        "Wait for a name another instance holds, then `SecretBusy` (HTTP) or `Deferred` (sweep); queue steps "
        "wait at most 2 s and re-enqueue.",
    ),
    Setting(
        "ROTATION_LEASE_SECONDS",
        "rotation_lease_seconds",
        "count",
        _D.rotation_lease_seconds,
        "Duration of a rotation's blob lease, renewed every third of it while held: an instance that dies "
        "frees its names within this time (15-60, Azure's bounds).",
        minimum=15,
        maximum=60,
    ),
    Setting(
        "CLEANUP_KEEP_VERSIONS",
        "cleanup_keep_versions",
        "count",
        _D.cleanup_keep_versions,
        "The newest N enabled versions always stay enabled.",
        minimum=1,
    ),
    Setting(
        "CLEANUP_EXPIRED_GRACE_DAYS",
        "cleanup_expired_grace_days",
        "number",
        _D.cleanup_expired_grace_days,
        "How long after expiry an opted-in, owned secret is soft-deleted.",
    ),
    Setting(
        "CLEANUP_PURGE_GRACE_DAYS",
        "cleanup_purge_grace_days",
        "number",
        _D.cleanup_purge_grace_days,
        "How long after soft delete an owned secret is purged.",
    ),
    Setting(
        "CLEANUP_ALLOW_PURGE",
        "cleanup_allow_purge",
        "bool",
        _D.cleanup_allow_purge,
        "Purge only when `true`.",
    ),
    Setting(
        "AzureWebJobsStorage",
        "storage_connection_string",
        "text",
        None,
        "The host's storage (timer "
        "bookkeeping) and the rotation leases (container `secret-rotation-locks`). Set by the platform.",
    ),
    Setting(
        "AzureWebJobsStorage__blobServiceUri",
        "storage_blob_uri",
        "text",
        None,
        "Identity-based storage "
        "instead of a connection string (with `AzureWebJobsStorage__credential` = `managedidentity`).",
    ),
    Setting(
        "AzureWebJobsStorage__clientId",
        "storage_client_id",
        "text",
        None,
        "The identity of identity-based storage; unset = `AZURE_CLIENT_ID`, like the Functions host.",
    ),
    Setting(
        "DB_CA_BUNDLE",
        "db_ca_bundle",
        "text",
        None,
        "CA file the database rotators trust for `DbTls=verify-full` (e.g. the Azure Database root CAs); unset "
        "= the system store.",
    ),
    Setting(
        "AZURE_SDK_LOG_LEVEL",
        "sdk_log_level",
        "choice",
        _D.sdk_log_level,
        "Level of the Azure SDK's Python loggers, which the app sets itself (host.json does not reach them): "
        "`warning`, `info` or `debug`.",
        choices=("warning", "info", "debug"),
    ),
    Setting(
        "AZURE_RESOURCE_MANAGER_URL",
        "resource_manager_url",
        "text",
        _D.resource_manager_url,
        "Azure Resource Manager for the key rotators (storage, Cosmos DB, Service Bus, Event Hubs, Redis); "
        "the local control plane's URL in local runs.",
    ),
    Setting(
        "MICROSOFT_GRAPH_URL",
        "graph_url",
        "text",
        _D.graph_url,
        "Microsoft Graph for the Entra app secret rotator; the local control plane's URL in local runs.",
    ),
    Setting(
        "SWEEP_MODE",
        "sweep_mode",
        "choice",
        _D.sweep_mode,
        "`inline` = each timer sweeps every vault itself; `queue` = the timer enqueues one scan message per "
        "vault and queue functions list, rotate and clean up (scales out; see Scale out).",
        choices=("inline", "queue"),
    ),
    Setting(
        "FANOUT_SCAN_QUEUE", "scan_queue", "text", _D.scan_queue, "Queue of scan messages (one page each)."
    ),
    Setting(
        "FANOUT_ROTATE_QUEUE",
        "rotate_queue",
        "text",
        _D.rotate_queue,
        "Queue of rotate messages (one secret each).",
    ),
    Setting(
        "FANOUT_CLEANUP_QUEUE",
        "cleanup_queue",
        "text",
        _D.cleanup_queue,
        "Queue of cleanup messages (one secret each).",
    ),
    Setting(
        "FANOUT_EVENTS_QUEUE",
        "events_queue",
        "text",
        _D.events_queue,
        "Queue an Event Grid subscription delivers Key Vault events to (StorageQueue endpoint).",
    ),
    Setting(
        "FANOUT_CREATES_PER_SECOND",
        "fanout_creates_per_second",
        "number",
        _D.fanout_creates_per_second,
        "Rotations a scan schedules per second per vault (visibility delays); Key Vault allows 30 creates/s.",
        minimum=1,
        maximum=30,
    ),
    Setting(
        "AzureWebJobsStorage__queueServiceUri",
        "storage_queue_uri",
        "text",
        None,
        "Identity-based queue endpoint of `AzureWebJobsStorage` (the fan-out queues), with `__credential`.",
    ),
)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    values = {s.field: s.read(env) for s in SETTINGS if s.field is not None}
    vault_url = values["vault_url"]
    if not isinstance(vault_url, str):
        raise SettingsError(
            "KEY_VAULT_URL",
            "is not set. Set it to your vault's URL, e.g. https://my-vault.vault.azure.net/ "
            "(`make run` sets it to the local Key Vault).",
        )
    parsed = urlparse(vault_url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise SettingsError("KEY_VAULT_URL", f"must be an https:// URL, got {vault_url!r}")
    values["vault_url"] = vault_url.rstrip("/")
    urls = [values["vault_url"]]
    for raw in str(values["vault_urls"] or "").split(","):
        url = raw.strip().rstrip("/")
        if not url:
            continue
        if urlparse(url).scheme != "https" or not urlparse(url).hostname:
            raise SettingsError("KEY_VAULT_URLS", f"every entry must be an https:// URL, got {raw.strip()!r}")
        if url not in urls:
            urls.append(url)
    values["vault_urls"] = tuple(urls)
    ca_bundle = values["ca_bundle"]
    if isinstance(ca_bundle, str) and not os.path.isfile(ca_bundle):
        raise SettingsError("KEY_VAULT_CA_BUNDLE", f"file not found: {ca_bundle!r}")
    if not _NAME_PREFIX.fullmatch(str(values["name_prefix"])):
        raise SettingsError("SECRETS_NAME_PREFIX", "may contain only letters, digits and dashes")
    values["storage_client_id"] = values["storage_client_id"] or values["client_id"]
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.rotation_lock == "blob" and not settings.lock_storage_configured:
        raise SettingsError(
            "ROTATION_LOCK",
            "is blob, but neither AzureWebJobsStorage nor AzureWebJobsStorage__blobServiceUri is set; set "
            "one of them, or ROTATION_LOCK=auto (lease when storage is configured) or off (one instance)",
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


def readme_default(setting: Setting) -> str:
    """How the README's settings table shows a default (a test holds the table to the declarations)."""
    if setting.required:
        return "required"
    if setting.default is None:
        return "unset"
    if isinstance(setting.default, bool):
        return f"`{str(setting.default).lower()}`"
    if isinstance(setting.default, float) and setting.default.is_integer():
        return f"`{int(setting.default)}`"
    return f"`{setting.default}`" if setting.default != "" else '`""`'


def readme_table() -> str:
    """The README's settings table, from the declarations (`python -c 'from shared.settings import *;
    print(readme_table())'` regenerates it)."""
    lines = ["| Setting | Default | Meaning |", "|---|---|---|"]
    lines += [f"| `{s.name}` | {readme_default(s)} | {s.doc} |" for s in SETTINGS]
    return "\n".join(lines)
