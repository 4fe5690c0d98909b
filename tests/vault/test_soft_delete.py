"""Soft delete as the service does it: pollers against delete/recover latency, scheduled purge on the clock."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import ResourceNotFoundError


def test_delete_poller_waits_for_the_delete(sync_client, vault_control) -> None:
    vault_control.set_operation_latency(delete=0.3)
    sync_client.set_secret("slow-delete", "v")
    started = time.monotonic()
    poller = sync_client.begin_delete_secret("slow-delete", _polling_interval=0.05)
    assert poller.result().name == "slow-delete"  # result() does not wait, as documented
    poller.wait()
    assert time.monotonic() - started >= 0.3
    assert poller.done()
    polls = vault_control.stats()["operations"]["GetDeletedSecret"]
    assert polls >= 2  # at least one 404 before the 200
    assert vault_control.stats()["statuses"]["404"] >= 1


def test_recover_poller_waits_for_the_recovery(sync_client, vault_control) -> None:
    vault_control.set_operation_latency(recover=0.5)
    sync_client.set_secret("slow-recover", "v")
    sync_client.begin_delete_secret("slow-recover", _polling_interval=0).wait()
    poller = sync_client.begin_recover_deleted_secret("slow-recover", _polling_interval=0.05)
    started = time.monotonic()
    try:
        sync_client.get_secret("slow-recover")
        assert time.monotonic() - started >= 0.5, "the secret was back before the recover latency passed"
    except ResourceNotFoundError:
        pass  # not yet, as expected
    poller.wait()
    assert sync_client.get_secret("slow-recover").value == "v"


async def test_aio_delete_and_recover_await_their_polls(aio_client, vault_control) -> None:
    vault_control.set_operation_latency(delete=0.2, recover=0.2)
    await aio_client.set_secret("aio-slow", "v")
    started = time.monotonic()
    await aio_client.delete_secret("aio-slow", _polling_interval=0.05)
    assert time.monotonic() - started >= 0.2
    assert (await aio_client.get_deleted_secret("aio-slow")).name == "aio-slow"
    await aio_client.recover_deleted_secret("aio-slow", _polling_interval=0.05)
    assert (await aio_client.get_secret("aio-slow")).value == "v"


def test_scheduled_purge_follows_the_clock(sync_client, vault_control) -> None:
    vault_control.set_soft_delete(retention_days=7)
    sync_client.set_secret("short-lived", "v")
    deleted = sync_client.begin_delete_secret("short-lived", _polling_interval=0).result()
    vault_control.advance_clock(6 * 86400)
    assert sync_client.get_deleted_secret("short-lived").scheduled_purge_date == deleted.scheduled_purge_date
    result = vault_control.advance_clock(86400 + 1)
    assert result["purged"] == 1
    with pytest.raises(ResourceNotFoundError):
        sync_client.get_deleted_secret("short-lived")
    assert sync_client.set_secret("short-lived", "again").name == "short-lived"  # the name is free again


def test_purge_protection_still_purges_on_schedule(sync_client, vault_control) -> None:
    vault_control.set_soft_delete(retention_days=90, purge_protection=True)
    sync_client.set_secret("protected", "v")
    sync_client.begin_delete_secret("protected", _polling_interval=0).wait()
    vault_control.advance_clock(90 * 86400 + 1)
    assert list(sync_client.list_deleted_secrets()) == []


def test_clock_shapes_new_timestamps(sync_client, vault_control) -> None:
    vault_control.advance_clock(10 * 86400)
    created = sync_client.set_secret("later", "v").properties.created_on
    assert created.timestamp() - time.time() > 10 * 86400 - 60


def test_reset_restores_startup_settings(sync_client, vault_control) -> None:
    vault_control.set_soft_delete(retention_days=7, purge_protection=True)
    vault_control.advance_clock(3600)
    vault_control.set_latency(0.01)
    sync_client.set_secret("gone", "v")
    vault_control.reset()
    assert list(sync_client.list_properties_of_secrets()) == []
    stats = vault_control.stats()
    assert stats["operations"].get("GetSecrets") == 1 and stats["total"] == 1
    assert sync_client.set_secret("fresh", "v").properties.recovery_level == "Recoverable+Purgeable"
    assert abs(vault_control.advance_clock(0)["offset_seconds"]) < 1e-9
