"""Telemetry: APP_TELEMETRY picks exactly one exporter path; off imports nothing; spans and metrics of real
rotations, cleanups and sweeps against the local Key Vault, read from in-memory exporters; trace context
through a queue message; hooks never change or fail a rotation."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import telemetry
from shared.telemetry import METRICS, SPANS, TelemetryConfigError, mode_from
from tests.fixtures.rotation import seed
from tests.observe.conftest import Otel, Receiver

REPO = Path(__file__).resolve().parents[2]
POLICY = {"ValidityPeriodDays": "60"}


# ----------------------------------------------------------------------------- the setting


def test_mode_defaults_to_off_and_contradictions_name_the_settings() -> None:
    assert mode_from({}) == "off" and mode_from({"APP_TELEMETRY": " OFF "}) == "off"
    cs = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000"}
    assert mode_from({"APP_TELEMETRY": "azure-monitor", **cs}) == "azure-monitor"
    assert mode_from({"APP_TELEMETRY": "worker", "PYTHON_ENABLE_OPENTELEMETRY": "true"}) == "worker"
    with pytest.raises(TelemetryConfigError, match=r"PYTHON_ENABLE_OPENTELEMETRY.*twice"):
        mode_from({"APP_TELEMETRY": "azure-monitor", "PYTHON_ENABLE_OPENTELEMETRY": "true", **cs})
    with pytest.raises(TelemetryConfigError, match="APPLICATIONINSIGHTS_CONNECTION_STRING"):
        mode_from({"APP_TELEMETRY": "azure-monitor"})
    with pytest.raises(TelemetryConfigError, match="needs PYTHON_ENABLE_OPENTELEMETRY=true"):
        mode_from({"APP_TELEMETRY": "worker"})
    with pytest.raises(TelemetryConfigError, match="expected one of off, azure-monitor, worker"):
        mode_from({"APP_TELEMETRY": "otlp"})


PROBE = """
import asyncio, json, sys
import function_app
from shared import telemetry

class Engine:
    settings = None
    @telemetry.traced_rotation
    async def rotate(self, name, request):
        return None

