"""One local vault process serving several vaults (`--vaults K`), and the test controls' bulk seed.

Each vault has its own port, store, throttle, stats, faults, latency, controls and VaultName; they share the
CA, the identity endpoint and the token authority, so one managed-identity token works for every vault.
Everything goes through real HTTPS and the real SDKs; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from localdev.vault.client import ControlClient
from localdev.vault.server import ThreadedVault, VaultConfig, start_vault_in_thread
from tests.fixtures.vault import TEST_CLIENT_OPTIONS
from tests.vault.test_events import Webhook, _serve

DAY = 86_400


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedVault]:
    running = start_vault_in_thread(
        VaultConfig(state_dir=tmp_path, port=0, identity_port=0, memory=True, vaults=3, throttling=True)
    )
    for key, value in running.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield running
    finally:
        running.stop()


def _controls(running: ThreadedVault) -> list[ControlClient]:
    return [ControlClient(m.vault_url, running.ca_bundle, running.control_key) for m in running.members]


def _sync_client(running: ThreadedVault, url: str) -> Any:
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        url, ManagedIdentityCredential(), connection_verify=running.ca_bundle, **TEST_CLIENT_OPTIONS
    )


def test_three_vaults_share_ca_and_identity_and_keep_their_own_state(fleet: ThreadedVault) -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    urls = fleet.vault_urls
    assert len(urls) == 3 and len(set(urls)) == 3 and urls[0] == fleet.vault_url
    assert [m.name for m in fleet.members] == ["localvault", "localvault2", "localvault3"]
    env = fleet.env()
    assert env["KEY_VAULT_URL"] == urls[0] and env["KEY_VAULT_URLS"] == ",".join(urls)
    written = dict(line.split("=", 1) for line in (fleet.state_dir / "vault.env").read_text().splitlines())
    assert written == env

    # one token from the one identity endpoint works for every vault
    token = requests.get(
        fleet.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": fleet.identity_header},
        timeout=10,
    ).json()["access_token"]
    for url in urls:
        answer = requests.put(
            f"{url}/secrets/shared-name",
            params={"api-version": "7.5"},
            json={"value": f"in {url}"},
            headers={"Authorization": f"Bearer {token}"},
            verify=fleet.ca_bundle,
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["id"].startswith(f"{url}/secrets/shared-name/")

    controls = _controls(fleet)
    clients = [_sync_client(fleet, url) for url in urls]
    try:
        # own stores: one name, three secrets; a secret only in vault 2 is not in vault 3
        assert [c.get_secret("shared-name").value for c in clients] == [f"in {url}" for url in urls]
        clients[1].set_secret("only-in-two", "x")
        with pytest.raises(ResourceNotFoundError):
            clients[2].get_secret("only-in-two")

        # own stats
        before = [c.stats()["operations"].get("GetSecret", 0) for c in controls]
        clients[0].get_secret("shared-name")
        after = [c.stats()["operations"].get("GetSecret", 0) for c in controls]
        assert [a - b for a, b in zip(after, before, strict=True)] == [1, 0, 0]

        # own faults: vault 3 fails every read, the others answer
        controls[2].set_faults("GetSecret", 403, rate=1.0)
        with pytest.raises(HttpResponseError) as refused:
            clients[2].get_secret("shared-name")
        assert refused.value.status_code == 403
        assert clients[1].get_secret("shared-name").value == f"in {urls[1]}"
        assert controls[0].faults() == [] and len(controls[2].faults()) == 1

        # own throttling: vault 2's create budget of 2 per window is spent; vault 1 still creates
        controls[1].set_throttling(True, creates_per_10s=2, retry_after=None, window_seconds=60)
        clients[1].set_secret("t-1", "x")
        clients[1].set_secret("t-2", "x")
        no_retry = _sync_client(fleet, urls[1])
        no_retry._client._config.retry_policy.total_retries = 0  # see the 429 itself
        with pytest.raises(HttpResponseError) as throttled:
            no_retry.set_secret("t-3", "x")
        assert throttled.value.status_code == 429
        clients[0].set_secret("t-3", "x")
        assert controls[0].stats()["statuses"].get("429", 0) == 0

        # own latency: vault 1's requests wait 0.3 s; the others' setting is untouched
        controls[0].set_latency(0.3)
        started = time.perf_counter()
        clients[0].get_secret("shared-name")
        assert time.perf_counter() - started >= 0.3
        assert [m.runtime.api.latency for m in fleet.members] == [0.3, 0.0, 0.0]

        # reset of one vault leaves the others alone
        controls[0].reset()
        with pytest.raises(ResourceNotFoundError):
            clients[0].get_secret("shared-name")
        assert clients[1].get_secret("shared-name").value == f"in {urls[1]}"
    finally:
        for c in clients:
            c.close()
        for c in controls:
            c.close()


def test_one_vault_process_still_writes_no_vault_list(tmp_path: Path) -> None:
    running = start_vault_in_thread(VaultConfig(state_dir=tmp_path, port=0, identity_port=0, memory=True))
    try:
        assert "KEY_VAULT_URLS" not in running.env() and running.vault_urls == [running.vault_url]
        assert [m.name for m in running.members] == ["localvault"]
    finally:
        running.stop()


async def test_each_vault_names_itself_in_its_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    webhook = Webhook()
    runner, url = await _serve(webhook)
    running = await asyncio.to_thread(
        start_vault_in_thread,
        VaultConfig(state_dir=tmp_path, port=0, identity_port=0, memory=True, vaults=2, events_url=url),
    )
    for key, value in running.env().items():
        monkeypatch.setenv(key, value)
    try:
        for vault_url in running.vault_urls:

            def write(vault_url: str = vault_url) -> None:
                with _sync_client(running, vault_url) as client:
                    client.set_secret("evented", "x")

            await asyncio.to_thread(write)
        events = await webhook.next_events(2)
        by_vault = {e["data"]["VaultName"]: e for e in events}
        assert set(by_vault) == {"localvault", "localvault2"}
        for member in running.members:
            event = by_vault[member.name]
            assert event["topic"].endswith(f"/vaults/{member.name}")
            assert event["data"]["Id"].startswith(f"{member.vault_url}/secrets/evented/")
    finally:
        await asyncio.to_thread(running.stop)
        await runner.cleanup()


def test_seed_inserts_groups_with_their_tags_and_times_and_never_returns_a_value(
    fleet: ThreadedVault,
) -> None:
    from shared.rotation.policy import SecretStatus, assess
    from shared.settings import load_settings
    from shared.vault.versions import VersionInfo

    control = _controls(fleet)[1]
    now = control.advance_clock(0)["now"]
    answer = control.seed(
        [
            {
                "count": 30,
                "prefix": "due-",
                "tags": {"ValidityPeriodDays": "60"},
                "expires_in_seconds": 10 * DAY,
                "value_length": 40,
            },
            {"count": 50, "prefix": "fresh-", "start": 7, "digits": 3, "tags": {"ValidityPeriodDays": "60"}},
            {"count": 5, "prefix": "old-", "created_offset_seconds": -45 * DAY, "content_type": "text/plain"},
        ]
    )
    assert answer["seeded"] == 85
    assert answer["groups"] == [
        {"count": 30, "first": "due-000000", "last": "due-000029"},
        {"count": 50, "first": "fresh-007", "last": "fresh-056"},
        {"count": 5, "first": "old-000000", "last": "old-000004"},
    ]
    stats = control.stats()
    assert stats["seeded"] == 85 and stats["total"] == 0  # not transactions
    assert _controls(fleet)[0].stats()["seeded"] == 0  # another vault's seed

    settings = load_settings({"KEY_VAULT_URL": fleet.members[1].vault_url})
    with _sync_client(fleet, fleet.members[1].vault_url) as client:
        listed = {p.name: p for p in client.list_properties_of_secrets()}
        assert len(listed) == 85
        due = listed["due-000003"]
        assert due.tags == {"ValidityPeriodDays": "60"} and due.enabled
        assert due.expires_on == dt.datetime.fromtimestamp(int(now) + 10 * DAY, dt.UTC)
        assert abs(due.created_on.timestamp() - now) < 5 and due.updated_on == due.created_on
        old = listed["old-000004"]
        assert abs(old.created_on.timestamp() - (now - 45 * DAY)) < 5 and old.content_type == "text/plain"
        verdicts = {
            name: assess(VersionInfo.from_properties(p), dt.datetime.now(dt.UTC), settings)
            for name, p in listed.items()
        }
        assert {n for n, a in verdicts.items() if a and a.status is SecretStatus.DUE} == {
            f"due-{i:06d}" for i in range(30)
        }
        assert all(verdicts[f"fresh-{i:03d}"].status is SecretStatus.UP_TO_DATE for i in range(7, 57))
        assert all(verdicts[f"old-{i:06d}"] is None for i in range(5))  # untagged: not managed
        values = [client.get_secret(name).value for name in ("due-000000", "due-000001", "fresh-007")]
    assert [len(v) for v in values] == [40, 40, 32] and len(set(values)) == 3  # generated, each its own
    assert not any(v in str(answer) for v in values)


@pytest.mark.parametrize(
    ("groups", "field"),
    [
        ([], "groups"),
        ([{"prefix": "x-"}], "groups[0].count is required"),
        ([{"count": 0}], "groups[0].count"),
        ([{"count": 2, "colour": "red"}], "groups[0]: unknown field(s) colour"),
        ([{"count": 2, "tags": {"a": 1}}], "groups[0].tags"),
        ([{"count": 2}, {"count": 2, "value_length": 30_000}], "groups[1].value_length"),
        ([{"count": 2, "expires_in_seconds": "soon"}], "groups[0].expires_in_seconds"),
        ([{"count": 2, "prefix": "bad_name-"}], "is not 1-127 letters"),
        ([{"count": 2, "prefix": "a-"}, {"count": 2, "prefix": "a-"}], "named twice"),
    ],
)
def test_seed_refuses_bad_groups_naming_the_field_and_writes_nothing(
    fleet: ThreadedVault, groups: list[dict[str, Any]], field: str
) -> None:
    control = _controls(fleet)[0]
    with pytest.raises(RuntimeError) as refused:
        control.seed(groups)
    assert " 400 " in str(refused.value) and field in str(refused.value)
    assert control.stats()["seeded"] == 0
    assert fleet.members[0].runtime.store.list_secrets(None, 25)[0] == []


def test_seed_refuses_a_name_the_vault_holds_and_writes_none_of_the_batch(fleet: ThreadedVault) -> None:
    control = _controls(fleet)[0]
    with _sync_client(fleet, fleet.vault_url) as client:
        client.set_secret("s-000002", "taken")
        with pytest.raises(RuntimeError) as refused:
            control.seed([{"count": 5, "prefix": "s-"}])
        assert "'s-000002' exists already" in str(refused.value)
        assert [p.name for p in client.list_properties_of_secrets()] == ["s-000002"]
        assert client.get_secret("s-000002").value == "taken"


def test_a_seed_of_a_sqlite_vault_survives_a_restart(tmp_path: Path) -> None:
    config = VaultConfig(state_dir=tmp_path, port=0, identity_port=0, vaults=2)
    running = start_vault_in_thread(config)
    try:
        second = running.members[1]
        ControlClient(second.vault_url, running.ca_bundle, running.control_key).seed(
            [{"count": 1000, "prefix": "kept-", "tags": {"ValidityPeriodDays": "60"}}]
        )
    finally:
        running.stop()
    assert (tmp_path / "vault2.sqlite3").is_file()
    again = start_vault_in_thread(config)
    try:
        first, second = (m.runtime.store for m in again.members)
        assert len(list(first.all_records())) == 0
        records = list(second.all_records())
        assert len(records) == 1000 and records[0].current.tags == {"ValidityPeriodDays": "60"}
        page, marker = second.list_secrets(None, 25)
        assert [r.name for r in page][:2] == ["kept-000000", "kept-000001"] and marker is not None
    finally:
        again.stop()


def test_cli_serves_several_vaults(tmp_path: Path) -> None:
    from tests.vault.test_cli import _start, _wait_env

    process = _start(tmp_path, "--memory", "--vaults", "2")
    try:
        env = _wait_env(tmp_path, process)
        urls = env["KEY_VAULT_URLS"].split(",")
        assert len(urls) == 2 and urls[0] == env["KEY_VAULT_URL"]
        for i, url in enumerate(urls):
            health = requests.get(f"{url}/_emulator/health", verify=env["KEY_VAULT_CA_BUNDLE"], timeout=5)
            assert health.json()["vault_url"] == url
            control = ControlClient.for_state_dir(tmp_path, vault=i)
            assert control.base == f"{url}/_emulator"
            control.close()
        with pytest.raises(ValueError, match="serves 2 vault"):
            ControlClient.for_state_dir(tmp_path, vault=2)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert "# vault localvault2: " in output and process.returncode == 0
