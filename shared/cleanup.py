"""Scheduled cleanup, planned first and then acted on: revoke superseded versions, soft-delete expired
secrets that opted in, purge soft-deleted secrets the app owns.

- Key Vault cannot delete a version, so a superseded version is disabled and tagged RotationRevoked
  once its overlap has passed (RotationRevokeAfter on its successor, else successor created + overlap);
  the newest CLEANUP_KEEP_VERSIONS enabled versions always stay.
- Soft delete needs the CleanupDeleteExpired=true tag, the ownership tag, and an expiry older than
  CLEANUP_EXPIRED_GRACE_DAYS. Purge needs the ownership tag, CLEANUP_ALLOW_PURGE=true and a deletion
  older than CLEANUP_PURGE_GRACE_DAYS; purge protection (403) is reported and skipped, not an error.
Decisions use listed properties only; values are never read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from . import telemetry
from .audit import audited
from .errors import (
    DomainError,
    LockUnavailable,
    SecretBusy,
    VaultCall,
    VaultErrorCodes,
    from_vault_error,
    vault_failures,
)
from .locks import PROCESS_LOCKS, SecretLocks, lock_key
from .rotation.policy import DEFAULT_OVERLAP_DAYS, TAG_DELETE_EXPIRED, PolicyError, RotationPolicy, format_age
from .scope import is_owned, name_in_scope
from .settings import Settings
from .vault.calls import Deadline, VaultCalls, process_limiters
from .vault.pager import pages, read_history, sdk_listing, version_listing
from .vault.sweep import SweepRunner, SweepSummary, remember
from .vault.versions import TAG_REVOKED, SecretHistory, VersionInfo, format_time, tag, utc_now

_log = logging.getLogger(__name__)


class CleanupAction(StrEnum):
    DISABLE_VERSION = "DisableVersion"
    DELETE_EXPIRED = "DeleteExpired"
    PURGE = "Purge"


class CleanupOutcome(StrEnum):
    DONE = "Done"
    WOULD_DO = "WouldDo"
    PURGE_PROTECTED = "PurgeProtected"
    PURGE_NOT_ALLOWED = "PurgeNotAllowed"
    GONE = "Gone"
    DEFERRED = "Deferred"
    FAILED = "Failed"


@dataclass
class CleanupStep:
    action: CleanupAction
    name: str
    reason: str
    version: str | None = None
    outcome: CleanupOutcome = CleanupOutcome.WOULD_DO
    error_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body = {
            "action": self.action.value,
            "name": self.name,
            "outcome": self.outcome.value,
            "reason": self.reason,
        }
        if self.version:
            body["version"] = self.version
        if self.error_code:
            body["errorCode"] = self.error_code
        return body


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in {"1", "true", "yes", "on"}


def overlap_of(current: VersionInfo) -> timedelta:
    try:
        policy = RotationPolicy.from_tags(current.tags)
    except PolicyError:
        policy = None
    return policy.overlap if policy else timedelta(days=DEFAULT_OVERLAP_DAYS)


def plan_revocations(history: SecretHistory, now: datetime, keep: int) -> list[CleanupStep]:
    """Enabled versions superseded longer ago than their overlap, beyond the newest `keep` enabled ones."""
    latest = history.latest
    if latest is None or latest.is_pending:
        return []  # a rotation is in flight (or will be resumed): leave every version as it is
    overlap = overlap_of(latest)
    settled = [v for v in history.versions if not v.is_pending]
    enabled = [v for v in settled if v.enabled]
    kept = {v.version for v in enabled[-max(1, keep) :]}
    steps: list[CleanupStep] = []
    for index, info in enumerate(settled):
        if not info.enabled or info.version in kept or index + 1 >= len(settled):
            continue
        successor = settled[index + 1]
        revoke_after = successor.revoke_after if successor.previous_version == info.version else None
        if revoke_after is None and successor.created is not None:
            revoke_after = successor.created + overlap
        if revoke_after is None or revoke_after > now:
            continue
        steps.append(
            CleanupStep(
                CleanupAction.DISABLE_VERSION,
                history.name,
                f"superseded by {successor.version}; overlap ended {format_age(now - revoke_after)} ago",
                version=info.version,
            )
        )
    return steps


def plan_expired_delete(current: VersionInfo, now: datetime, settings: Settings) -> CleanupStep | None:
    if not _truthy(tag(current.tags, TAG_DELETE_EXPIRED)) or not is_owned(current.tags, settings):
        return None
    if current.expires_on is None:
        return None
    grace = timedelta(days=settings.cleanup_expired_grace_days)
    if current.expires_on + grace > now:
        return None
    return CleanupStep(
        CleanupAction.DELETE_EXPIRED,
        current.name,
        f"expired {format_age(now - current.expires_on)} ago (grace "
        f"{settings.cleanup_expired_grace_days:g} days) and tagged {TAG_DELETE_EXPIRED}=true",
    )


def plan_purge(deleted: Any, now: datetime, settings: Settings) -> CleanupStep | None:
    name = deleted.name
    tags = deleted.properties.tags if deleted.properties else None
    if not name or not name_in_scope(name, settings) or not is_owned(tags, settings):
        return None
    deleted_on = deleted.deleted_date
    grace = timedelta(days=settings.cleanup_purge_grace_days)
    if deleted_on is None or deleted_on + grace > now:
        return None
    step = CleanupStep(
        CleanupAction.PURGE,
        name,
        f"soft-deleted {format_age(now - deleted_on)} ago (grace {settings.cleanup_purge_grace_days:g} "
        "days) and owned by this app",
    )
    if not settings.cleanup_allow_purge:
        step.outcome = CleanupOutcome.PURGE_NOT_ALLOWED
        step.reason += "; set CLEANUP_ALLOW_PURGE=true to purge"
    return step


class CleanupEngine:
    def __init__(
        self,
        client: Any,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utc_now,
        locks: SecretLocks | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.now = now
        self.locks = locks or PROCESS_LOCKS

    def _in_scope(self, current: VersionInfo) -> bool:
        return name_in_scope(current.name, self.settings) and (
            RotationPolicy.opted_in(current.tags) or is_owned(current.tags, self.settings)
        )

    @telemetry.traced_sweep
    async def sweep(
        self, *, dry_run: bool = False, budget_seconds: float | None = None, include_items: bool = False
    ) -> SweepSummary:
        """Plan and act on the live secrets, then (when the listing completed) on the deleted ones."""
        budget = self.settings.rotation_budget_seconds if budget_seconds is None else budget_seconds
        deadline = Deadline(budget)
        calls = VaultCalls(
            limiters=process_limiters(self.settings.vault_url),
            deadline=deadline,
            read_timeout=self.settings.request_timeout_seconds,
        )
        summary = SweepSummary(kind="cleanup", dry_run=dry_run, started_at=self.now())
        runner: SweepRunner[Any] = SweepRunner(
            summary, deadline, concurrency=self.settings.rotation_concurrency, log=_log
        )

        def record(step: CleanupStep) -> None:
            error = None
            if step.outcome is CleanupOutcome.FAILED:
                error = {"name": step.name, "code": step.error_code or "Error", "reason": step.reason}
            summary.count(
                f"{step.action.value}:{step.outcome.value}",
                deferred=step.outcome is CleanupOutcome.DEFERRED,
                error=error,
            )
            if include_items:
                summary.items.append(step.to_dict())

        def tidy(current: VersionInfo) -> Callable[[], Awaitable[None]] | None:
            if not self._in_scope(current):
                return None
            summary.managed += 1
            expired = plan_expired_delete(current, self.now(), self.settings)
            if expired is not None:
                return lambda: self._act(calls, expired, dry_run, record)
            return lambda: self._revoke_superseded(calls, current.name, dry_run, record)

        def purge(deleted: Any) -> Callable[[], Awaitable[None]] | None:
            step = plan_purge(deleted, self.now(), self.settings)
            if step is None:
                return None
            if step.outcome is CleanupOutcome.PURGE_NOT_ALLOWED:
                record(step)
                return None
            return lambda: self._act(calls, step, dry_run, record)

        def defer(item: Any) -> None:
            summary.count("Deferred", deferred=True)

        try:
            live = pages(calls, "GetSecrets", version_listing(self.client), vault_url=self.settings.vault_url)
            await runner.run(live, tidy, defer)
            if summary.listing_complete and not deadline.spent:
                deleted = pages(
                    calls,
                    "GetDeletedSecrets",
                    sdk_listing(self.client.list_deleted_secrets),
                    vault_url=self.settings.vault_url,
                )
                await runner.run(deleted, purge, defer)
        except (DomainError, *vault_failures()) as exc:  # type: ignore[misc]
            # the vault could not be listed: say so in the run's summary, then fail the run with advice
            error = (
                exc if isinstance(exc, DomainError) else from_vault_error(exc, VaultCall(None, "metadata"))
            )
            summary.listing_failed(error.code, error.message)
            summary.finish(calls).log()
            if error is exc:
                raise
            raise error from exc
        summary.finish(calls).log()
        remember(summary)
        return summary

    async def _revoke_superseded(
        self, calls: VaultCalls, name: str, dry_run: bool, record: Callable[[CleanupStep], None]
    ) -> None:
        try:
            async with self.locks.hold(lock_key(self.settings, name)):
                history = await self._history(calls, name, record)
                if history is None:
                    return
                for step in plan_revocations(history, self.now(), self.settings.cleanup_keep_versions):
                    await self._act(calls, step, dry_run, record, history)
        except (SecretBusy, LockUnavailable) as exc:
            busy = isinstance(exc, SecretBusy)
            record(
                CleanupStep(
                    CleanupAction.DISABLE_VERSION,
                    name,
                    exc.message,
                    outcome=CleanupOutcome.DEFERRED if busy else CleanupOutcome.FAILED,
                    error_code=exc.code,
                )
            )

    async def _history(
        self, calls: VaultCalls, name: str, record: Callable[[CleanupStep], None]
    ) -> SecretHistory | None:
        try:
            history = await read_history(calls, self.client, name)
        except (
            vault_failures()
        ) as exc:  # one secret's vault failure is counted, the sweep goes on; bugs surface
            error = from_vault_error(exc, VaultCall(name, "metadata"))
            record(
                CleanupStep(
                    CleanupAction.DISABLE_VERSION,
                    name,
                    error.message,
                    outcome=CleanupOutcome.FAILED,
                    error_code=error.code,
                )
            )
            return None
        return history if history.versions else None

    @telemetry.traced_cleanup
    async def _act(
        self,
        calls: VaultCalls,
        step: CleanupStep,
        dry_run: bool,
        record: Callable[[CleanupStep], None],
        history: SecretHistory | None = None,
    ) -> None:
        if dry_run:
            record(step)
            return
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            async with audited(f"cleanup-{step.action.value}", step.name, caller="cleanup") as entry:
                entry.version = step.version
                if step.action is CleanupAction.DISABLE_VERSION:
                    assert history is not None
                    info = history.find(step.version)
                    tags = dict(info.tags if info else {})
                    tags[TAG_REVOKED] = format_time(self.now())
                    await calls.call(
                        "UpdateSecret",
                        self.client.update_secret_properties,
                        step.name,
                        step.version,
                        enabled=False,
                        tags=tags,
                    )
                elif step.action is CleanupAction.DELETE_EXPIRED:
                    await calls.call("DeleteSecret", self.client.delete_secret, step.name)
                else:
                    await calls.call("PurgeDeletedSecret", self.client.purge_deleted_secret, step.name)
            step.outcome = CleanupOutcome.DONE
        except ResourceNotFoundError:
            step.outcome = CleanupOutcome.GONE
            step.reason += "; already gone"
        except HttpResponseError as exc:
            if step.action is CleanupAction.PURGE and VaultErrorCodes.of(exc).purge_protected:
                step.outcome = CleanupOutcome.PURGE_PROTECTED
                step.reason += (
                    "; the vault has purge protection on, so Key Vault purges it at its scheduled date"
                )
            else:
                error = from_vault_error(
                    exc, VaultCall(step.name, "purge" if step.action is CleanupAction.PURGE else "write")
                )
                step.outcome, step.error_code = CleanupOutcome.FAILED, error.code
                step.reason += f"; failed: {error.message}"
        except DomainError as exc:
            step.outcome, step.error_code = CleanupOutcome.FAILED, exc.code
            step.reason += f"; failed: {exc.message}"
        except vault_failures() as exc:  # transport failures; a bug is not a vault failure and surfaces
            error = from_vault_error(exc, VaultCall(step.name, "write"))
            step.outcome, step.error_code = CleanupOutcome.FAILED, error.code
            step.reason += f"; failed: {error.message}"
        record(step)


async def default_cleanup(vault_url: str | None = None) -> CleanupEngine:
    """A cleanup engine on the process's shared client of `vault_url` (default: the first vault)."""
    from .keyvault import get_secret_client
    from .locks import lease_lock_for
    from .settings import get_settings

    settings = get_settings()
    settings = settings.for_vault(vault_url) if vault_url else settings
    PROCESS_LOCKS.distributed = await lease_lock_for(settings)
    return CleanupEngine(await get_secret_client(settings.vault_url), settings)