asyncio.run(Engine().rotate("x", None))
telemetry.listed(None, None)
loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor")))
print(json.dumps({"loaded": loaded, "modules": len(sys.modules)}))
"""


def _probe(env: dict[str, str]) -> dict[str, Any]:
    clean = {
        k: v for k, v in __import__("os").environ.items() if not k.startswith(("APP_TELEMETRY", "NOTIFY_"))
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_with_telemetry_off_nothing_from_opentelemetry_or_azure_monitor_is_imported() -> None:
    off = _probe({})
    assert off["loaded"] == []
    bad = _probe({"APP_TELEMETRY": "azure-monitor", "PYTHON_ENABLE_OPENTELEMETRY": "true"})
    assert bad["loaded"] == []  # a contradiction turns telemetry off (logged), it never half-configures
    on = _probe({"APP_TELEMETRY": "worker", "PYTHON_ENABLE_OPENTELEMETRY": "true"})
    assert "opentelemetry.trace" in on["loaded"]  # the probe can see an import when there is one


def test_azure_monitor_mode_configures_once_with_the_managed_identity(
    monkeypatch: pytest.MonkeyPatch, vault_env: dict[str, str]
) -> None:
    # Application Insights ingestion cannot run here: the distro's configure call is recorded instead.
    import azure.monitor.opentelemetry as distro
    from azure.identity import ManagedIdentityCredential

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kw: calls.append(kw))
    monkeypatch.setenv("APP_TELEMETRY", "azure-monitor")
    monkeypatch.setenv(
        "APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=0;IngestionEndpoint=https://x/"
    )
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.delenv("OTEL_LOGS_EXPORTER", raising=False)
    from shared.settings import get_settings

    get_settings.cache_clear()
    assert telemetry.recorder() is not None and telemetry.recorder() is not None
    [call] = calls
    assert call["connection_string"].startswith("InstrumentationKey=0")
    assert isinstance(call["credential"], ManagedIdentityCredential)
    assert call["enable_live_metrics"] is False
    import os

    assert os.environ["OTEL_LOGS_EXPORTER"] == "none"  # logs already reach App Insights through the host
    get_settings.cache_clear()


def test_worker_mode_never_calls_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.monitor.opentelemetry as distro

    calls: list[Any] = []
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kw: calls.append(kw))
    monkeypatch.setenv("APP_TELEMETRY", "worker")
    monkeypatch.setenv("PYTHON_ENABLE_OPENTELEMETRY", "true")
    assert telemetry.recorder() is not None and calls == []


# ----------------------------------------------------------------------------- spans and metrics, real engine


async def test_a_sweep_and_its_rotations_are_spans_and_metrics(
    otel: Otel, hooked: None, kv_client: Any, make_engine: Any, vault_clock: Any
) -> None:
    now = vault_clock.now()
    await seed(
        kv_client,
        [
            dict(name="due-a", value="v1", tags=POLICY, expires_on=now + timedelta(days=3)),
            dict(name="due-b", value="v2", tags={**POLICY, "RotationType": "random"}, expires_on=now),
            dict(name="fine", value="v3", tags=POLICY, expires_on=now + timedelta(days=50)),
            dict(name="bad", value="v4", tags={"ValidityPeriodDays": "ninety"}),
        ],
    )
    summary = await make_engine().sweep()
    assert summary.outcomes["Rotated"] == 2

    [sweep] = otel.finished(SPANS["sweep"])
    rotations = otel.finished(SPANS["rotation"])
    assert sorted(s.attributes["secret.name"] for s in rotations) == ["due-a", "due-b"]
    assert all(s.parent is not None and s.parent.span_id == sweep.context.span_id for s in rotations)
    assert all(s.context.trace_id == sweep.context.trace_id for s in rotations)
    assert {s.attributes["rotation.outcome"] for s in rotations} == {"Rotated"}
    assert sweep.attributes["sweep.kind"] == "rotation" and sweep.attributes["sweep.listed"] == 4

    assert otel.total(METRICS["rotations"], outcome="Rotated", type="random", trigger="timer") == 2
    assert otel.total(METRICS["rotation_duration"], outcome="Rotated") == 2  # histogram count
    assert otel.total(METRICS["sweep_duration"], kind="rotation") == 1
    assert otel.total(METRICS["rotation_failures"]) == 1  # the unusable policy tag
    windows = {a["window"]: v for a, v in otel.points(METRICS["by_expiry"])}
    assert windows["0-7d"] == 1 and windows["30-90d"] == 1 and windows["expired"] == 1
    assert otel.total(METRICS["pending"]) == 0
    recent = telemetry.recent_outcomes()
    assert recent["due-a"].outcome == "Rotated" and recent["bad"].outcome == "Failed"


async def test_a_failed_rotation_is_an_error_span_a_failure_metric_and_429s_are_counted(
    otel: Otel, hooked: None, kv_client: Any, make_engine: Any, vault_clock: Any, vault_control: Any
) -> None:
    await seed(kv_client, [dict(name="doomed", value="v", tags=POLICY, expires_on=vault_clock.now())])
    vault_control.set_faults("SetSecret", 500, rate=1.0)
    try:
        summary = await make_engine().sweep()
    finally:
        vault_control.clear_faults()
    assert summary.outcomes == {"Failed": 1}
    [span] = otel.finished(SPANS["rotation"])
    assert span.status.status_code.name == "ERROR" and span.attributes["error.code"]
    assert otel.total(METRICS["rotation_failures"], type="random") == 1

    await seed(
        kv_client,
        [dict(name=f"busy{i}", value="v", tags=POLICY, expires_on=vault_clock.now()) for i in range(10)],
    )
    vault_control.set_faults("UpdateSecret", 429, rate=0.5, retry_after=None)  # 20+ calls: some 429 for sure
    try:
        summary = await make_engine().sweep()
    finally:
        vault_control.clear_faults()
    assert summary.throttled > 0
    assert otel.total(METRICS["throttled"], kind="rotation") == summary.throttled


async def test_cleanup_actions_are_spans_and_counted_by_outcome(
    otel: Otel,
    hooked: None,
    kv_client: Any,
    make_engine: Any,
    make_cleanup: Any,
    vault_clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("CLEANUP_KEEP_VERSIONS", "1")
    get_settings.cache_clear()
    await seed(kv_client, [dict(name="old", value="v", tags=POLICY, expires_on=vault_clock.now())])
    await make_engine().sweep()
    vault_clock.days(3)  # past the 2-day overlap: the superseded version is due for revocation
    summary = await make_cleanup().sweep()
    assert summary.outcomes == {"DisableVersion:Done": 1}, summary.to_dict()
    [span] = otel.finished(SPANS["cleanup"])
    assert (
        span.attributes["cleanup.action"] == "DisableVersion" and span.attributes["cleanup.outcome"] == "Done"
    )
    assert otel.total(METRICS["cleanups"], action="DisableVersion", outcome="Done") == 1
    assert otel.total(METRICS["sweep_duration"], kind="cleanup") == 1


async def test_dry_runs_record_no_rotation_metrics(
    otel: Otel, hooked: None, kv_client: Any, make_engine: Any, vault_clock: Any
) -> None:
    await seed(kv_client, [dict(name="due", value="v", tags=POLICY, expires_on=vault_clock.now())])
    await make_engine().sweep(dry_run=True)
    assert otel.points(METRICS["rotations"]) == [] and otel.points(METRICS["sweep_duration"]) == []
    assert [s.attributes["sweep.dry_run"] for s in otel.finished(SPANS["sweep"])] == [True]


async def test_a_broken_recorder_never_changes_or_fails_a_rotation(
    otel: Otel,
    hooked: None,
    kv_client: Any,
    make_engine: Any,
    vault_clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed(kv_client, [dict(name="due", value="v", tags=POLICY, expires_on=vault_clock.now())])
    recorder = telemetry.recorder()
    assert recorder is not None

    class Broken:
        def add(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("exporter down")

        record = add

    monkeypatch.setattr(recorder, "rotations", Broken())
    monkeypatch.setattr(recorder, "sweep_duration", Broken())
    summary = await make_engine().sweep()
    assert summary.outcomes == {"Rotated": 1}


async def test_a_rotation_failure_in_a_sweep_is_notified_once_per_day(
    hooked: None, notify_env: Receiver, kv_client: Any, make_engine: Any, vault_clock: Any, vault_control: Any
) -> None:
    await seed(kv_client, [dict(name="doomed", value="v", tags=POLICY, expires_on=vault_clock.now())])
    vault_control.set_faults("SetSecret", 500, rate=1.0)
    try:
        await make_engine().sweep()
        await make_engine().sweep()  # the same failure an hour later: not announced again
    finally:
        vault_control.clear_faults()
    assert sorted(r.path for r in notify_env.received) == ["/slack", "/teams", "/webhook"]
    [hook] = notify_env.on("webhook")
    assert hook.signature_ok
    data = hook.json["data"]
    assert hook.json["type"] == "kvrotator.rotation.failed" and hook.json["subject"] == "doomed"
    assert data["outcome"] == "Failed" and data["error"]["code"] and data["rotationType"] == "random"


# ----------------------------------------------------------------------------- queue hops


def test_trace_context_rides_in_a_queue_message(otel: Otel) -> None:
    recorder = telemetry.recorder()
    assert recorder is not None
    with recorder.span("producer", {}) as producer:
        message = telemetry.inject_trace_context({"name": "s1"})
    assert message["traceparent"].split("-")[1] == f"{producer.get_span_context().trace_id:032x}"
    with telemetry.trace_context_from(message), recorder.span("consumer", {}):
        pass
    [consumer] = otel.finished("consumer")
    assert consumer.context.trace_id == producer.get_span_context().trace_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.get_span_context().span_id


async def test_poisoned_messages_are_counted_and_notified(otel: Otel, notify_env: Receiver) -> None:
    await telemetry.poisoned("kv-rotate", message_id="m-1", dequeue_count=5, secret="app-x", reason="boom")
    assert otel.total(METRICS["poisoned"], queue="kv-rotate") == 1
    [hook] = notify_env.on("webhook")
    assert hook.json["type"] == "kvrotator.queue.poisoned"
    assert hook.json["data"]["detail"] == {"queue": "kv-rotate", "messageId": "m-1", "dequeueCount": 5}


async def test_the_poison_queue_functions_count_and_notify(otel: Otel, notify_env: Receiver) -> None:
    """blueprints.queues' poison function → shared.fanout.poisoned → the metric and one notification."""
    from azure.functions.queue import QueueMessage  # the worker's concrete type (it carries dequeue_count)

    from blueprints.queues import fanout_rotate_poison
    from shared.fanout import RotateMessage, encode
    from shared.settings import get_settings

    vault = get_settings().vault_url
    body = encode(RotateMessage(vault=vault, name="app-poisoned", op_id="d" * 32, version="e" * 32))
    await fanout_rotate_poison(QueueMessage(id="q-1", body=body.encode(), dequeue_count=5))
    assert otel.total(METRICS["poisoned"], queue="kv-rotate") == 1
    [hook] = notify_env.on("webhook")
    assert hook.json["type"] == "kvrotator.queue.poisoned" and hook.json["data"]["secret"] == "app-poisoned"
    assert hook.json["data"]["detail"] == {"queue": "kv-rotate", "messageId": "d" * 32, "dequeueCount": 5}


