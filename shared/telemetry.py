"""OpenTelemetry for rotations, cleanup and sweeps (behind APP_TELEMETRY), and the hooks for notifications.

APP_TELEMETRY picks exactly one exporter path (never both, or everything is exported twice):

- ``off`` (default): nothing from opentelemetry or azure.monitor is imported; the hooks only keep the
  last outcome per secret in memory (for the status page) and hand events to notifications when those
  are configured.
- ``azure-monitor``: the app calls ``configure_azure_monitor`` itself on first use, with the managed
  identity (Entra-authenticated ingestion; the identity needs Monitoring Metrics Publisher) and
  ``APPLICATIONINSIGHTS_CONNECTION_STRING``. ``PYTHON_ENABLE_OPENTELEMETRY`` must then be unset: with it the
  worker configures Azure Monitor a second time, without the credential.
- ``worker``: ``PYTHON_ENABLE_OPENTELEMETRY=true`` makes the Python worker configure the exporter; the app
  only records through the global providers and never calls ``configure_azure_monitor``.

The engine needs one-line hooks only: ``@traced_rotation`` / ``@traced_sweep`` / ``@traced_cleanup`` on its
methods, ``listed(info, assessment)`` for each secret a sweep lists, and (optionally)
``note_rotation_type(policy.rotation_type)``. Every hook is fail-safe: telemetry or a notification never
fails, or changes the result of, a rotation. Names are in ``SPANS`` and ``METRICS``; a secret's name goes on
spans, never on a metric dimension (cardinality), and no value is ever recorded.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlparse

from .outcomes import NOTIFICATION_LISTENERS, Recent, forget, remember
from .outcomes import recent_outcomes as recent_outcomes  # the status page and tests read it here

if TYPE_CHECKING:  # never imported at run time unless telemetry is on
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

_log = logging.getLogger(__name__)

SETTING = "APP_TELEMETRY"
MODES = ("off", "azure-monitor", "worker")
INSTRUMENTATION = "kvrotator"

SPANS = {
    "rotation": "kvrotator.rotation",
    "sweep": "kvrotator.sweep",
    "cleanup": "kvrotator.cleanup",
    "poison": "kvrotator.queue.poisoned",
}
METRICS = {
    "rotations": "kvrotator.rotations",  # Counter {vault, outcome, type, trigger}
    "rotation_failures": "kvrotator.rotation.failures",  # Counter {vault, type, error_code}
    "rotation_duration": "kvrotator.rotation.duration",  # Histogram s {vault, outcome}
    "cleanups": "kvrotator.cleanups",  # Counter {vault, action, outcome}
    "throttled": "kvrotator.keyvault.throttled",  # Counter {vault, kind}: HTTP 429s a run saw
    "sweep_duration": "kvrotator.sweep.duration",  # Histogram s {vault, kind, complete}
    "days_to_expiry": "kvrotator.secret.days_to_expiry",  # Histogram d {vault, managed}
    "by_expiry": "kvrotator.secrets.by_expiry",  # Observable gauge {vault, window}
    "pending": "kvrotator.secrets.pending",  # Observable gauge {vault}: pending versions left
    "poisoned": "kvrotator.queue.poisoned",  # Counter {queue}
    "notifications": "kvrotator.notifications",  # Counter {channel, kind, outcome}
}
# Exclusive windows for secrets by days to expiry (the gauge's `window` dimension).
WINDOWS = ("expired", "0-7d", "7-30d", "30-90d", "90d+", "none")

P = ParamSpec("P")
R = TypeVar("R")


class TelemetryConfigError(ValueError):
    """APP_TELEMETRY and the worker's switches disagree; the message says which setting to change."""


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in {"1", "true", "yes", "on"}


