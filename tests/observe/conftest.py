"""Fixtures for telemetry, notifications and the status page.

- `otel`: in-memory span exporter and metric reader injected into shared.telemetry (no global providers).
- `receiver`: a local HTTPS receiver (aiohttp, TLS from localdev/vault/tls.py) that records what it is sent,
  answers a scripted sequence of statuses, and checks Standard Webhooks signatures for /webhook.
- `notify_env`: channel URLs and the signing key stored in the local Key Vault, NOTIFY_* naming them.
- `hooked`: the engine and cleanup carry the telemetry hooks (applied here only until the engine does).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.notifications import signing


@dataclass
class Otel:
    spans: Any
    reader: Any

    def finished(self, name: str | None = None) -> list[Any]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) per point of `metric`: a sum's or gauge's value, a histogram's (count, sum)."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name != metric:
                        continue
                    for point in m.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = (point.count, point.sum)
                        found.append((dict(point.attributes), value))
        return found

    def total(self, metric: str, **where: Any) -> float:
        return sum(
            v if not isinstance(v, tuple) else v[0]
            for attrs, v in self.points(metric)
            if all(attrs.get(k) == w for k, w in where.items())
        )


@pytest.fixture
def otel() -> Iterator[Otel]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared import telemetry

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.use_providers(tracer_provider, meter_provider)
    try:
        yield Otel(exporter, reader)
    finally:
        telemetry.reset()
        meter_provider.shutdown()
        tracer_provider.shutdown()


@pytest.fixture(autouse=True)
def _fresh_observers() -> Iterator[None]:
    from shared import notifications, telemetry

    telemetry.reset()
    notifications.use_notifier(None)
    yield
    telemetry.reset()
    notifications.use_notifier(None)


def new_key() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    base_url: str
    ca_bundle: str
    key: str
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)  # statuses to answer, in order; then 202
    body_text: str = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == f"/{path}"]


@pytest.fixture
async def receiver(tmp_path: Any) -> AsyncIterator[Receiver]:
    from aiohttp import web

    from localdev.vault.tls import ensure_certificates

    tls = ensure_certificates(tmp_path / "receiver-tls")
    state = Receiver("", str(tls.ca_cert), new_key())

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        ok = None
        if request.path == "/webhook":
            ok = signing.verify(state.key, dict(request.headers), body, now=int(time.time()))
        state.received.append(Received(request.path, dict(request.headers), body, ok))
        status = state.script.pop(0) if state.script else 202
        if request.path == "/webhook" and not ok:
            status = 401
        return web.Response(status=status, text=state.body_text)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "localhost", 0, ssl_context=tls.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base_url = f"https://localhost:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def notify_env(
    receiver: Receiver, kv_client: Any, vault_control: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Receiver]:
    # vault_control resets the vault when first used: before the channels are stored, never after
    """The three channels set up the production way: URLs and the key in Key Vault, settings naming them."""
    stored = {
        "notify-webhook-url": receiver.url("webhook"),
        "notify-webhook-key": receiver.key,
        "notify-teams-url": receiver.url("teams"),
        "notify-slack-url": receiver.url("slack"),
    }
    await asyncio.gather(*(kv_client.set_secret(k, v) for k, v in stored.items()))
    for setting, name in {
        "NOTIFY_WEBHOOK_URL_SECRET": "notify-webhook-url",
        "NOTIFY_WEBHOOK_KEY_SECRET": "notify-webhook-key",
        "NOTIFY_TEAMS_URL_SECRET": "notify-teams-url",
        "NOTIFY_SLACK_URL_SECRET": "notify-slack-url",
    }.items():
        monkeypatch.setenv(setting, name)
    monkeypatch.setenv("NOTIFY_CA_BUNDLE", receiver.ca_bundle)
    monkeypatch.setenv("NOTIFY_DEDUP", "memory")
    from shared.notifications import dedup

    monkeypatch.setattr(dedup, "_memory", dedup.MemoryDedup())
    yield receiver


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engines' telemetry hooks: asserted present once the engine carries them, patched in until then."""
    from shared import telemetry
    from shared.cleanup import CleanupEngine
    from shared.rotation.engine import RotationEngine

    for cls, method, hook in (
        (RotationEngine, "_rotate_serialized", telemetry.traced_rotation),
        (RotationEngine, "sweep", telemetry.traced_sweep),
        (CleanupEngine, "sweep", telemetry.traced_sweep),
        (CleanupEngine, "_act", telemetry.traced_cleanup),
    ):
        current = getattr(cls, method)
        if getattr(current, "__wrapped__", None) is None:
            monkeypatch.setattr(cls, method, hook(current))
    import inspect

    from shared.rotation import engine

    if "telemetry.listed(" not in inspect.getsource(RotationEngine.sweep):
        real_assess = engine.assess

        def assess_and_note(info: Any, now: Any, settings: Any) -> Any:
            assessment = real_assess(info, now, settings)
            telemetry.listed(info, assessment)
            return assessment

        monkeypatch.setattr(engine, "assess", assess_and_note)
