"""The storage clients (the outbox's queues, the rotation lease's blobs, the local host's listener) run on
the app's one transport: proxies read once from the environment, never per request (aiohttp's per-request
lookups cost a third of the inline sweep's time in bench/fanout.py). Real Azurite, real SDK clients."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.transport import client_options, environment_proxies


def test_proxies_are_read_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxies("https://account.queue.core.windows.net") is None
    assert "proxies" not in client_options("https://account.queue.core.windows.net")

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,.internal.example")
    assert environment_proxies("https://account.queue.core.windows.net") == {
        "https": "http://proxy.example:3128"
    }
    assert environment_proxies("http://storage.example:10001") == {"http": "http://plain-proxy.example:3128"}
    assert environment_proxies("http://127.0.0.1:10001/devstoreaccount1") is None  # NO_PROXY
    assert environment_proxies("https://kv.internal.example") is None
    assert client_options("https://account.queue.core.windows.net")["proxies"] == {
        "https": "http://proxy.example:3128"
    }


@pytest.fixture
def no_per_request_env_lookup(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """aiohttp's per-request proxy and netrc lookups, made to record (and fail) if anything calls them."""
    import aiohttp.client
    import aiohttp.helpers

    calls: list[str] = []

    def forbidden(*_: Any, **__: Any) -> Any:
        calls.append("env lookup")
        raise AssertionError("a per-request environment lookup (trust_env) ran")

    monkeypatch.setattr(aiohttp.helpers, "get_env_proxy_for_url", forbidden)
    monkeypatch.setattr(aiohttp.client, "get_env_proxy_for_url", forbidden, raising=False)
    monkeypatch.setattr(aiohttp.helpers, "netrc_from_env", forbidden)
    monkeypatch.setattr(aiohttp.client, "netrc_from_env", forbidden, raising=False)
    return calls


async def test_the_outbox_and_the_listener_send_and_receive_without_env_lookups(
    azurite_queues: str, no_per_request_env_lookup: list[str]
) -> None:
    from localdev.host.queues import queue_service as listener_service
    from shared.fanout.queues import StorageOutbox, queue_service
    from shared.settings import load_settings

    settings = load_settings(
        {"KEY_VAULT_URL": "https://a.vault.azure.net", "AzureWebJobsStorage": azurite_queues}
    )
    queue = f"transport-{uuid.uuid4().hex[:8]}"
    outbox = StorageOutbox(lambda: queue_service(settings))
    listener = listener_service("AzureWebJobsStorage", {"AzureWebJobsStorage": azurite_queues})
    try:
        await outbox.send(queue, '{"type": "probe"}')
        received = [m async for m in listener.get_queue_client(queue).receive_messages(max_messages=1)]
    finally:
        await outbox.close()
        await listener.close()
    assert len(received) == 1
    assert no_per_request_env_lookup == []


async def test_the_rotation_lease_runs_without_env_lookups(
    azurite_queues: str, no_per_request_env_lookup: list[str]
) -> None:
    from shared.locks import close_lease_lock, lease_lock_for
    from shared.settings import load_settings

    settings = load_settings(
        {
            "KEY_VAULT_URL": "https://a.vault.azure.net",
            "AzureWebJobsStorage": azurite_queues,
            "ROTATION_LOCK": "blob",
        }
    )
    lock = await lease_lock_for(settings)
    assert lock is not None
    try:
        async with lock.hold(f"transport-{uuid.uuid4().hex[:8]}"):
            pass
    finally:
        await close_lease_lock()
    assert no_per_request_env_lookup == []


async def test_the_local_host_closes_the_apps_storage_clients_at_stop(azurite_queues: str) -> None:
    """At stop the local host closes every process-wide client the app built on its loop (in Azure the
    worker just exits); left open, each aiohttp session is reported as unclosed when the host exits."""
    import shared.fanout.queues as fanout_queues
    import shared.locks as locks
    from localdev.__main__ import _close_app_client
    from shared.settings import load_settings

    settings = load_settings(
        {
            "KEY_VAULT_URL": "https://a.vault.azure.net",
            "AzureWebJobsStorage": azurite_queues,
            "ROTATION_LOCK": "blob",
        }
    )
    await fanout_queues.process_outbox(settings).send(f"closing-{uuid.uuid4().hex[:8]}", '{"type": "probe"}')
    lock = await locks.lease_lock_for(settings)
    assert lock is not None
    async with lock.hold(f"closing-{uuid.uuid4().hex[:8]}"):
        pass
    assert fanout_queues._outbox is not None and locks._lease is not None

    await _close_app_client()

    assert fanout_queues._outbox is None
    assert locks._lease is None
