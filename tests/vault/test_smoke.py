"""The emulator answers the real SDKs (sync and aio) through the shared fixtures."""

from __future__ import annotations

import secrets


async def test_set_and_get(kv, vault_control) -> None:
    value = secrets.token_urlsafe(16)
    written = await kv.call("set_secret", "smoke", value)
    assert (await kv.call("get_secret", "smoke")).value == value
    assert written.properties.version and len(written.properties.version) == 32
    assert vault_control.stats()["operations"]["SetSecret"] == 1
