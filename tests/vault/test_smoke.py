"""The emulator answers the real SDKs (sync and aio) through the shared fixtures."""

from __future__ import annotations

import secrets


def test_sync_set_and_get(sync_client, vault_control) -> None:
    value = secrets.token_urlsafe(16)
    written = sync_client.set_secret("smoke", value)
    assert sync_client.get_secret("smoke").value == value
    assert written.properties.version and len(written.properties.version) == 32
    assert vault_control.stats()["operations"]["SetSecret"] == 1


async def test_aio_set_and_get(aio_client, vault_control) -> None:
    value = secrets.token_urlsafe(16)
    await aio_client.set_secret("smoke-aio", value)
    assert (await aio_client.get_secret("smoke-aio")).value == value
