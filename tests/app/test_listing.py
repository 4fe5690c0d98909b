"""The pager's wire listing (GetSecrets / GetSecretVersions read straight into VersionInfo) against the SDK's
own models, on the local vault through the app's client: the same fields, the same pages, the same errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import VaultCall, VaultErrorCodes, VaultThrottled, from_vault_error
from shared.vault.pager import one_page, pages, read_history, version_listing
from shared.vault.versions import VersionInfo
from tests.fixtures.rotation import fresh_calls

pytestmark = pytest.mark.usefixtures("rotation_env")


async def _sdk_listing(client: Any) -> list[VersionInfo]:
    return [VersionInfo.from_properties(p) async for p in client.list_properties_of_secrets()]


async def _wire_listing(client: Any, name: str | None = None) -> tuple[list[VersionInfo], int]:
    calls = fresh_calls()
    listed: list[VersionInfo] = []
    async for page in pages(calls, "GetSecrets", version_listing(client, name), vault_url=client.vault_url):
        listed.extend(page)
    return listed, calls.transactions


async def test_every_field_reads_as_the_sdk_reads_it_across_pages(kv_client: Any, vault_control: Any) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    await kv_client.set_secret(
        "l-full",
        "x",
        content_type="text/plain",
        tags={"Owner": "team-a", "Rotate": "on"},
        not_before=soon,
        expires_on=soon + timedelta(days=30),
    )
    await kv_client.set_secret("l-off", "x", enabled=False)
    await kv_client.set_secret("l-bare", "x")
    vault_control.seed(
        [{"count": 60, "prefix": "l-seed-", "digits": 3, "tags": {"K": "v"}, "expires_in_seconds": 86400}]
    )

    wire, transactions = await _wire_listing(kv_client)
    sdk = await _sdk_listing(kv_client)

    assert wire == sdk and len(wire) == 63
    assert transactions == 3  # 25 + 25 + 13: one transaction per page, as the SDK pages
    full = next(v for v in wire if v.name == "l-full")
    assert (full.content_type, full.not_before, full.expires_on) == (
        "text/plain",
        soon,
        soon + timedelta(days=30),
    )
    assert full.version is None and full.id == f"{kv_client.vault_url.rstrip('/')}/secrets/l-full"
    assert not next(v for v in wire if v.name == "l-off").enabled
    assert all(v.created and v.updated and v.created.tzinfo is UTC for v in wire)


async def test_versions_read_as_the_sdk_reads_them(kv_client: Any) -> None:
    for k in range(27):
        await kv_client.set_secret("l-many", f"v{k}", tags={"n": str(k)}, enabled=k % 5 != 0)
    sdk = [
        VersionInfo.from_properties(p) async for p in kv_client.list_properties_of_secret_versions("l-many")
    ]
    wire, transactions = await _wire_listing(kv_client, "l-many")
    assert wire == sdk and len(wire) == 27 and transactions == 2
    assert all(v.version for v in wire) and len({v.version for v in wire}) == 27
    history = await read_history(fresh_calls(), kv_client, "l-many")
    assert history.latest is not None and history.latest.tags["n"] == "26"
    assert (await read_history(fresh_calls(), kv_client, "l-never-written")).versions == ()


async def test_one_page_follows_the_vaults_next_link(kv_client: Any, vault_control: Any) -> None:
    vault_control.seed([{"count": 30, "prefix": "l-p-", "digits": 2}])
    calls = fresh_calls()
    first, token = await one_page(
        calls, "GetSecrets", version_listing(kv_client), vault_url=kv_client.vault_url
    )
    rest, last = await one_page(
        calls,
        "GetSecrets",
        version_listing(kv_client),
        vault_url=kv_client.vault_url,
        continuation_token=token,
    )
    assert token and last is None and (len(first), len(rest)) == (25, 5)
    assert [v.name for v in first + rest] == [f"l-p-{k:02d}" for k in range(30)]


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, 1), (403, None), (500, None), (400, None), (401, None)]
)
async def test_errors_are_raised_and_mapped_as_the_sdk_raises_them(
    kv_client: Any, vault_control: Any, monkeypatch: pytest.MonkeyPatch, status: int, retry_after: int | None
) -> None:
    await kv_client.set_secret("l-one", "x")  # the challenge and token are paid before the fault
    vault_control.set_faults("GetSecrets", status, 1.0, retry_after=retry_after)
    with pytest.raises(Exception) as sdk_raised:
        await _sdk_listing(kv_client)
    with pytest.raises(Exception) as wire_raised:
        await _wire_listing(kv_client)
    sdk, wire = sdk_raised.value, wire_raised.value
    assert type(wire) is type(sdk)
    assert VaultErrorCodes.of(wire) == VaultErrorCodes.of(sdk) and VaultErrorCodes.of(wire).status == status
    mapped = from_vault_error(wire, VaultCall(None, "metadata"))
    assert type(mapped) is type(from_vault_error(sdk, VaultCall(None, "metadata")))
    assert (mapped.retry_after, isinstance(mapped, VaultThrottled)) == (
        from_vault_error(sdk, VaultCall(None, "metadata")).retry_after,
        status == 429,
    )
