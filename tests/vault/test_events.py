"""Key Vault events (Event Grid schema) delivered to a webhook, following the emulator clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from aiohttp import web

from localdev.vault.client import ControlClient
from localdev.vault.server import VaultConfig, start_vault_in_thread
from tests.fixtures.vault import aclose_client, make_aio_client


class Webhook:
    """A stand-in for the Functions host's Event Grid endpoint: records what arrives."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], list[dict]]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.json()))
        self.arrived.set()
        return web.Response(status=200)

    async def next_events(self, count: int, timeout: float = 5) -> list[dict]:
        deadline = time.monotonic() + timeout
        while sum(len(d[1]) for d in self.deliveries) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), max(0.01, deadline - time.monotonic()))
        return [event for _, batch in self.deliveries for event in batch]


async def _serve(webhook: Webhook) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/runtime/webhooks/eventgrid", webhook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/runtime/webhooks/eventgrid?functionName=keyvault_events"


async def test_new_version_near_expiry_and_expired(tmp_path, monkeypatch) -> None:
    webhook = Webhook()
    runner, url = await _serve(webhook)
    vault = start_vault_in_thread(
        VaultConfig(
            state_dir=tmp_path,
            port=0,
            identity_port=0,
            memory=True,
            events_url=url,
            events_check_interval=3600,
        )
    )
    control = ControlClient(vault.vault_url, vault.ca_bundle, vault.control_key)
    for key, value in vault.env().items():
        monkeypatch.setenv(key, value)
    client = make_aio_client(vault)
    try:
        expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=40)
        secret = await client.set_secret("rotating", "v", expires_on=expires)
        [created] = await webhook.next_events(1)
        headers = webhook.deliveries[0][0]
        assert headers["aeg-event-type"] == "Notification"
        assert created["eventType"] == "Microsoft.KeyVault.SecretNewVersionCreated"
        assert created["subject"] == "rotating"
        assert created["topic"].endswith("/providers/Microsoft.KeyVault/vaults/localvault")
        assert created["data"] == {
            "Id": secret.id,
            "VaultName": "localvault",
            "ObjectType": "Secret",
            "ObjectName": "rotating",
            "Version": secret.properties.version,
            "NBF": None,
            "EXP": float(expires.timestamp()),
        }
        assert created["dataVersion"] == "1" and created["metadataVersion"] == "1"

        await asyncio.to_thread(control.advance_clock, 11 * 86400)  # 29 days left: near expiry
        events = await webhook.next_events(2)
        assert events[1]["eventType"] == "Microsoft.KeyVault.SecretNearExpiry"
        assert events[1]["data"]["Version"] == secret.properties.version
        await asyncio.to_thread(control.advance_clock, 86400)
        assert await asyncio.to_thread(control.check_events) == 0  # once per version
        await asyncio.to_thread(control.advance_clock, 30 * 86400)
        events = await webhook.next_events(3)
        assert events[2]["eventType"] == "Microsoft.KeyVault.SecretExpired"
        assert len(events) == 3
    finally:
        await aclose_client(client)
        control.close()
        await asyncio.to_thread(vault.stop)
        await runner.cleanup()


async def test_unreachable_webhook_never_blocks_the_vault(tmp_path, monkeypatch, unused_tcp_port) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/runtime/webhooks/eventgrid?functionName=keyvault_events"
    vault = start_vault_in_thread(
        VaultConfig(
            state_dir=tmp_path,
            port=0,
            identity_port=0,
            memory=True,
            events_url=url,
            events_attempts=2,
            events_retry_delay=0.01,
        )
    )
    for key, value in vault.env().items():
        monkeypatch.setenv(key, value)
    client = make_aio_client(vault)
    try:
        started = time.monotonic()
        for i in range(5):
            await client.set_secret(f"quiet-{i}", "v")
        assert time.monotonic() - started < 3
        publisher = vault.runtime.publisher
        deadline = time.monotonic() + 5
        while publisher.failed < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert publisher.failed == 5 and publisher.delivered == 0
    finally:
        await aclose_client(client)
        await asyncio.to_thread(vault.stop)


async def test_a_webhook_that_refuses_the_key_gets_advice_about_the_key(
    tmp_path, monkeypatch, caplog
) -> None:
    """A host with auth on answers 401 to an events URL without `code=`: the log must say so, not 'is it running?'."""

    class RefusingWebhook(Webhook):
        async def handle(self, request: web.Request) -> web.Response:
            return web.Response(status=401)

    runner, url = await _serve(RefusingWebhook())
    vault = start_vault_in_thread(
        VaultConfig(
            state_dir=tmp_path, port=0, identity_port=0, memory=True, events_url=url, events_attempts=1
        )
    )
    for key, value in vault.env().items():
        monkeypatch.setenv(key, value)
    client = make_aio_client(vault)
    try:
        with caplog.at_level(logging.WARNING, logger="localdev.vault.events"):
            await client.set_secret("refused", "v")
            deadline = time.monotonic() + 5
            while vault.runtime.publisher.failed < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        [line] = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
        assert "HTTP 401" in line and "code=" in line and "--no-auth" in line
        assert "running?" not in line
    finally:
        await aclose_client(client)
        await asyncio.to_thread(vault.stop)
        await runner.cleanup()
