"""The test controls (/_emulator) answer only a caller holding the control key from the state dir.

Before, any process on loopback could mint a Secrets Officer token at POST /_emulator/tokens or empty the
vault at POST /_emulator/reset with no credential.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlparse

import pytest
import requests

from localdev.vault.client import ControlClient
from localdev.vault.control import CONTROL_KEY_HEADER

GUARDED = [
    ("POST", "tokens", {}),
    ("POST", "reset", None),
    ("GET", "stats", None),
    ("PUT", "faults", {"operation": "GetSecret", "status": 500}),
    ("POST", "clock", {"advance_seconds": 86400}),
]


def _call(vault, method: str, path: str, body, key: str | None) -> requests.Response:
    headers = {CONTROL_KEY_HEADER: key} if key is not None else {}
    return requests.request(
        method, f"{vault.control_url}/{path}", json=body, headers=headers, verify=vault.ca_bundle, timeout=10
    )


@pytest.mark.parametrize(("method", "path", "body"), GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED])
@pytest.mark.parametrize("key", [None, "", "wrong-key"], ids=["no key", "empty key", "wrong key"])
def test_without_the_control_key_nothing_is_done(vault, vault_control, sync_client, method, path, body, key):
    sync_client.set_secret("kept", "v")
    response = _call(vault, method, path, body, key)
    assert response.status_code == 401
    message = response.json()["error"]
    assert CONTROL_KEY_HEADER in message and "control.key" in message  # says what to do
    assert vault.control_key not in response.text
    assert "access_token" not in response.text
    assert sync_client.get_secret("kept").value == "v"  # no reset happened
    assert vault_control.faults() == []
    assert vault_control.stats()["statuses"].get("500", 0) == 0


def test_a_key_that_is_not_utf8_is_refused_cleanly(vault, vault_control) -> None:
    url = urlparse(vault.vault_url)
    context = ssl.create_default_context(cafile=vault.ca_bundle)
    with socket.create_connection((url.hostname, url.port), timeout=10) as plain:
        with context.wrap_socket(plain, server_hostname=url.hostname) as tls:
            tls.sendall(
                b"POST /_emulator/reset HTTP/1.1\r\nHost: localhost\r\nX-Emulator-Key: \xff\xfe\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_with_the_key_the_controls_work_and_health_needs_none(vault, vault_control) -> None:
    assert _call(vault, "GET", "health", None, None).json()["status"] == "ok"  # a readiness probe
    token = vault_control.issue_token()
    assert token.count(".") == 2
    assert _call(vault, "GET", "stats", None, vault.control_key).status_code == 200


def test_the_key_lives_in_the_state_dir_owner_only(vault) -> None:
    path = vault.state_dir / "control.key"
    assert path.read_text().strip() == vault.control_key
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(vault.control_key) >= 32


def test_a_client_from_the_state_dir(vault, vault_control) -> None:
    # what a script beside `make run` does: read vault.env and control.key from the state dir
    client = ControlClient.for_state_dir(vault.state_dir)
    try:
        assert client.stats()["total"] >= 0
    finally:
        client.close()


def test_a_client_for_a_state_dir_with_no_vault_says_so(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no local Key Vault runs with --state-dir"):
        ControlClient.for_state_dir(tmp_path)
