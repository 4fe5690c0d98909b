"""The state of every managed secret at a glance: days to expiry, rotation status, last outcome, pending or
failed, cleanup due. Read from the vault's listed properties (the engine's listing and the policy's
`assess`, the cleanup planner's rules) — never a value — and this process's recent outcomes.

Cost: one transaction per 25 secrets, plus one per secret whose previous version's overlap has ended
(to see whether cleanup still has to revoke it).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidRequest

STATES = ("all", "attention", "pending", "failed", "cleanup")
SCOPES = ("managed", "all")
UNMANAGED = "Unmanaged"
STATUSES = ("UpToDate", "Due", "Expired", "PendingRecovery", "Disabled", "Error", UNMANAGED)
MAX_WITHIN_DAYS = 3650.0
_QUERY = re.compile(r"^[0-9a-zA-Z-]{0,127}$")
_HISTORY_CONCURRENCY = 8


@dataclass(frozen=True)
class StatusFilters:
    status: str | None = None
    state: str = "all"
    within_days: float | None = None
    query: str = ""
    scope: str = "managed"


def parse_filters(params: Mapping[str, str]) -> StatusFilters:
    """Query parameters → filters; a bad one is a 400 naming it."""
    status = (params.get("status") or "").strip() or None
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"Query parameter status must be one of {', '.join(STATUSES)}.", field="status")
    state = (params.get("state") or "all").strip().lower() or "all"
    if state not in STATES:
        raise InvalidRequest(f"Query parameter state must be one of {', '.join(STATES)}.", field="state")
    scope = (params.get("scope") or "managed").strip().lower() or "managed"
    if scope not in SCOPES:
        raise InvalidRequest("Query parameter scope must be managed or all.", field="scope")
    within: float | None = None
    raw = (params.get("within") or "").strip()
    if raw:
        try:
            within = float(raw)
        except ValueError:
            within = math.nan
        if not math.isfinite(within) or not 0 <= within <= MAX_WITHIN_DAYS:
            raise InvalidRequest(
                f"Query parameter within must be a number of days from 0 to {MAX_WITHIN_DAYS:g}.",
                field="within",
            )
    query = params.get("q") or ""
    if not _QUERY.match(query):
        raise InvalidRequest(
            "Query parameter q (part of a secret name) may contain only letters, digits and dashes.",
            field="q",
        )
    return StatusFilters(status, state, within, query.lower(), scope)


@dataclass
class SecretState:
    """One secret's row; every field comes from properties or outcomes, never from a value."""

    name: str
    managed: bool
    status: str
    reason: str
    enabled: bool
    vault: str = ""
    version: str | None = None
    rotation_type: str | None = None
    expires_on: datetime | None = None
    days_to_expiry: float | None = None
    due_on: datetime | None = None
    window: str = "none"
    last_rotated: datetime | None = None
    last_operation: str | None = None
    last_outcome: str | None = None
    last_outcome_at: datetime | None = None
    last_error: str | None = None
    pending: bool = False
    failed: bool = False
    cleanup_due: list[str] = field(default_factory=list)

    @property
    def attention(self) -> bool:
        return (
            self.pending
            or self.failed
            or self.status in ("Due", "Expired", "Error")
            or (not self.managed and self.window in ("expired", "0-7d", "7-30d"))
        )

    def to_dict(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

        return {
            "name": self.name,
            "vault": self.vault,
            "managed": self.managed,
            "status": self.status,
            "reason": self.reason,
            "enabled": self.enabled,
            "version": self.version,
            "rotationType": self.rotation_type,
            "expiresOn": moment(self.expires_on),
            "daysToExpiry": self.days_to_expiry,
            "dueOn": moment(self.due_on),
            "window": self.window,
            "lastRotatedOn": moment(self.last_rotated),
            "lastOperationId": self.last_operation,
            "lastOutcome": self.last_outcome,
            "lastOutcomeOn": moment(self.last_outcome_at),
            "lastError": self.last_error,
            "pending": self.pending,
            "failed": self.failed,
            "attention": self.attention,
            "cleanupDue": list(self.cleanup_due),
        }


@dataclass
class StatusReport:
    vault: str
    generated_at: datetime
    filters: StatusFilters
    secrets: list[SecretState]
    totals: dict[str, Any]
    listing_complete: bool = True
    last_runs: dict[str, Any] = field(default_factory=dict)
    listed: list[SecretState] = field(default_factory=list, repr=False)  # every row, before the filters

    def __post_init__(self) -> None:
        self.totals["shown"] = len(self.secrets)

    def to_dict(self) -> dict[str, Any]:
        f = self.filters
        return {
            "vault": self.vault,
            "generatedAt": self.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "filters": {
                "status": f.status,
                "state": f.state,
                "within": f.within_days,
                "q": f.query,
                "scope": f.scope,
            },
            "totals": self.totals,
            "listingComplete": self.listing_complete,
            "secrets": [s.to_dict() for s in self.secrets],
            "lastRuns": self.last_runs,
        }


def _matches(row: SecretState, filters: StatusFilters) -> bool:
    if filters.scope == "managed" and not row.managed:
        return False
    if filters.status and row.status != filters.status:
        return False
    if filters.query and filters.query not in row.name.lower():
        return False
    if filters.within_days is not None and (
        row.days_to_expiry is None or row.days_to_expiry > filters.within_days
    ):
        return False
    return {
        "all": True,
        "attention": row.attention,
        "pending": row.pending,
        "failed": row.failed,
        "cleanup": bool(row.cleanup_due),
    }[filters.state]


def row_for(info: Any, assessment: Any, now: datetime, settings: Any) -> SecretState:
    """One listed secret's row: the policy's verdict, the app's bookkeeping tags, the cleanup rules."""
    from . import telemetry
    from .cleanup import plan_expired_delete

    expiry = (assessment.expires_on if assessment is not None else None) or info.expires_on
    days = telemetry.days_until(expiry, now)
    row = SecretState(
        name=info.name,
        managed=assessment is not None,
        status=assessment.status.value if assessment is not None else UNMANAGED,
        reason=assessment.reason if assessment is not None else "no rotation tag: the app does not rotate it",
        enabled=info.enabled,
        version=info.version,
        rotation_type=assessment.policy.rotation_type
        if assessment is not None and assessment.policy
        else None,
        expires_on=expiry,
        days_to_expiry=days,
        due_on=assessment.due_on if assessment is not None else None,
        window=telemetry.window_of(days),
    )
    if info.operation_id:
        row.last_operation = info.operation_id
        if not info.is_pending:
            row.last_rotated = info.not_before or info.created
    row.pending = info.is_pending or row.status == "PendingRecovery"
    row.failed = row.status == "Error"
    expired_delete = plan_expired_delete(info, now, settings)
    if expired_delete is not None:
        row.cleanup_due.append(f"{expired_delete.action.value}: {expired_delete.reason}")
    return row


async def collect_status(
    client: Any,
    settings: Any,
    filters: StatusFilters | None = None,
    *,
    calls: Any = None,
    now: datetime | None = None,
) -> StatusReport:
    """List the vault (properties only), decide each secret as the sweep would, and merge recent outcomes."""
    from . import telemetry
    from .rotation.policy import assess
    from .scope import name_in_scope
    from .vault.calls import VaultCalls, process_limiters
    from .vault.pager import pages, version_listing
    from .vault.sweep import last_summaries

    filters = filters or StatusFilters()
    calls = calls or VaultCalls(limiters=process_limiters())
    now = now or datetime.now(UTC)
    vault = telemetry._vault_of(settings)
    rows: list[SecretState] = []
    histories: list[tuple[SecretState, Any]] = []
    async for page in pages(calls, "GetSecrets", version_listing(client), vault_url=client.vault_url):
        for info in page:
            if not name_in_scope(info.name, settings):
                continue
            assessment = assess(info, now, settings)
            row = row_for(info, assessment, now, settings)
            row.vault = vault
            rows.append(row)
            revoke_after = info.revoke_after
            if assessment is not None and info.previous_version and revoke_after and revoke_after <= now:
                histories.append((row, info))
    await _revocations_due(client, calls, histories, now, settings)
    recent = telemetry.recent_outcomes()
    for row in rows:
        seen = recent.get(row.name)
        if seen is not None:
            row.last_outcome, row.last_outcome_at = seen.outcome, seen.at
            if seen.outcome in ("Failed", "CleanupFailed"):
                row.failed = True
                row.last_error = f"{seen.error_code or 'Error'}: {seen.reason or ''}".strip()
    for summary in last_summaries().values():  # this instance's last sweeps: failures by name
        for error in summary.get("errors", []):
            for row in rows:
                if row.name == error.get("name") and not row.last_error:
                    row.failed = True
                    row.last_error = f"{error.get('code', 'Error')}: {error.get('reason', '')}"
    return StatusReport(
        vault=vault,
        generated_at=now,
        filters=filters,
        secrets=_sorted([r for r in rows if _matches(r, filters)]),
        totals=_totals(rows),
        last_runs=last_summaries(),
        listed=rows,
    )


def _sorted(rows: list[SecretState]) -> list[SecretState]:
    """Soonest expiry first; no expiry last."""
    return sorted(
        rows,
        key=lambda r: (
            r.days_to_expiry is None,
            r.days_to_expiry if r.days_to_expiry is not None else 0,
            r.name,
        ),
    )


def _totals(rows: list[SecretState]) -> dict[str, Any]:
    from . import telemetry

    managed = [r for r in rows if r.managed]
    return {
        "listed": len(rows),
        "managed": len(managed),
        "statuses": dict(Counter(r.status for r in rows)),
        "windows": {w: sum(1 for r in managed if r.window == w) for w in telemetry.WINDOWS},
        "pending": sum(1 for r in rows if r.pending),
        "failed": sum(1 for r in rows if r.failed),
        "cleanupDue": sum(1 for r in rows if r.cleanup_due),
        "attention": sum(1 for r in rows if r.attention),
    }


def merge_reports(reports: list[StatusReport]) -> StatusReport:
    """One report over several vaults (KEY_VAULT_URLS): every vault's rows, totals over all of them."""
    if len(reports) == 1:
        return reports[0]
    listed = [r for report in reports for r in report.listed]
    return StatusReport(
        vault=", ".join(r.vault for r in reports),
        generated_at=min(r.generated_at for r in reports),
        filters=reports[0].filters,
        secrets=_sorted([r for report in reports for r in report.secrets]),
        totals=_totals(listed),
        listing_complete=all(r.listing_complete for r in reports),
        last_runs=reports[0].last_runs,
        listed=listed,
    )


async def _revocations_due(
    client: Any, calls: Any, candidates: list[tuple[SecretState, Any]], now: datetime, settings: Any
) -> None:
    """For secrets whose previous version's overlap has ended: does cleanup still have to revoke it?"""
    if not candidates:
        return
    from .cleanup import plan_revocations
    from .vault.pager import read_history

    semaphore = asyncio.Semaphore(_HISTORY_CONCURRENCY)

    async def check(row: SecretState) -> None:
        async with semaphore:
            history = await read_history(calls, client, row.name)
        for step in plan_revocations(history, now, settings.cleanup_keep_versions):
            row.cleanup_due.append(f"{step.action.value} {step.version}: {step.reason}")

    await asyncio.gather(*(check(row) for row, _info in candidates))