async def test_a_sweep_announces_unrotated_expiry_once_and_the_digest_once_a_day(
    hooked: None,
    notify_env: Receiver,
    kv_client: Any,
    make_engine: Any,
    vault_clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_DIGEST", "true")
    now = vault_clock.now()
    await seed(
        kv_client,
        [
            dict(name="plain-soon", value="v", expires_on=now + timedelta(days=5)),
            dict(name="plain-gone", value="v", expires_on=now - timedelta(days=1)),
            dict(name="plain-later", value="v", expires_on=now + timedelta(days=90)),
            dict(name="managed-soon", value="v", tags=POLICY, expires_on=now + timedelta(days=50)),
        ],
    )
    await make_engine().sweep()
    await make_engine().sweep()
    hooks = notify_env.on("webhook")
    kinds = sorted((h.json["type"], h.json["subject"]) for h in hooks)
    assert kinds == [
        ("kvrotator.digest", "*"),
        ("kvrotator.secret.expired", "plain-gone"),
        ("kvrotator.secret.near_expiry", "plain-soon"),
    ]
    assert all(h.signature_ok for h in hooks)
    digest = next(h.json["data"] for h in hooks if h.json["type"] == "kvrotator.digest")
    assert digest["detail"]["Managed secrets"] == 1 and digest["detail"]["Status UpToDate"] == 1
    assert len(notify_env.on("teams")) == len(notify_env.on("slack")) == 3


async def test_a_sweep_that_cannot_list_the_vault_is_announced(
    hooked: None, notify_env: Receiver, make_engine: Any, vault_control: Any
) -> None:
    vault_control.set_faults("GetSecrets", 403, rate=1.0)
    try:
        with pytest.raises(Exception) as caught:
            await make_engine().sweep()
    finally:
        vault_control.clear_faults()
    [hook] = notify_env.on("webhook")
    assert hook.json["subject"] == "*" and hook.json["data"]["outcome"] == "SweepFailed"
    assert hook.json["data"]["error"]["code"] == getattr(caught.value, "code", type(caught.value).__name__)
    assert "could not list the vault" in hook.json["data"]["error"]["reason"]


async def test_an_on_demand_failure_is_notified_at_once_and_a_callers_mistake_is_not(
    hooked: None, notify_env: Receiver, kv_client: Any, make_engine: Any, vault_clock: Any, vault_control: Any
) -> None:
    from shared.rotation.engine import RotationRequest

    await seed(kv_client, [dict(name="ondemand", value="v", tags=POLICY, expires_on=vault_clock.now())])
    with pytest.raises(Exception) as missing:
        await make_engine().rotate("no-such-secret", RotationRequest(trigger="http", force=True))
    assert getattr(missing.value, "status", 0) == 404
    assert notify_env.received == []  # answered to the caller; nobody is paged
    vault_control.set_faults("SetSecret", 500, rate=1.0)
    try:
        with pytest.raises(Exception) as failed:
            await make_engine().rotate("ondemand", RotationRequest(trigger="http", force=True))
    finally:
        vault_control.clear_faults()
    assert getattr(failed.value, "status", 0) >= 500
    [hook] = notify_env.on("webhook")
    assert hook.json["subject"] == "ondemand" and hook.json["data"]["error"]["code"] == failed.value.code
    assert telemetry.recent_outcomes()["ondemand"].trigger == "http"


def test_the_engines_carry_the_telemetry_hooks_themselves() -> None:
    """Production code, not the test fixture, wires telemetry in (the fixture only patches what is missing)."""
    import inspect

    from shared.cleanup import CleanupEngine
    from shared.rotation.engine import RotationEngine

    for method in (
        RotationEngine._rotate_serialized,
        RotationEngine.sweep,
        CleanupEngine.sweep,
        CleanupEngine._act,
    ):
        assert getattr(method, "__wrapped__", None) is not None, method.__qualname__
    assert "telemetry.listed(" in inspect.getsource(RotationEngine.sweep.__wrapped__)  # type: ignore[attr-defined]