def mode_from(env: Mapping[str, str] | None = None) -> str:
    """The telemetry mode the settings ask for; TelemetryConfigError when they contradict each other."""
    env = os.environ if env is None else env
    raw = (env.get(SETTING) or "off").strip().lower()
    if raw in ("", "false", "0", "none"):
        raw = "off"
    if raw not in MODES:
        raise TelemetryConfigError(f"App setting {SETTING}: expected one of {', '.join(MODES)}, got {raw!r}")
    worker_on = _truthy(env.get("PYTHON_ENABLE_OPENTELEMETRY"))
    if raw == "azure-monitor":
        if worker_on:
            raise TelemetryConfigError(
                f"App setting {SETTING}=azure-monitor and PYTHON_ENABLE_OPENTELEMETRY=true would export "
                f"everything twice: remove PYTHON_ENABLE_OPENTELEMETRY (the app then exports with its "
                f"managed identity), or set {SETTING}=worker to use the worker's configuration"
            )
        if not (env.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or "").strip():
            raise TelemetryConfigError(
                f"App setting {SETTING}=azure-monitor needs APPLICATIONINSIGHTS_CONNECTION_STRING (the "
                "Application Insights resource's connection string); set it, or set APP_TELEMETRY=off"
            )
    if raw == "worker" and not worker_on:
        raise TelemetryConfigError(
            f"App setting {SETTING}=worker needs PYTHON_ENABLE_OPENTELEMETRY=true (the worker configures the "
            f"exporter); set it, or use {SETTING}=azure-monitor"
        )
    return raw


# ----------------------------------------------------------------------------- recorder (OTel on)


def _vault_of(settings: Any) -> str:
    """The vault's short name: a low-cardinality metric dimension."""
    host = urlparse(str(getattr(settings, "vault_url", "") or "")).hostname or "unknown"
    return host.split(".", 1)[0] if not host.replace(".", "").isdigit() else host


