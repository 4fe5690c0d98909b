"""Service limits and injected faults, seen through the SDK's own retry policy."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from tests.fixtures.vault import make_sync_client


def test_throttling_429_then_sdk_retry_recovers(sync_client, vault_control) -> None:
    """A full window answers 429 with Retry-After; the SDK waits and its retry lands in the next window."""
    sync_client.set_secret("hot", "v")
    vault_control.set_throttling(True, transactions_per_10s=3, retry_after=0.3, window_seconds=0.25)
    for _ in range(4):
        assert sync_client.get_secret("hot").value == "v"
    stats = vault_control.stats()
    assert stats["statuses"]["429"] == 1
    assert stats["operations"]["GetSecret"] == 5  # 4 calls, one of them retried


async def test_aio_throttling_recovers(aio_client, vault_control) -> None:
    await aio_client.set_secret("hot", "v")
    vault_control.set_throttling(True, transactions_per_10s=2, retry_after=0.3, window_seconds=0.25)
    for _ in range(3):
        assert (await aio_client.get_secret("hot")).value == "v"
    assert vault_control.stats()["statuses"]["429"] == 1


def test_throttled_get_is_retried_by_the_sdk(sync_client, vault_control) -> None:
    sync_client.set_secret("hot", "v")
    vault_control.set_faults("GetSecret", 429, rate=1.0, retry_after=0.05)
    with pytest.raises(HttpResponseError) as info:
        make = sync_client.get_secret
        make("hot", retry_total=2)
    assert info.value.status_code == 429
    assert vault_control.stats()["operations"]["GetSecret"] == 3  # first try + 2 retries


def test_window_throttling_recovers_with_retry_after(sync_client, vault_control) -> None:
    sync_client.set_secret("w", "v")
    vault_control.set_throttling(True, transactions_per_10s=3, retry_after=0.1)
    for _ in range(3):
        sync_client.get_secret("w")
    with pytest.raises(HttpResponseError) as info:
        sync_client.get_secret("w", retry_total=1)
    assert info.value.status_code == 429
    assert info.value.response.headers["Retry-After"] == "0.1"
    assert vault_control.stats()["statuses"]["429"] == 2


def test_create_limit_is_separate(sync_client, vault_control) -> None:
    vault_control.set_throttling(True, transactions_per_10s=1000, creates_per_10s=2, retry_after=None)
    sync_client.set_secret("c1", "v")
    sync_client.set_secret("c2", "v")
    with pytest.raises(HttpResponseError) as info:
        sync_client.set_secret("c3", "v", retry_total=0)
    assert info.value.status_code == 429 and "Retry-After" not in info.value.response.headers
    assert sync_client.get_secret("c1").value == "v"


def test_sdk_retry_recovers_from_intermittent_throttling(vault, vault_env, vault_control) -> None:
    """The next three gets are refused with a bare 429 (no Retry-After): the SDK's status retries absorb them."""
    with make_sync_client(vault, retry_backoff_factor=0.001) as client:
        client.set_secret("flaky", "v")
        vault_control.set_faults("GetSecret", 429, count=3)
        assert client.get_secret("flaky").value == "v"
        assert vault_control.stats()["operations"]["GetSecret"] == 4
        assert vault_control.stats()["statuses"]["429"] == 3
        assert vault_control.faults() == []  # a rule with a count ends itself
        vault_control.set_faults(None, 429, count=4)
        with pytest.raises(HttpResponseError) as info:  # 1 try + 3 status retries, all refused
            client.get_secret("flaky")
        assert info.value.status_code == 429


def test_random_fault_rate(vault, vault_env, vault_control) -> None:
    """30% of transactions fail with 429; a call fails only if 11 tries in a row are refused (p ~ 2e-6)."""
    with make_sync_client(vault, retry_backoff_factor=0.001, retry_status=10, retry_total=10) as client:
        client.set_secret("flaky", "v")
        vault_control.set_faults(None, 429, rate=0.3)
        for _ in range(40):
            assert client.get_secret("flaky").value == "v"
    statuses = vault_control.stats()["statuses"]
    assert statuses.get("429", 0) >= 1 and statuses["200"] >= 41  # p(no 429 in 40) = 0.7**40 ~ 6e-7


def test_fault_with_latency_and_503(sync_client, vault_control) -> None:
    sync_client.set_secret("slow", "v")
    vault_control.set_faults("GetSecret", 0, rate=1.0, latency=0.2)
    started = time.monotonic()
    sync_client.get_secret("slow")
    assert time.monotonic() - started >= 0.2
    vault_control.set_faults("GetSecret", 503, rate=1.0, retry_after=0.01)
    with pytest.raises(HttpResponseError) as info:
        sync_client.get_secret("slow", retry_total=0)
    assert info.value.status_code == 503
    vault_control.clear_faults()
    assert sync_client.get_secret("slow").value == "v"


def test_dropped_connection(sync_client, vault_control) -> None:
    sync_client.set_secret("dropped", "v")
    vault_control.set_faults("GetSecret", 0, rate=1.0, drop=True)
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        sync_client.get_secret("dropped", retry_total=0)
    assert vault_control.stats()["dropped"] == 1
    vault_control.clear_faults()
    assert sync_client.get_secret("dropped").value == "v"


def test_global_latency(sync_client, vault_control) -> None:
    sync_client.set_secret("lat", "v")
    vault_control.set_latency(0.05)
    started = time.monotonic()
    for _ in range(3):
        sync_client.get_secret("lat")
    assert time.monotonic() - started >= 0.15


def test_fault_rule_validation(vault_control) -> None:
    with pytest.raises(RuntimeError, match="unknown operation"):
        vault_control.set_faults("GetSecretz", 500)
    with pytest.raises(RuntimeError, match="rate"):
        vault_control.set_faults("GetSecret", 500, rate=2)
