"""The fan-out's steps: what each queue function does with one message. No HTTP, no trigger types.

- `start_sweeps`: the timer's whole job in queue mode — one scan message per configured vault.
- `scan`: one page of one vault per message (one transaction), the due secrets' rotate messages (or the
  in-scope secrets' cleanup messages) scheduled with visibility delays so the vault's creates stay under
  FANOUT_CREATES_PER_SECOND, then the next scan message with the continuation token. A token the vault
  rejects (400) restarts the listing from the first page (the duplicates it enqueues are no-ops).
- `rotate` / `cleanup`: one secret through the engines (which re-check the vault under the secret's
  lease, so a duplicate finds the work done and does nothing).
- Throttling (429 after azure-core's retries) or a secret another instance holds: the same message
  (a scan's page too) is re-enqueued with attempt+1 and a growing delay and this one is acknowledged —
  no worker sleeps, no dequeue is spent; after MAX_REQUEUES it raises. Other transient failures raise,
  so the host's dequeue count and poison queue apply.
- `event`: a Key Vault event delivered by Event Grid to a storage queue becomes a rotate message.
- `poisoned`: a message the host gave up on is logged, counted and raised as an alert line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..errors import (
    DomainError,
    SecretBusy,
    VaultCall,
    VaultErrorCodes,
    VaultThrottled,
    from_vault_error,
    vault_failures,
)
from ..locks import waiting_at_most
from ..settings import Settings
from ..vault.versions import VersionInfo, utc_now
from .messages import (
    CleanupMessage,
    Message,
    MessageError,
    RotateMessage,
    ScanKind,
    ScanMessage,
    decode,
    encode,
    listed_version,
    operation_id,
)
from .queues import Outbox

_log = logging.getLogger("shared.fanout")
alert_log = logging.getLogger("secrets.alert")

MAX_REQUEUES = 12  # throttled/busy re-enqueues of one message before it goes the host's retry way
MAX_REQUEUE_DELAY = 300.0
CLEANUPS_PER_SECOND = 100.0  # cleanup is "other transactions" (4,000/10 s): 2-3 per secret
SEND_CONCURRENCY = 16
LOCK_WAIT_SECONDS = 2.0  # for a name another instance holds, before the message is re-enqueued

POISONED: Counter[str] = Counter()  # per queue, in this process (the alert lines are the durable record)


@dataclass
class StepResult:
    """What one message did, for the log line the queue function writes (never a value)."""

    step: str
    outcome: str
    vault: str | None = None
    name: str | None = None
    op_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body = {"step": self.step, "outcome": self.outcome, "vault": self.vault, "name": self.name}
        body["opId"] = self.op_id
        return {k: v for k, v in {**body, **self.details}.items() if v is not None}

    def log(self, level: int = logging.INFO) -> StepResult:
        record = self.to_dict()
        _log.log(
            level, "fanout %s", json.dumps(record, sort_keys=True, default=str), extra={"fanout": record}
        )
        return self


@dataclass
class Fanout:
    """The steps' collaborators: settings, the outbox, clocks and the jitter (tests inject them)."""

    settings: Settings
    outbox: Outbox
    now: Callable[[], datetime] = utc_now
    unix: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    # ------------------------------------------------------------ helpers

    def vault(self, url: str) -> str:
        """The configured vault a message names; MessageError for any other (never called)."""
        wanted = url.rstrip("/").lower()
        for configured in self.settings.vault_urls:
            if configured.rstrip("/").lower() == wanted:
                return configured
        raise MessageError("field 'vault' names a vault this app is not configured for (KEY_VAULT_URLS)")

    async def send(self, queue: str, message: Message, delay: float = 0.0) -> None:
        await self.outbox.send(queue, encode(message), delay=delay)

    async def send_all(self, queue: str, batch: list[tuple[Message, float]]) -> None:
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(message: Message, delay: float) -> None:
            async with gate:
                await self.send(queue, message, delay)

        await asyncio.gather(*(one(m, d) for m, d in batch))

    def requeue_delay(self, attempt: int, hint: float | None) -> float:
        base: float = min(MAX_REQUEUE_DELAY, 5.0 * 2.0 ** min(attempt, 16))
        if hint:
            base = max(base, min(MAX_REQUEUE_DELAY, float(hint)))
        return float(base * self.rng.uniform(1.0, 1.2))

    async def requeue(self, queue: str, message: Message, exc: DomainError) -> StepResult:
        """Throttled or busy: the same operation later, with a delay; this delivery is done."""
        if message.attempt >= MAX_REQUEUES:
            raise exc  # the host's retries and then its poison queue take it from here
        delay = self.requeue_delay(message.attempt, exc.retry_after)
        await self.send(queue, replace(message, attempt=message.attempt + 1), delay)
        details: dict[str, Any] = {"code": exc.code, "attempt": message.attempt + 1}
        details["delaySeconds"] = round(delay, 1)
        if isinstance(message, ScanMessage):
            details.update(kind=message.kind, listing=message.listing, page=message.page)
        return StepResult(
            message.type,
            "Requeued",
            message.vault,
            getattr(message, "name", None),
            getattr(message, "op_id", None),
            details,
        ).log(logging.WARNING)

    # ------------------------------------------------------------ the timer

    async def start_sweeps(self, kind: ScanKind) -> list[ScanMessage]:
        """One scan message per configured vault: the timer's whole job in SWEEP_MODE=queue."""
        sweep_id = uuid.uuid4().hex
        messages = [ScanMessage(vault=url, sweep_id=sweep_id, kind=kind) for url in self.settings.vault_urls]
        await self.send_all(self.settings.scan_queue, [(m, 0.0) for m in messages])
        _log.info("fanout: %s sweep %s started for %d vault(s)", kind, sweep_id, len(messages))
        return messages

    # ------------------------------------------------------------ scan

    async def scan(self, message: ScanMessage) -> StepResult:
        from ..keyvault import get_secret_client
        from ..vault.calls import VaultCalls, process_limiters
        from ..vault.pager import one_page, sdk_listing, version_listing

        vault = self.vault(message.vault)
        settings = self.settings.for_vault(vault)
        client = await get_secret_client(vault)
        calls = VaultCalls(limiters=process_limiters(vault), read_timeout=settings.request_timeout_seconds)
        deleted = message.listing == "deleted"
        listing = sdk_listing(client.list_deleted_secrets) if deleted else version_listing(client)
        operation = "GetDeletedSecrets" if deleted else "GetSecrets"
        try:
            items, token = await one_page(
                calls, operation, listing, vault_url=vault, continuation_token=message.token
            )
        except vault_failures() as exc:
            error = from_vault_error(exc, VaultCall(None, "metadata"))
            if isinstance(error, VaultThrottled):
                return await self.requeue(self.settings.scan_queue, message, error)
            if message.token is not None and VaultErrorCodes.of(exc).status == 400:
                return await self.restart_listing(message, error)
            raise error from exc
        now, start = self.now(), self.unix()
        if message.kind == "rotation":
            work, queue, rate = (
                self._due_rotations(vault, settings, items, now, message),
                self.settings.rotate_queue,
                self.settings.fanout_creates_per_second,
            )
        else:
            work, queue, rate = (
                self._cleanups(vault, settings, items, now, message),
                self.settings.cleanup_queue,
                CLEANUPS_PER_SECOND,
            )
        slot = max(start, message.next_slot)
        batch: list[tuple[Message, float]] = []
        for item in work:
            batch.append((item, slot - start))
            slot += 1.0 / rate
        await self.send_all(queue, batch)
        following: ScanMessage | None = None
        if token:
            following = replace(message, token=token, page=message.page + 1, next_slot=slot, attempt=0)
        elif message.kind == "cleanup" and not deleted:
            following = replace(message, listing="deleted", token=None, page=0, next_slot=slot, attempt=0)
        if following is not None:
            await self.send(self.settings.scan_queue, following)
        return StepResult(
            "scan",
            "Scanned",
            vault,
            details={
                "kind": message.kind,
                "listing": message.listing,
                "page": message.page,
                "listed": len(items),
                "enqueued": len(batch),
                "lastDelaySeconds": round(batch[-1][1], 1) if batch else 0,
                "more": following is not None,
                "sweepId": message.sweep_id,
            },
        ).log()

    async def restart_listing(self, message: ScanMessage, error: DomainError) -> StepResult:
        """The vault refused the continuation token (400): list again from the first page, as Key Vault's
        guidance advises. Work enqueued again for earlier pages has the same op ids, so it is a no-op."""
        fresh = replace(message, token=None, page=0, attempt=0)
        await self.send(self.settings.scan_queue, fresh)
        return StepResult(
            "scan",
            "Restarted",
            message.vault,
            details={
                "code": error.code,
                "kind": message.kind,
                "listing": message.listing,
                "page": message.page,
                "reason": "the vault rejected the continuation token; listing again from the first page",
                "sweepId": message.sweep_id,
            },
        ).log(logging.WARNING)

    def _due_rotations(
        self, vault: str, settings: Settings, items: list[Any], now: datetime, scan: ScanMessage
    ) -> list[Message]:
        from ..rotation.policy import assess

        due: list[Message] = []
        for info in items:
            assessment = assess(info, now, settings)
            if assessment is None or not (assessment.needs_rotation or assessment.needs_resume):
                continue
            due.append(
                RotateMessage(
                    vault=vault,
                    name=info.name,
                    op_id=operation_id(
                        vault, info.name, listed_version(info.version, info.updated), "rotate"
                    ),
                    version=info.version,
                    sweep_id=scan.sweep_id,
                )
            )
        return due

    def _cleanups(
        self, vault: str, settings: Settings, items: list[Any], now: datetime, scan: ScanMessage
    ) -> list[Message]:
        from ..cleanup import CleanupOutcome, plan_expired_delete, plan_purge
        from ..rotation.policy import RotationPolicy
        from ..scope import is_owned, name_in_scope

        work: list[Message] = []
        for item in items:
            if scan.listing == "deleted":
                step = plan_purge(item, now, settings)
                if step is None or step.outcome is CleanupOutcome.PURGE_NOT_ALLOWED:
                    continue
                name, version, updated, action = item.name, None, None, "purge"
            else:
                current: VersionInfo = item
                in_scope = name_in_scope(current.name, settings) and (
                    RotationPolicy.opted_in(current.tags) or is_owned(current.tags, settings)
                )
                if not in_scope:
                    continue
                expired = plan_expired_delete(current, now, settings) is not None
                name, version, updated = current.name, current.version, current.updated
                action = "expire" if expired else "tidy"
            work.append(
                CleanupMessage(
                    vault=vault,
                    name=name,
                    action=action,  # type: ignore[arg-type]
                    op_id=operation_id(
                        vault,
                        name,
                        listed_version(version, updated),
                        f"cleanup-{action}",
                    ),
                    version=version,
                    sweep_id=scan.sweep_id,
                )
            )
        return work

    # ------------------------------------------------------------ rotate

    async def rotate(self, message: RotateMessage) -> StepResult:
        from ..rotation import RotationRequest, default_engine

        vault = self.vault(message.vault)
        engine = await default_engine(vault)
        engine.now = self.now  # the fan-out's clock decides, as it did for the scan
        request = RotationRequest(
            trigger="queue",
            expected_version=message.version if message.source == "event" else None,
            caller=f"queue:{message.op_id}",
            operation_id=message.op_id,
        )
        try:
            # a held name: re-enqueue, not a listener slot spent waiting
            with waiting_at_most(LOCK_WAIT_SECONDS):
                result = await engine.rotate(message.name, request)
        except (VaultThrottled, SecretBusy) as exc:
            return await self.requeue(self.settings.rotate_queue, message, exc)
        except DomainError as exc:
            if exc.transient:
                raise  # the host redelivers after visibilityTimeout; poison after maxDequeueCount
            return StepResult(
                "rotate",
                "Failed",
                vault,
                message.name,
                message.op_id,
                {"code": exc.code, "reason": exc.message},
            ).log(logging.WARNING)
        return StepResult(
            "rotate",
            result.outcome.value,
            vault,
            message.name,
            message.op_id,
            {
                "version": result.version,
                "previousVersion": result.previous_version,
                "sweepId": message.sweep_id,
            },
        ).log()

    # ------------------------------------------------------------ cleanup

    async def cleanup(self, message: CleanupMessage) -> StepResult:
        with waiting_at_most(LOCK_WAIT_SECONDS):  # a held name: re-enqueue, not a slot spent waiting
            return await self._cleanup(message)

    async def _cleanup(self, message: CleanupMessage) -> StepResult:
        from ..cleanup import CleanupAction, CleanupOutcome, CleanupStep, default_cleanup, plan_expired_delete
        from ..errors import transient_codes
        from ..vault.calls import VaultCalls, process_limiters
        from ..vault.pager import read_history

        vault = self.vault(message.vault)
        engine = await default_cleanup(vault)
        engine.now = self.now  # the fan-out's clock decides, as it did for the scan
        calls = VaultCalls(
            limiters=process_limiters(vault), read_timeout=engine.settings.request_timeout_seconds
        )
        steps: list[CleanupStep] = []
        record = steps.append
        if message.action == "tidy":
            await engine._revoke_superseded(calls, message.name, False, record)
        elif message.action == "expire":
            try:
                history = await read_history(calls, engine.client, message.name)
            except vault_failures() as exc:  # the re-check's read: throttling re-enqueues like the rest
                error = from_vault_error(exc, VaultCall(message.name, "metadata"))
                if isinstance(error, VaultThrottled):
                    return await self.requeue(self.settings.cleanup_queue, message, error)
                raise error from exc
            current = history.latest
            planned = plan_expired_delete(current, engine.now(), engine.settings) if current else None
            if planned is not None:  # re-checked: a secret rewritten since the scan is not deleted
                await engine._act(calls, planned, False, record)
        else:
            step = CleanupStep(
                CleanupAction.PURGE, message.name, "soft-deleted and owned (planned by a scan)"
            )
            await engine._act(calls, step, False, record)
        failed = [s for s in steps if s.outcome is CleanupOutcome.FAILED]
        throttled = [s for s in failed if s.error_code == VaultThrottled.code]
        busy = [s for s in steps if s.error_code == SecretBusy.code]
        if throttled or busy:
            code = VaultThrottled if throttled else SecretBusy
            return await self.requeue(self.settings.cleanup_queue, message, code("throttled or busy"))
        if any(s.error_code in transient_codes() for s in failed):
            raise DomainError(f"cleanup of '{message.name}' failed transiently; the host redelivers it")
        outcomes = Counter(f"{s.action.value}:{s.outcome.value}" for s in steps)
        return StepResult(
            "cleanup",
            "Failed" if failed else "Done",
            vault,
            message.name,
            message.op_id,
            {"action": message.action, "steps": dict(outcomes)},
        ).log(logging.WARNING if failed else logging.INFO)

    # ------------------------------------------------------------ events

    async def event(self, body: str | bytes) -> StepResult:
        """One Key Vault event from an Event Grid → storage queue subscription (either schema)."""
        from ..rotation.events import NEAR_EXPIRY, EventError, handle, parse_event

        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise MessageError("the event is not JSON") from None
        if isinstance(document, list) and len(document) == 1:
            document = document[0]
        if not isinstance(document, Mapping):
            raise MessageError("the event must be a JSON object (Event Grid or CloudEvents schema)")
        event_type = str(document.get("eventType") or document.get("type") or "")
        data, subject, event_id = document.get("data"), document.get("subject"), document.get("id")
        subject = subject if isinstance(subject, str) else None
        event_id = str(event_id) if event_id is not None else None
        if event_type != NEAR_EXPIRY:
            await handle(event_type, data, subject=subject, event_id=event_id)  # alerts; the rest no-ops
            return StepResult(
                "event", "Handled", details={"eventType": event_type[:80], "eventId": event_id}
            ).log()
        try:
            parsed = parse_event(event_type, data, subject=subject, event_id=event_id)
        except EventError as exc:
            raise MessageError(str(exc)) from None
        vault = parsed.vault_url(self.settings)  # by data.Id's host, else data.VaultName (as keyvault_events)
        if vault is None:
            raise MessageError(
                "data.Id/data.VaultName names no configured vault (KEY_VAULT_URL, KEY_VAULT_URLS)"
            )
        if not parsed.version:
            return StepResult("event", "NoVersion", vault, parsed.name).log(logging.WARNING)
        message = RotateMessage(
            vault=vault,
            name=parsed.name,
            op_id=operation_id(vault, parsed.name, parsed.version, "rotate"),
            version=parsed.version,
            source="event",
        )
        await self.send(self.settings.rotate_queue, message)
        return StepResult("event", "Enqueued", vault, parsed.name, message.op_id, {"eventId": event_id}).log()

    # ------------------------------------------------------------ dispatch

    async def handle(self, step: str, body: str | bytes) -> StepResult:
        """Decode and run one message of `step`'s queue; an unreadable message is logged, counted and
        acknowledged (redelivering it could never help)."""
        try:
            if step == "event":
                return await self.event(body)
            message = decode(body)
            expected = {"scan": ScanMessage, "rotate": RotateMessage, "cleanup": CleanupMessage}[step]
            if not isinstance(message, expected):
                raise MessageError(f"a {message.type} message on the {step} queue")
            if isinstance(message, ScanMessage):
                return await self.scan(message)
            if isinstance(message, RotateMessage):
                return await self.rotate(message)
            return await self.cleanup(message)
        except MessageError as exc:
            POISONED[f"{step}:unreadable"] += 1
            return StepResult("poison", "Unreadable", details={"queue": step, "reason": str(exc)}).log(
                logging.ERROR
            )

    def poisoned(self, queue: str, body: str | bytes, dequeue_count: int | None = None) -> StepResult:
        """A message the host moved to `<queue>-poison`: one alert line naming the work, and a count."""
        POISONED[queue] += 1
        details: dict[str, Any] = {"queue": queue, "dequeueCount": dequeue_count}
        try:
            if queue == "events":
                details.update(_event_summary(body))
            else:
                message = decode(body)
                details.update(type=message.type, vault=message.vault, name=getattr(message, "name", None))
                details["opId"] = getattr(message, "op_id", None)
        except MessageError as exc:
            details["unreadable"] = str(exc)
        record = {"alert": "MessagePoisoned", **{k: v for k, v in details.items() if v is not None}}
        alert_log.warning("alert %s", json.dumps(record, sort_keys=True), extra={"alert": record})
        return StepResult(
            "poison", "Poisoned", details.get("vault"), details.get("name"), details.get("opId")
        )


def _event_summary(body: str | bytes) -> dict[str, Any]:
    """What a poisoned Key Vault event was about (an event carries names and versions, never a value)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise MessageError("the event is not JSON") from None
    if isinstance(document, list) and len(document) == 1:
        document = document[0]
    if not isinstance(document, Mapping):
        raise MessageError("the event must be a JSON object (Event Grid or CloudEvents schema)")
    raw = document.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}

    def text(value: Any) -> str | None:
        return str(value)[:200] if isinstance(value, (str, int, float)) and str(value).strip() else None

    return {
        "type": "event",
        "eventType": text(document.get("eventType") or document.get("type")),
        "eventId": text(document.get("id")),
        "vault": text(data.get("VaultName") or data.get("vaultName")),
        "name": text(data.get("ObjectName") or data.get("objectName") or document.get("subject")),
    }


async def default_fanout() -> Fanout:
    """The steps on the process's settings and outbox."""
    from ..settings import get_settings
    from .queues import process_outbox

    settings = get_settings()
    return Fanout(settings, process_outbox(settings))