class _Recorder:
    """Tracer and instruments on the given (or global) providers."""

    def __init__(self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.metrics import CallbackOptions, Observation

        self.trace = trace
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(INSTRUMENTATION)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(INSTRUMENTATION)
        self.rotations = meter.create_counter(METRICS["rotations"], "{rotation}", "Rotations by outcome")
        self.rotation_failures = meter.create_counter(
            METRICS["rotation_failures"], "{rotation}", "Failed rotations by error code"
        )
        self.rotation_duration = meter.create_histogram(
            METRICS["rotation_duration"], "s", "Time one rotation took"
        )
        self.cleanups = meter.create_counter(METRICS["cleanups"], "{action}", "Cleanup actions by outcome")
        self.throttled = meter.create_counter(
            METRICS["throttled"], "{response}", "HTTP 429 answers from Key Vault"
        )
        self.sweep_duration = meter.create_histogram(METRICS["sweep_duration"], "s", "Time one sweep took")
        self.days_to_expiry = meter.create_histogram(
            METRICS["days_to_expiry"], "d", "Days to expiry of each listed secret"
        )
        self.poisoned = meter.create_counter(METRICS["poisoned"], "{message}", "Messages moved to poison")
        self.notifications = meter.create_counter(
            METRICS["notifications"], "{notification}", "Notification deliveries by outcome"
        )
        self.by_expiry: dict[str, Counter[str]] = {}
        self.pending: dict[str, int] = {}

        def observe_expiry(_options: CallbackOptions) -> Iterator[Observation]:
            for vault, counts in list(self.by_expiry.items()):
                for window in WINDOWS:
                    yield Observation(counts.get(window, 0), {"vault": vault, "window": window})

        def observe_pending(_options: CallbackOptions) -> Iterator[Observation]:
            for vault, count in list(self.pending.items()):
                yield Observation(count, {"vault": vault})

        meter.create_observable_gauge(
            METRICS["by_expiry"],
            [observe_expiry],
            "{secret}",
            "Managed secrets by days to expiry (last sweep)",
        )
        meter.create_observable_gauge(
            METRICS["pending"], [observe_pending], "{version}", "Pending versions left after the last sweep"
        )

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
        clean = {k: v for k, v in attributes.items() if v is not None}
        with self.tracer.start_as_current_span(name, attributes=clean) as span:
            yield span

    def fail_span(self, span: Any, exc: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        # the type only: an exception's message may quote input, never a value, but keep spans terse
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.set_attribute("error.type", type(exc).__name__)


_recorder: _Recorder | None = None
_resolved = False
_injected = False


def _configure_azure_monitor() -> None:
    """The app's own exporter: Application Insights through the managed identity (sync credential)."""
    from azure.monitor.opentelemetry import configure_azure_monitor

    from .settings import get_settings

    settings = get_settings()
    if settings.credential == "default":
        from azure.identity import DefaultAzureCredential

        credential: Any = DefaultAzureCredential(managed_identity_client_id=settings.client_id)
    else:
        from azure.identity import ManagedIdentityCredential

        credential = (
            ManagedIdentityCredential(client_id=settings.client_id)
            if settings.client_id
            else ManagedIdentityCredential()
        )
    # Logs already reach Application Insights through the Functions host; exporting them here too would
    # duplicate every line. OTEL_LOGS_EXPORTER set to anything but "none" opts back in.
    os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
    configure_azure_monitor(
        connection_string=os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"],
        credential=credential,
        enable_live_metrics=False,
    )


def recorder() -> _Recorder | None:
    """The recorder when telemetry is on (configured on first use); None when off or misconfigured."""
    global _recorder, _resolved
    if _resolved:
        return _recorder
    _resolved = True
    try:
        mode = mode_from()
    except TelemetryConfigError as exc:
        _log.error("telemetry is off: %s", exc)
        return None
    if mode == "off":
        return None
    try:
        if mode == "azure-monitor":
            _configure_azure_monitor()
        _recorder = _Recorder(None, None)
        _log.info("telemetry on (%s)", mode)
    except Exception as exc:  # noqa: BLE001 - a missing package or a bad connection string must not stop rotations
        _log.error("telemetry is off: %s while configuring %s (%s)", type(exc).__name__, mode, SETTING)
        _recorder = None
    return _recorder


def use_providers(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    """Record on these providers (tests: in-memory exporters) instead of the settings' choice."""
    global _recorder, _resolved, _injected
    _recorder, _resolved, _injected = _Recorder(tracer_provider, meter_provider), True, True


def reset() -> None:
    """Forget the recorder and the recent outcomes (tests); the next hook reads the settings again."""
    global _recorder, _resolved, _injected
    _recorder, _resolved, _injected = None, False, False
    forget()


# ----------------------------------------------------------------------------- sweep collector


@dataclass
class _SweepCollector:
    """What one sweep listed, for the expiry gauges and the expiry notifications at its end."""

    started: datetime
    seen: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name → (VersionInfo, Assessment | None)
    rotated: set[str] = field(default_factory=set)  # names the rotation hook saw
    failures: list[Any] = field(default_factory=list)  # notification events, delivered at the end

    @property
    def listed(self) -> list[tuple[Any, Any]]:
        return list(self.seen.values())

    def version_of(self, name: str) -> str | None:
        info = self.seen.get(name, (None, None))[0]
        return getattr(info, "version", None)

    def type_of(self, name: str) -> str | None:
        policy = getattr(self.seen.get(name, (None, None))[1], "policy", None)
        return getattr(policy, "rotation_type", None)

    def by_expiry(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for info, assessment in self.seen.values():
            if assessment is not None:
                expiry = assessment.expires_on or info.expires_on
                counts[window_of(days_until(expiry, self.started))] += 1
        return counts


_SWEEP: contextvars.ContextVar[_SweepCollector | None] = contextvars.ContextVar(
    "kvrotator_sweep", default=None
)


@dataclass
class _RotationNote:
    rotation_type: str | None = None


_ROTATION: contextvars.ContextVar[_RotationNote | None] = contextvars.ContextVar(
    "kvrotator_rotation", default=None
)


def window_of(days: float | None) -> str:
    if days is None:
        return "none"
    if days <= 0:
        return "expired"
    if days <= 7:
        return "0-7d"
    if days <= 30:
        return "7-30d"
    if days <= 90:
        return "30-90d"
    return "90d+"


def days_until(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else round((moment - now).total_seconds() / 86400, 2)


def listed(info: Any, assessment: Any) -> None:
    """One secret a sweep listed (VersionInfo, and the policy's Assessment or None when unmanaged)."""
    collector = _SWEEP.get()
    if collector is None:
        return
    try:
        collector.seen[info.name] = (info, assessment)  # idempotent: a re-assessment replaces the listing's
    except Exception as exc:  # noqa: BLE001 - never let bookkeeping break a sweep
        _log.debug("telemetry.listed: %s", type(exc).__name__)


def note_rotation_type(rotation_type: str | None) -> None:
    """The rotator type of the rotation in progress (a metric dimension); optional."""
    note = _ROTATION.get()
    if note is not None and rotation_type:
        note.rotation_type = rotation_type


def _notifications_on() -> bool:
    from . import notifications

    return notifications.configured()


def _active() -> bool:
    """Whether any hook has work beyond remembering outcomes (cheap: env reads, no imports when off)."""
    return recorder() is not None or _notifications_on()


# ----------------------------------------------------------------------------- hooks: rotation


def _argument(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str, fits: Callable[[Any], bool]
) -> Any:
    """A hooked method's argument by keyword, else the first positional one that fits (after `self`): the
    hooks survive the engine reordering its parameters."""
    if name in kwargs:
        return kwargs[name]
    return next((a for a in args[1:] if fits(a)), None)


def _failed(outcome: str) -> bool:
    return outcome == "Failed"


def traced_rotation(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorates the engine's one-secret rotation ``(self, name, request, ...)`` → RotationResult (arguments
    found by keyword or by kind, in any order).

    A span per rotation; rotations by outcome and type; failures; duration; the outcome remembered for the
    status page; a failure notified (at the sweep's end inside a sweep, at once on demand). An exception
    propagates unchanged after it is recorded."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        engine = args[0] if args else None
        name = str(_argument(args, kwargs, "name", lambda a: isinstance(a, str)) or "")
        request = _argument(args, kwargs, "request", lambda a: hasattr(a, "trigger"))
        trigger = getattr(request, "trigger", None)
        rec = recorder()
        note = _RotationNote()
        token = _ROTATION.set(note)
        started = time.perf_counter()
        result: Any = None
        error: BaseException | None = None
        try:
            if rec is None:
                result = await fn(*args, **kwargs)
            else:
                with rec.span(SPANS["rotation"], {"secret.name": name, "rotation.trigger": trigger}) as span:
                    try:
                        result = await fn(*args, **kwargs)
                    except BaseException as exc:
                        rec.fail_span(span, exc)
                        raise
                    _annotate_rotation_span(rec, span, result)
            return result  # type: ignore[no-any-return]
        except BaseException as exc:
            error = exc
            raise
        finally:
            _ROTATION.reset(token)
            await _rotation_done(engine, name, trigger, note, result, error, time.perf_counter() - started)

    return wrapper


def _annotate_rotation_span(rec: _Recorder, span: Any, result: Any) -> None:
    outcome = getattr(getattr(result, "outcome", None), "value", None)
    span.set_attribute("rotation.outcome", str(outcome))
    for attr, key in (("version", "secret.version"), ("error_code", "error.code")):
        value = getattr(result, attr, None)
        if value:
            span.set_attribute(key, str(value))
    if outcome == "Failed":
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, str(getattr(result, "error_code", "") or "Failed")))


async def _rotation_done(
    engine: Any,
    name: str,
    trigger: str | None,
    note: _RotationNote,
    result: Any,
    error: BaseException | None,
    seconds: float,
) -> None:
    try:
        if error is not None and not isinstance(error, Exception):
            return  # cancelled or interrupted: not an outcome
        if result is not None and getattr(result, "dry_run", False):
            return
        if result is not None:
            outcome = str(result.outcome.value)
            code = result.error_code
            reason = result.reason
        else:
            outcome, code = "Failed", getattr(error, "code", None) or type(error).__name__
            reason = getattr(error, "message", None) or type(error).__name__
        now = datetime.now(UTC)
        remember(name, Recent(outcome, now, code, reason, trigger))
        collector = _SWEEP.get()
        if collector is not None:
            collector.rotated.add(name)
        rotation_type = note.rotation_type or (collector.type_of(name) if collector else None) or "unknown"
        settings = getattr(engine, "settings", None)
        vault = _vault_of(settings)
        rec = recorder()
        if rec is not None:
            rec.rotations.add(
                1, {"vault": vault, "outcome": outcome, "type": rotation_type, "trigger": trigger or ""}
            )
            rec.rotation_duration.record(seconds, {"vault": vault, "outcome": outcome})
            if _failed(outcome):
                rec.rotation_failures.add(
                    1, {"vault": vault, "type": rotation_type, "error_code": code or ""}
                )
        if not _failed(outcome) or not _notifications_on():
            return
        if error is not None and getattr(error, "status", 500) < 500:
            return  # the caller's mistake (not found, not configured): answered to the caller, not paged
        from . import notifications

        event = notifications.Event(
            kind=notifications.ROTATION_FAILED,
            secret=name,
            version=(collector.version_of(name) if collector else None) or getattr(result, "version", None),
            vault=vault,
            outcome=outcome,
            error_code=code,
            reason=reason,
            rotation_type=rotation_type,
            trace_id=current_trace_id(),
        )
        if collector is not None:
            collector.failures.append(event)
        else:
            await notifications.deliver_safely([event], settings=settings)
    except Exception as exc:  # noqa: BLE001 - telemetry never fails a rotation
        _log.warning(
            "telemetry: rotation hook failed (%s); the rotation's result is unchanged", type(exc).__name__
        )


# ----------------------------------------------------------------------------- hooks: sweep


def traced_sweep(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorates an engine's ``sweep(self, *, dry_run=False, ...)`` → SweepSummary (rotation or cleanup).

    A span per sweep; duration; 429s; pending versions left and secrets by days to expiry (gauges); then
    the notifications the sweep gathered (failures, expiry without a rotation policy, the daily digest).
    Dry runs (the plan, the status page) get a span only."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        engine = args[0] if args else None
        dry_run = bool(kwargs.get("dry_run", False))
        kind = "cleanup" if type(engine).__name__.lower().startswith("cleanup") else "rotation"
        rec = recorder()
        collector = None if dry_run or not _active() else _SweepCollector(datetime.now(UTC))
        token = _SWEEP.set(collector)
        started = time.perf_counter()
        summary: Any = None
        error: BaseException | None = None
        try:
            if rec is None:
                summary = await fn(*args, **kwargs)
            else:
                with rec.span(SPANS["sweep"], {"sweep.kind": kind, "sweep.dry_run": dry_run}) as span:
                    try:
                        summary = await fn(*args, **kwargs)
                    except BaseException as exc:
                        rec.fail_span(span, exc)
                        raise
                    for key in ("listed", "managed", "transactions", "throttled", "remaining"):
                        span.set_attribute(f"sweep.{key}", int(getattr(summary, key, 0) or 0))
                    span.set_attribute("sweep.complete", bool(getattr(summary, "listing_complete", True)))
            return summary  # type: ignore[no-any-return]
        except BaseException as exc:
            error = exc
            raise
        finally:
            _SWEEP.reset(token)
            if collector is not None:
                await _sweep_done(engine, kind, summary, collector, time.perf_counter() - started, error)

    return wrapper


async def _sweep_done(
    engine: Any,
    kind: str,
    summary: Any,
    collector: _SweepCollector,
    seconds: float,
    error: BaseException | None = None,
) -> None:
    try:
        settings = getattr(engine, "settings", None)
        vault = _vault_of(settings)
        rec = recorder()
        if rec is not None:
            complete = summary is not None and bool(summary.listing_complete)
            rec.sweep_duration.record(seconds, {"vault": vault, "kind": kind, "complete": complete})
            if summary is not None and summary.throttled:
                rec.throttled.add(int(summary.throttled), {"vault": vault, "kind": kind})
            if kind == "rotation" and summary is not None:
                for info, assessment in collector.listed:
                    expiry = (assessment.expires_on if assessment is not None else None) or info.expires_on
                    days = days_until(expiry, collector.started)
                    if days is not None:
                        rec.days_to_expiry.record(days, {"vault": vault, "managed": assessment is not None})
                if summary.listing_complete:  # a partial listing would under-count
                    rec.by_expiry[vault] = collector.by_expiry()
                left = summary.statuses.get("PendingRecovery", 0) - summary.outcomes.get("Resumed", 0)
                rec.pending[vault] = max(0, int(left))
        unrotated = _unrotated_failures(kind, summary, collector, vault, rec)
        if not _notifications_on():
            return
        from . import notifications

        if summary is None:  # the vault could not be listed: every rotation is stuck, say so
            if kind == "rotation" and isinstance(error, Exception):
                message = getattr(error, "message", None) or type(error).__name__
                event = notifications.Event(
                    kind=notifications.ROTATION_FAILED,
                    secret="*",
                    vault=vault,
                    outcome="SweepFailed",
                    error_code=getattr(error, "code", None) or type(error).__name__,
                    reason=f"the rotation sweep could not list the vault: {message}",
                )
                await notifications.deliver_safely([event], settings=settings)
            return

        events = list(collector.failures) + [_failure_event(f, vault, collector) for f in unrotated]
        if kind == "rotation":
            events += notifications.expiry_events(collector.listed, collector.started, vault, settings)
            digest = notifications.digest_event(summary, vault, settings)
            if digest is not None:
                events.append(digest)
        if events:
            await notifications.deliver_safely(events, settings=settings)
    except Exception as exc:  # noqa: BLE001 - telemetry never fails a sweep
        _log.warning("telemetry: sweep hook failed (%s); the sweep's result is unchanged", type(exc).__name__)


def _unrotated_failures(
    kind: str, summary: Any, collector: _SweepCollector, vault: str, rec: _Recorder | None
) -> list[dict[str, str]]:
    """Failures a rotation sweep decided without rotating (an unusable policy tag): counted and remembered
    like a failed rotation, since they need the same person."""
    if kind != "rotation" or summary is None:
        return []
    found = [e for e in summary.errors if e.get("name") not in collector.rotated and e.get("name") != "*"]
    now = datetime.now(UTC)
    for error in found:
        name = str(error.get("name"))
        remember(name, Recent("Failed", now, error.get("code"), error.get("reason"), "timer"))
        if rec is not None:
            rotation_type = collector.type_of(name) or "unknown"
            labels = {"vault": vault, "outcome": "Failed", "type": rotation_type, "trigger": "timer"}
            rec.rotations.add(1, labels)
            rec.rotation_failures.add(
                1, {"vault": vault, "type": rotation_type, "error_code": str(error.get("code") or "")}
            )
    return found


def _failure_event(error: dict[str, str], vault: str, collector: _SweepCollector) -> Any:
    from . import notifications

    name = str(error.get("name"))
    return notifications.Event(
        kind=notifications.ROTATION_FAILED,
        secret=name,
        vault=vault,
        version=collector.version_of(name),
        outcome="Failed",
        error_code=error.get("code"),
        reason=error.get("reason"),
        rotation_type=collector.type_of(name),
    )


# ----------------------------------------------------------------------------- hooks: cleanup action


def traced_cleanup(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorates the cleanup engine's ``_act(self, ..., step, dry_run, ...)``: a span and a count each."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        engine = args[0] if args else None
        step = _argument(args, kwargs, "step", lambda a: hasattr(a, "action") and hasattr(a, "outcome"))
        dry_run = bool(_argument(args, kwargs, "dry_run", lambda a: isinstance(a, bool)))
        rec = None if dry_run else recorder()
        action = str(getattr(getattr(step, "action", None), "value", "unknown"))
        name = str(getattr(step, "name", ""))
        if rec is None:
            result = await fn(*args, **kwargs)
        else:
            attributes = {
                "secret.name": name,
                "cleanup.action": action,
                "secret.version": getattr(step, "version", None),
            }
            with rec.span(SPANS["cleanup"], attributes) as span:
                result = await fn(*args, **kwargs)
                span.set_attribute(
                    "cleanup.outcome", str(getattr(getattr(step, "outcome", None), "value", ""))
                )
        if not dry_run:
            try:
                outcome = str(getattr(getattr(step, "outcome", None), "value", "unknown"))
                if rec is not None:
                    rec.cleanups.add(
                        1,
                        {
                            "vault": _vault_of(getattr(engine, "settings", None)),
                            "action": action,
                            "outcome": outcome,
                        },
                    )
                if outcome == "Failed":
                    remember(
                        name,
                        Recent(
                            f"Cleanup{outcome}",
                            datetime.now(UTC),
                            getattr(step, "error_code", None),
                            getattr(step, "reason", None),
                            "cleanup",
                        ),
                    )
            except Exception as exc:  # noqa: BLE001 - bookkeeping only
                _log.debug("telemetry.cleanup: %s", type(exc).__name__)
        return result

    return wrapper


# ----------------------------------------------------------------------------- poison messages, queues


async def poisoned(
    queue: str,
    *,
    message_id: str | None = None,
    dequeue_count: int | None = None,
    secret: str | None = None,
    reason: str | None = None,
    settings: Any = None,
) -> None:
    """A message moved to a poison queue: a count, a span, and a notification (for the queue handlers)."""
    try:
        rec = recorder()
        if rec is not None:
            rec.poisoned.add(1, {"queue": queue})
            with rec.span(
                SPANS["poison"],
                {
                    "queue": queue,
                    "message.id": message_id,
                    "secret.name": secret,
                    "message.dequeue_count": dequeue_count,
                },
            ):
                pass
        if not _notifications_on():
            return
        from . import notifications

        event = notifications.Event(
            kind=notifications.POISONED,
            secret=secret or "",
            version=message_id,
            vault=_vault_of(settings),
            reason=reason or f"message {message_id or '?'} on {queue} failed {dequeue_count or '?'} times",
            detail={"queue": queue, "messageId": message_id, "dequeueCount": dequeue_count},
            trace_id=current_trace_id(),
        )
        await notifications.deliver_safely([event], settings=settings)
    except Exception as exc:  # noqa: BLE001 - the poison handler must go on
        _log.warning("telemetry: poison hook failed (%s)", type(exc).__name__)


def count_notification(channel: str, kind: str, outcome: str) -> None:
    rec = recorder()
    if rec is not None:
        rec.notifications.add(1, {"channel": channel, "kind": kind, "outcome": outcome})


NOTIFICATION_LISTENERS.append(count_notification)  # notifications report deliveries to shared.outcomes


def current_trace_id() -> str | None:
    """The current trace id (hex) when telemetry is on, for logs and notifications."""
    if recorder() is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def inject_trace_context(message: dict[str, Any]) -> dict[str, Any]:
    """Put the current `traceparent` (and `tracestate`) into a queue message's JSON body (producer side)."""
    if recorder() is None:
        return message
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    message.update({k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")})
    return message


@contextmanager
def trace_context_from(message: Mapping[str, Any]) -> Iterator[None]:
    """Continue the producer's trace while handling a queue message (consumer side); no-op when off."""
    if recorder() is None or not message.get("traceparent"):
        yield
        return
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {k: str(message[k]) for k in ("traceparent", "tracestate") if message.get(k)}
    token = context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        yield
    finally:
        context.detach(token)
