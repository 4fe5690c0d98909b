"""Where the local vault disagreed with Key Vault, or with itself under a misbehaving client (issue 9).

- the versions of a name the vault never held: 200 with an empty list (the service's answer), not 404;
- a signed token whose `aud` is a JSON list: 401 like any other wrong audience, not a 500;
- a client that goes away mid-request: one INFO line, no ERROR, no traceback, no 500 counted;
- `drop_response`: the write commits and the answer is lost ("Key Vault accepted it, the response never came");
- seeded faults hit the same transactions on every run.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlparse

import jwt
import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from localdev.vault.auth import ISSUER, VAULT_RESOURCE
from localdev.vault.instrumentation import FaultPlan, FaultRule


async def test_versions_of_a_never_created_name_are_an_empty_list(kv, raw) -> None:
    assert await kv.call("list_properties_of_secret_versions", "never-created") == []
    response = raw.call("GET", "/secrets/never-created/versions")
    assert response.status_code == 200, response.text
    assert response.json() == {"value": [], "nextLink": None}


async def test_versions_of_a_purged_name_are_an_empty_list_and_of_a_deleted_one_404(kv, raw) -> None:
    await kv.call("set_secret", "gone-soon", "v")
    await kv.call("delete_secret", "gone-soon")
    assert raw.call("GET", "/secrets/gone-soon/versions").status_code == 404  # held, but soft-deleted
    await kv.call("purge_deleted_secret", "gone-soon")
    assert raw.call("GET", "/secrets/gone-soon/versions").json() == {"value": [], "nextLink": None}


def _signed(vault: Any, **claims: Any) -> str:
    now = int(time.time())
    identity = vault.runtime.authority.find()
    body = {
        "aud": VAULT_RESOURCE,
        "iss": ISSUER,
        "iat": now,
        "nbf": now - 60,
        "exp": now + 600,
        "oid": identity.object_id,
        "appid": identity.client_id,
        **claims,
    }
    return jwt.encode(body, vault.runtime.authority.signing_key, algorithm="RS256")


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": [VAULT_RESOURCE]},
        {"aud": [VAULT_RESOURCE, "https://storage.azure.com"]},
        {"aud": {"resource": VAULT_RESOURCE}},
        {"oid": ["not", "a", "string"]},
    ],
    ids=["aud-list-of-one", "aud-list-of-two", "aud-object", "oid-list"],
)
def test_a_well_signed_token_with_odd_claims_is_401_not_500(raw, vault, vault_control, claims) -> None:
    response = raw.call("GET", "/secrets", token=_signed(vault, **claims))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "Unauthorized"
    assert "WWW-Authenticate" in response.headers
    assert vault_control.stats()["statuses"].get("500", 0) == 0


def _send_half_a_request(vault: Any, token: str) -> None:
    """PUT with a Content-Length of 1000 and 10 bytes of body, then close (a client timing out, or killed)."""
    url = urlparse(vault.vault_url)
    context = ssl.create_default_context(cafile=vault.ca_bundle)
    with socket.create_connection((url.hostname, url.port), timeout=10) as plain:
        with context.wrap_socket(plain, server_hostname=url.hostname) as tls:
            tls.sendall(
                (
                    "PUT /secrets/half-sent?api-version=2026-04-01 HTTP/1.1\r\n"
                    f"Host: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                    '{"value": '
                ).encode()
            )


def test_a_client_that_disconnects_mid_request_is_an_info_line(raw, vault, vault_control, caplog) -> None:
    token = raw.token()
    with caplog.at_level(logging.INFO, logger="localdev.vault"):
        for _ in range(3):
            _send_half_a_request(vault, token)
        deadline = time.monotonic() + 10
        while vault_control.stats()["disconnected"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    stats = vault_control.stats()
    assert stats["disconnected"] == 3
    assert stats["statuses"].get("500", 0) == 0
    vault_records = [r for r in caplog.records if r.name.startswith("localdev.vault")]
    assert [r.levelname for r in vault_records] == ["INFO"] * 3, [r.getMessage() for r in vault_records]
    assert all(r.exc_info is None for r in vault_records)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []  # aiohttp's too
    assert "client went away during PUT /secrets/half-sent" in vault_records[0].getMessage()
    assert raw.call("GET", "/secrets/half-sent/").status_code == 404  # nothing half-written


def test_drop_response_commits_the_write_and_loses_the_answer(sync_client, vault_control, caplog) -> None:
    sync_client.set_secret("lost-answer", "first")
    vault_control.set_faults("SetSecret", 0, drop_response=True, count=1)
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        sync_client.set_secret("lost-answer", "second", retry_total=0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and not r.name.startswith("azure")]
    assert errors == []  # a fault the test asked for is no server error
    # the vault holds the write the client never heard about: the latest version is "second"
    assert sync_client.get_secret("lost-answer").value == "second"
    versions = list(sync_client.list_properties_of_secret_versions("lost-answer"))
    assert len(versions) == 2
    stats = vault_control.stats()
    assert stats["dropped"] == 1 and stats["operations"]["SetSecret"] == 2
    assert vault_control.faults() == []  # count=1: the rule ended


def test_drop_before_the_operation_changes_nothing(sync_client, vault_control) -> None:
    sync_client.set_secret("not-lost", "first")
    vault_control.set_faults("SetSecret", 0, drop=True, count=1)
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        sync_client.set_secret("not-lost", "second", retry_total=0)
    assert sync_client.get_secret("not-lost").value == "first"


def test_a_rule_is_one_kind_of_fault(vault_control) -> None:
    with pytest.raises(RuntimeError, match="one of status, drop=true or drop_response=true"):
        vault_control.set_faults("SetSecret", 500, drop_response=True)
    with pytest.raises(RuntimeError, match="give a status"):
        vault_control.set_faults("SetSecret", 0)


def _victims(plan: FaultPlan, calls: int = 200) -> list[int]:
    plan.set(FaultRule("GetSecret", status=500, rate=0.1))
    return [i for i in range(calls) if plan.pick("GetSecret") is not None]


def test_a_seeded_fault_plan_picks_the_same_transactions() -> None:
    assert _victims(FaultPlan(seed=7)) == _victims(FaultPlan(seed=7))
    assert _victims(FaultPlan(seed=7)) != _victims(FaultPlan(seed=8))
    plan = FaultPlan(seed=7)
    first = _victims(plan)
    plan.reseed(7)
    assert _victims(plan) == first


def test_seeded_faults_through_the_vault_repeat(sync_client, vault_control) -> None:
    sync_client.set_secret("seeded", "v")

    def run() -> list[int]:
        vault_control.seed_faults(42)
        vault_control.set_faults("GetSecret", 503, rate=0.3)
        outcomes = []
        for i in range(40):
            try:
                sync_client.get_secret("seeded", retry_total=0)
            except Exception:  # a 503 the rule picked
                outcomes.append(i)
        vault_control.clear_faults()
        return outcomes

    first = run()
    assert 0 < len(first) < 40
    assert run() == first
    with pytest.raises(RuntimeError, match="seed must be an integer"):
        vault_control._call("PUT", "faults/seed", {"seed": "forty-two"})
