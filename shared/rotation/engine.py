"""The rotation engine: one secret at a time under its lock, or a whole vault in a bounded sweep.

One rotation: re-list the secret's versions (the re-check right before writing) → the policy decides
→ the rotator draws a pending value → the engine stores it as a disabled version tagged pending with
an operation id (so a crash cannot lose it) → the rotator applies and tests it on its target → the
engine promotes it (enabled, nbf = now, exp = now + validity, the same content type and tags, plus the
lineage and revoke-after marks for the previous version). A pending version found later is resumed,
never duplicated. Three vault transactions per due secret: list versions, set, update.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import telemetry
from ..audit import audited
from ..errors import (
    CrossInstanceLockRequired,
    DomainError,
    LockUnavailable,
    RotationNotConfigured,
    RotationPolicyInvalid,
    SecretBusy,
    SecretNotFound,
    VaultCall,
    from_vault_error,
    transient_codes,
    vault_failures,
)
from ..locks import PROCESS_COALESCER, PROCESS_LOCKS, Coalescer, SecretLocks, lock_key
from ..scope import require_name_in_scope
from ..settings import Settings
from ..validation import MAX_TAGS
from ..vault.calls import Deadline, VaultCalls, process_limiters
from ..vault.pager import pages, read_history, version_listing
from ..vault.sweep import SweepRunner, SweepSummary, remember
from ..vault.versions import (
    STATE_PENDING,
    TAG_OPERATION,
    TAG_PREVIOUS,
    TAG_REVOKE_AFTER,
    TAG_STATE,
    SecretHistory,
    VersionInfo,
    format_time,
    utc_now,
)
from .policy import (
    Assessment,
    PolicyError,
    RotationPolicy,
    SecretStatus,
    assess,
    carried_tags,
    is_managed,
)
from .results import Outcome, RotationResult, record
from .rotators import PendingCredential, RotationContext, Rotator, rotator_for

_log = logging.getLogger(__name__)

# Step boundaries a crash can fall on (tests inject failures here through `hook`).
STEPS = ("decided", "pending_stored", "applied", "tested", "promoted")
# Only when the target made the value itself (apply returned it): stored as a further pending version.
PRODUCED_STEP = "produced_stored"

Hook = Callable[[str, str], Awaitable[None]]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RotationRequest:
    """Why a rotation runs: `force` (on demand) rotates even when not due; `expected_version` (an event)
    rotates only while that version is still current."""

    trigger: str = "timer"
    force: bool = False
    dry_run: bool = False
    expected_version: str | None = None
    caller: str | None = None
    # A deterministic id (a queue message's, shared.fanout) tags the new version instead of a random one.
    operation_id: str | None = None


class RotationEngine:
    """Rotations against one vault client; cheap to build per invocation."""

    def __init__(
        self,
        client: Any,
        settings: Settings,
        *,
        now: Clock = utc_now,
        calls: VaultCalls | None = None,
        locks: SecretLocks | None = None,
        coalescer: Coalescer | None = None,
        hook: Hook | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.now = now
        self.calls = calls or VaultCalls(read_timeout=settings.request_timeout_seconds)
        self.locks = locks or PROCESS_LOCKS
        self.coalescer = coalescer or PROCESS_COALESCER
        self.hook = hook

    def _rotator(self, policy: RotationPolicy) -> Rotator:
        """The policy's rotator; one that changes something outside the vault runs only under the lease."""
        rotator = rotator_for(policy)
        if rotator.touches_target and self.locks.distributed is None:
            raise CrossInstanceLockRequired(
                f"RotationType={policy.rotation_type} changes a credential outside Key Vault, so it runs only "
                "under the cross-instance lease: set AzureWebJobsStorage (or AzureWebJobsStorage__blobServiceUri) "
                "and ROTATION_LOCK=auto or blob.",
                field="tags",
            )
        return rotator

    def with_calls(self, calls: VaultCalls) -> RotationEngine:
        """The same engine drawing on `calls` (a sweep's, with its deadline)."""
        clone = copy.copy(self)
        clone.calls = calls
        return clone

    async def _step(self, step: str, name: str) -> None:
        if self.hook is not None:
            await self.hook(step, name)

    # ----------------------------------------------------------------- one secret

    async def rotate(self, name: str, request: RotationRequest) -> RotationResult:
        """Rotate one secret now (on demand, or for an event). Concurrent callers for a name share one run.

        Raises DomainError for what the caller must fix (out of scope, not managed, bad policy, vault errors)."""
        require_name_in_scope(name, self.settings)  # before any vault call, whichever trigger asks
        if request.dry_run:
            return await self._rotate_locked(name, request, raise_errors=True)
        key = f"{lock_key(self.settings, name)}|{request.force}|{request.expected_version or ''}"
        return await self.coalescer.run(
            key, lambda: self._rotate_serialized(name, request, raise_errors=True)
        )

    @telemetry.traced_rotation
    async def _rotate_serialized(
        self, name: str, request: RotationRequest, *, raise_errors: bool
    ) -> RotationResult:
        try:
            async with self.locks.hold(lock_key(self.settings, name)):
                return await self._rotate_locked(name, request, raise_errors=raise_errors)
        except (SecretBusy, LockUnavailable) as exc:
            if raise_errors:
                raise
            outcome = Outcome.DEFERRED if isinstance(exc, SecretBusy) else Outcome.FAILED
            return RotationResult(name, outcome, exc.message, error_code=exc.code, dry_run=request.dry_run)

    async def history(self, name: str) -> SecretHistory:
        """All versions' properties (no values): the re-check a write is based on."""
        return await read_history(self.calls, self.client, name)

    async def _rotate_locked(
        self, name: str, request: RotationRequest, *, raise_errors: bool
    ) -> RotationResult:
        try:
            return await self._decide_and_rotate(name, request)
        except (DomainError, PolicyError) as exc:
            if raise_errors:
                if isinstance(exc, DomainError):
                    raise
                raise RotationPolicyInvalid(str(exc), field="tags") from exc
            return RotationResult(
                name,
                Outcome.FAILED,
                getattr(exc, "message", str(exc)),
                error_code=getattr(exc, "code", "RotationPolicyInvalid"),
                dry_run=request.dry_run,
            )
        except vault_failures() as exc:  # vault errors become domain errors with advice; bugs propagate
            error = from_vault_error(exc, VaultCall(name, "write"))
            if raise_errors:
                raise error from exc
            return RotationResult(
                name, Outcome.FAILED, error.message, error_code=error.code, dry_run=request.dry_run
            )

    async def _decide_and_rotate(self, name: str, request: RotationRequest) -> RotationResult:
        now = self.now()
        history = await self.history(name)
        for (
            extra
        ) in history.promoted_twice():  # exactly-once broke (a lease lost mid-rotation): say so loudly
            _log.error(
                "rotation of '%s': version %s was promoted over %s, which another promoted version already "
                "superseded; Key Vault serves the newest, cleanup disables this one",
                name,
                extra.version,
                extra.previous_version,
            )
        latest = history.latest
        if latest is None:
            if request.force:
                raise SecretNotFound(f"Secret '{name}' was not found in the vault.")
            return RotationResult(
                name,
                Outcome.NOT_FOUND,
                "the secret has no versions (deleted or never written)",
                dry_run=request.dry_run,
            )
        await self._step("decided", name)
        if not is_managed(latest, self.settings):
            if request.force:
                raise RotationNotConfigured(
                    f"Secret '{name}' has no rotation tag; add ValidityPeriodDays (e.g. 60) to its tags to let the "
                    "app rotate it"
                    + (
                        f", and keep its name under the prefix '{self.settings.name_prefix}'"
                        if self.settings.name_prefix
                        else ""
                    )
                    + ".",
                    field="name",
                )
            return RotationResult(
                name,
                Outcome.NOT_MANAGED,
                "no rotation tag (or outside the name prefix)",
                dry_run=request.dry_run,
            )
        assessment = assess(latest, now, self.settings)
        assert assessment is not None
        if request.expected_version and latest.version != request.expected_version:
            return RotationResult(
                name,
                Outcome.STALE,
                f"the event is about version {request.expected_version}, but the current version is "
                f"{latest.version}; nothing to do",
                assessment.status,
                version=latest.version,
                dry_run=request.dry_run,
            )
        if assessment.needs_resume:
            return await self._resume(history, latest, request, now)
        if assessment.status is SecretStatus.ERROR:
            raise RotationPolicyInvalid(f"Secret '{name}': {assessment.reason}", field="tags")
        if request.force:
            recent = (
                latest.operation_id
                and latest.enabled
                and latest.created is not None
                and (now - latest.created).total_seconds() < self.settings.rotation_min_interval_seconds
            )
            if recent:
                return RotationResult(
                    name,
                    Outcome.ALREADY_ROTATED,
                    f"rotated {max(0, int((now - latest.created).total_seconds()))} s ago (operation "  # type: ignore[operator]
                    f"{latest.operation_id}), within ROTATION_MIN_INTERVAL_SECONDS="
                    f"{self.settings.rotation_min_interval_seconds:g}; returning that rotation's result",
                    assessment.status,
                    version=latest.version,
                    previous_version=latest.previous_version,
                    operation_id=latest.operation_id,
                    not_before=latest.not_before,
                    expires_on=latest.expires_on,
                    revoke_previous_after=latest.revoke_after,
                    dry_run=request.dry_run,
                )
        elif not assessment.needs_rotation:
            outcome = Outcome.NOT_DUE if assessment.status is SecretStatus.UP_TO_DATE else Outcome.SKIPPED
            return RotationResult(
                name,
                outcome,
                assessment.reason,
                assessment.status,
                version=latest.version,
                dry_run=request.dry_run,
            )
        policy = assessment.policy
        assert policy is not None
        telemetry.note_rotation_type(policy.rotation_type)
        rotator = self._rotator(policy)
        if request.dry_run:
            return RotationResult(
                name,
                Outcome.WOULD_ROTATE,
                ("on demand: " if request.force else "")
                + assessment.reason
                + "; would store a pending version, then promote it",
                assessment.status,
                previous_version=latest.version,
                not_before=now,
                expires_on=now + policy.validity,
                revoke_previous_after=now + policy.overlap,
                dry_run=True,
                target=await self._describe(rotator, name, policy, latest, now),
            )
        return await self._rotate_now(history, latest, assessment, rotator, request, now)

    async def _read_value(self, name: str, version: str | None) -> str:
        secret = await self.calls.call("GetSecret", self.client.get_secret, name, version)
        return str(secret.value)

    def _reader(self, name: str, default_version: str | None) -> Callable[[str | None], Awaitable[str]]:
        """A rotator's reader of this secret's values: `read(None)` reads `default_version`."""

        async def read(version: str | None = None) -> str:
            return await self._read_value(name, version or default_version)

        return read

    async def _describe(
        self, rotator: Rotator, name: str, policy: RotationPolicy, latest: VersionInfo, now: datetime
    ) -> dict[str, Any] | None:
        """A dry run's view of the target (which credential would change, whether it is reachable), from
        rotators that can tell (`describe`, no writes); None for the others."""
        describe = getattr(rotator, "describe", None)
        if describe is None:
            return None
        ctx = RotationContext(
            name,
            policy,
            latest,
            "dry-run",
            now,
            self._reader(name, latest.version),
            settings=self.settings,
            read_secret=self._read_other,
        )
        report: dict[str, Any] = await describe(ctx)
        return report

    async def _read_other(self, other: str) -> str:
        """Another secret's current value (an AdminSecret): in scope like every name the app touches."""
        require_name_in_scope(other, self.settings)
        return await self._read_value(other, None)

    async def _apply_and_test(
        self,
        rotator: Any,
        ctx: RotationContext,
        pending: PendingCredential,
        version: str,
        tags: dict[str, str],
        latest: VersionInfo | None,
    ) -> tuple[str, PendingCredential, dict[str, str]]:
        """Put the pending credential on the target and prove it. A value the target made itself is
        stored as a further pending version (same operation id) before the test, so a crash cannot lose it."""
        name = ctx.name
        produced = await rotator.apply(ctx, pending)
        if produced is not None:
            tags = {**tags, **produced.tags}
            stored = await self.calls.call(
                "SetSecret",
                self.client.set_secret,
                name,
                produced.value,
                enabled=False,
                content_type=latest.content_type if latest else None,
                tags=tags,
                not_before=ctx.now,
                expires_on=ctx.now + ctx.policy.validity,
                create=True,
            )
            version, pending = stored.properties.version, produced
            await self._step(PRODUCED_STEP, name)
        await self._step("applied", name)
        await rotator.test(ctx, pending)
        await self._step("tested", name)
        return version, pending, tags

    async def _rotate_now(
        self,
        history: SecretHistory,
        latest: VersionInfo,
        assessment: Assessment,
        rotator: Any,
        request: RotationRequest,
        now: datetime,
    ) -> RotationResult:
        name = history.name
        policy = assessment.policy
        assert policy is not None
        operation_id = request.operation_id or uuid.uuid4().hex
        ctx = RotationContext(
            name,
            policy,
            latest,
            operation_id,
            now,
            self._reader(name, latest.version),
            settings=self.settings,
            read_secret=self._read_other,
        )
        async with audited("rotate", name, caller=request.caller or request.trigger) as entry:
            entry.details = {
                "operationId": operation_id,
                "trigger": request.trigger,
                "status": assessment.status.value,
                "previousVersion": latest.version,
            }
            pending = await rotator.create_pending(ctx)
            tags = carried_tags(latest.tags)
            tags.update(pending.tags)
            tags.update(
                {TAG_STATE: STATE_PENDING, TAG_OPERATION: operation_id, TAG_PREVIOUS: latest.version or ""}
            )
            tags[TAG_REVOKE_AFTER] = format_time(now + policy.overlap)
            if len(tags) > MAX_TAGS:
                raise RotationPolicyInvalid(
                    f"Secret '{name}' has {len(tags) - 4} tags; rotation needs 4 of Key Vault's 15 for its "
                    "bookkeeping. "
                    "Remove tags so at most 11 remain.",
                    field="tags",
                )
            stored = await self.calls.call(
                "SetSecret",
                self.client.set_secret,
                name,
                pending.value,
                enabled=False,
                content_type=latest.content_type,
                tags=tags,
                not_before=now,
                expires_on=now + policy.validity,
                create=True,
            )
            version = stored.properties.version
            entry.version = version
            await self._step("pending_stored", name)
            version, pending, tags = await self._apply_and_test(rotator, ctx, pending, version, tags, latest)
            entry.version = version
            result = await self._promote(
                name,
                version,
                tags,
                policy,
                now,
                operation_id,
                latest.version,
                Outcome.ROTATED,
                assessment,
                request,
            )
            await self._step("promoted", name)
            await rotator.finish(ctx, pending)
            return result

    async def _promote(
        self,
        name: str,
        version: str,
        tags: dict[str, str],
        policy: RotationPolicy,
        now: datetime,
        operation_id: str | None,
        previous: str | None,
        outcome: Outcome,
        assessment: Assessment | None,
        request: RotationRequest,
    ) -> RotationResult:
        final = {k: v for k, v in tags.items() if k != TAG_STATE}
        final[TAG_REVOKE_AFTER] = format_time(now + policy.overlap)
        expires_on = now + policy.validity
        await self.calls.call(
            "UpdateSecret",
            self.client.update_secret_properties,
            name,
            version,
            enabled=True,
            not_before=now,
            expires_on=expires_on,
            tags=final,
        )
        reason = (
            "on demand" if request.force else (assessment.reason if assessment else "resumed")
        ) + f"; new version {version} in service until {format_time(expires_on)}"
        return RotationResult(
            name,
            outcome,
            reason,
            assessment.status if assessment else None,
            version=version,
            previous_version=previous,
            operation_id=operation_id,
            not_before=now,
            expires_on=expires_on,
            revoke_previous_after=now + policy.overlap,
        )

    async def _resume(
        self, history: SecretHistory, pending_info: VersionInfo, request: RotationRequest, now: datetime
    ) -> RotationResult:
        """Finish a rotation a crash left behind: its pending value is in the vault, so nothing is lost."""
        name = history.name
        policy = RotationPolicy.from_tags(pending_info.tags)
        if policy is None:
            raise RotationPolicyInvalid(
                f"Secret '{name}': the pending version lost its rotation tags", field="tags"
            )
        rotator = self._rotator(policy)
        previous = (
            pending_info.previous_version or (history.before(pending_info.version) or pending_info).version
        )
        if request.dry_run:
            return RotationResult(
                name,
                Outcome.WOULD_RESUME,
                f"would finish operation {pending_info.operation_id} (pending version "
                f"{pending_info.version})",
                SecretStatus.PENDING_RECOVERY,
                version=pending_info.version,
                previous_version=previous,
                operation_id=pending_info.operation_id,
                dry_run=True,
            )
        version = pending_info.version
        assert version is not None
        tags = dict(pending_info.tags)
        async with audited("rotate-resume", name, caller=request.caller or request.trigger) as entry:
            entry.version = version
            entry.details = {"operationId": pending_info.operation_id, "trigger": request.trigger}
            ctx: RotationContext | None = None
            pending: PendingCredential | None = None
            if rotator.touches_target:
                # A disabled version cannot be read: enable it (still tagged pending) to re-apply its value.
                await self.calls.call(
                    "UpdateSecret", self.client.update_secret_properties, name, version, enabled=True
                )
                value = await self._read_value(name, version)
                ctx = RotationContext(
                    name,
                    policy,
                    history.find(previous),
                    pending_info.operation_id or "",
                    now,
                    self._reader(name, previous),
                    settings=self.settings,
                    read_secret=self._read_other,
                )
                stored = version
                pending = PendingCredential(value, tags)
                version, pending, tags = await self._apply_and_test(
                    rotator, ctx, pending, version, tags, history.find(previous)
                )
                if version != stored:
                    # The target made the value: the version resumed from was only its placeholder. Disable it
                    # again (still tagged pending), so nothing but the promoted version is served.
                    await self.calls.call(
                        "UpdateSecret", self.client.update_secret_properties, name, stored, enabled=False
                    )
                entry.version = version
            result = await self._promote(
                name,
                version,
                tags,
                policy,
                now,
                pending_info.operation_id,
                previous,
                Outcome.RESUMED,
                None,
                request,
            )
            result.reason = f"resumed operation {pending_info.operation_id}; " + result.reason
            result.status = SecretStatus.PENDING_RECOVERY
            await self._step("promoted", name)
            if ctx is not None and pending is not None:
                await rotator.finish(ctx, pending)
            return result

    # ----------------------------------------------------------------- a whole vault

    @telemetry.traced_sweep
    async def sweep(
        self, *, dry_run: bool = False, budget_seconds: float | None = None, include_items: bool = False
    ) -> SweepSummary:
        """List every secret (25 per page), rotate the due ones with bounded concurrency, within a time budget.

        Never raises for one secret's failure (it is counted); raises only when the vault cannot be listed.
        Every vault call gets at most what is left of the budget, so a hung vault ends the sweep on time."""
        budget = self.settings.rotation_budget_seconds if budget_seconds is None else budget_seconds
        deadline = Deadline(budget)
        calls = VaultCalls(
            limiters=process_limiters(self.settings.vault_url),
            deadline=deadline,
            read_timeout=self.settings.request_timeout_seconds,
        )
        engine = self.with_calls(calls)
        summary = SweepSummary(kind="rotation", dry_run=dry_run, started_at=self.now())
        runner: SweepRunner[Any] = SweepRunner(
            summary, deadline, concurrency=self.settings.rotation_concurrency, log=_log
        )

        def note(info: VersionInfo, assessment: Assessment, result: RotationResult | None) -> None:
            if result is not None:
                record(summary, result)
            if include_items:
                item: dict[str, Any] = {
                    "name": info.name,
                    "status": assessment.status.value,
                    "reason": assessment.reason,
                }
                if assessment.expires_on:
                    item["expiresOn"] = format_time(assessment.expires_on)
                if assessment.due_on:
                    item["dueOn"] = format_time(assessment.due_on)
                if result is not None:
                    item["action"] = result.outcome.value
                summary.items.append(item)

        def decide(info: VersionInfo) -> Callable[[], Awaitable[None]] | None:
            now = self.now()
            assessment = assess(info, now, self.settings)
            telemetry.listed(info, assessment)
            if assessment is None:
                return None
            summary.managed += 1
            summary.statuses[assessment.status.value] += 1
            if not (assessment.needs_rotation or assessment.needs_resume):
                note(info, assessment, self._not_acted(info, assessment))
                return None
            if dry_run:
                note(info, assessment, self._planned(info, assessment, now))
                return None
            note(info, assessment, None)

            async def rotate() -> None:
                result = await engine._rotate_serialized(
                    info.name, RotationRequest(trigger="timer"), raise_errors=False
                )
                if deadline.spent and result.outcome is Outcome.FAILED and _transient(result.error_code):
                    result = RotationResult(
                        info.name,
                        Outcome.DEFERRED,
                        "time budget spent; the next run rotates it",
                        assessment.status,
                    )
                record(summary, result)

            return rotate

        def defer(info: VersionInfo) -> None:
            record(
                summary,
                RotationResult(info.name, Outcome.DEFERRED, "time budget spent; the next run rotates it"),
            )

        listing = pages(calls, "GetSecrets", version_listing(self.client), vault_url=self.settings.vault_url)
        try:
            await runner.run(listing, decide, defer)
        except _failures() as exc:
            # the vault could not be listed: say so in the run's summary
            error = (
                exc if isinstance(exc, DomainError) else from_vault_error(exc, VaultCall(None, "metadata"))
            )
            summary.listing_failed(error.code, error.message)
            summary.finish(calls).log()
            if error is not exc:
                raise error from exc
            raise
        summary.finish(calls).log()
        remember(summary)
        return summary

    def _planned(self, info: VersionInfo, assessment: Assessment, now: datetime) -> RotationResult:
        if assessment.needs_resume:
            return RotationResult(
                info.name,
                Outcome.WOULD_RESUME,
                assessment.reason,
                assessment.status,
                dry_run=True,
                operation_id=info.operation_id,
            )
        policy = assessment.policy
        assert policy is not None
        try:
            rotator_for(policy)
        except PolicyError as exc:
            return RotationResult(
                info.name,
                Outcome.FAILED,
                str(exc),
                SecretStatus.ERROR,
                error_code="RotationPolicyInvalid",
                dry_run=True,
            )
        return RotationResult(
            info.name,
            Outcome.WOULD_ROTATE,
            assessment.reason,
            assessment.status,
            dry_run=True,
            not_before=now,
            expires_on=now + policy.validity,
            revoke_previous_after=now + policy.overlap,
        )

    @staticmethod
    def _not_acted(info: VersionInfo, assessment: Assessment) -> RotationResult:
        if assessment.status is SecretStatus.ERROR:
            return RotationResult(
                info.name,
                Outcome.FAILED,
                assessment.reason,
                assessment.status,
                error_code="RotationPolicyInvalid",
            )
        outcome = Outcome.NOT_DUE if assessment.status is SecretStatus.UP_TO_DATE else Outcome.SKIPPED
        return RotationResult(info.name, outcome, assessment.reason, assessment.status)


def _transient(code: str | None) -> bool:
    """Failures a later run may not meet (timeouts, throttling, an unreachable vault or target)."""
    return code in transient_codes()


def _failures() -> tuple[type[BaseException], ...]:
    """What ends a sweep as "the vault could not be listed": a mapped error or a vault/network failure."""
    return (DomainError, *vault_failures())
