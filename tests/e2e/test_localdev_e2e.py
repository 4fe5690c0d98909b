"""End to end: `python -m localdev` (vault + identity + host + the real app) as a user runs it.

A secret written through the HTTP API is read back from the vault with the real SDK and the real
ManagedIdentityCredential over verified HTTPS; then SIGTERM must stop everything cleanly.
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from .localdev_process import REPO, LocaldevProcess, port_is_free, read_env_file


def test_write_through_the_host_read_back_from_the_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"e2e-{secrets.token_hex(4)}"
    value = f"v-{secrets.token_urlsafe(24)}"
    run = LocaldevProcess(
        tmp_path / "state",
        "--port",
        "0",
        "--vault-port",
        "0",
        "--identity-port",
        "0",
        "--memory",
        "--no-events",
        "--log-level",
        "debug",
    )  # every logger may speak
    try:
        host_env = run.wait_ready()
        vault_env = read_env_file(tmp_path / "state" / "vault.env")
        base = host_env["FUNCTIONS_BASE_URL"]

        denied = requests.put(f"{base}/api/secrets/{name}", json={"value": value}, timeout=30)
        assert denied.status_code == 401
        written = requests.put(
            f"{base}/api/secrets/{name}",
            json={"value": value},
            timeout=30,
            headers={"x-functions-key": host_env["FUNCTIONS_DEFAULT_KEY"]},
        )
        assert written.status_code in (200, 201), written.text
        assert value not in written.text

        # The SDK reaches the vault as the app does: identity endpoint + CA bundle from vault.env.
        monkeypatch.setenv("IDENTITY_ENDPOINT", vault_env["IDENTITY_ENDPOINT"])
        monkeypatch.setenv("IDENTITY_HEADER", vault_env["IDENTITY_HEADER"])
        credential = ManagedIdentityCredential()
        client = SecretClient(
            vault_env["KEY_VAULT_URL"],
            credential,
            connection_verify=vault_env["KEY_VAULT_CA_BUNDLE"],
            verify_challenge_resource=False,
        )
        with client, credential:
            assert client.get_secret(name).value == value
        ports = [
            urlparse(base).port,
            urlparse(vault_env["KEY_VAULT_URL"]).port,
            urlparse(vault_env["IDENTITY_ENDPOINT"]).port,
        ]
    finally:
        code = run.terminate()
    output = run.output()
    assert code == 0, output
    assert "stopped cleanly" in output
    assert " DEBUG azure" in output and value not in output  # never in a log line, at any level
    assert run.leftover_processes() == []
    assert all(port_is_free(p) for p in ports), ports
    print(f"python -m localdev ready (host.env written) after {run.ready_seconds:.2f}s")


def test_make_run_starts_azurite_and_the_queue_triggers_run_on_it(tmp_path: Path) -> None:
    """`make run` with Azurite installed (CI has it): Azurite starts beside the vault (free ports here, so
    AzureWebJobsStorage names them), the banner says where, and with SWEEP_MODE=queue the rotation timer's
    scan message is picked up by fanout_scan through the local host's queue listener; SIGTERM stops Azurite too."""
    from tests.fixtures.rotation import require_azurite

    require_azurite()
    run = LocaldevProcess(
        tmp_path / "state",
        *("--port", "0", "--vault-port", "0", "--identity-port", "0", "--cloud-port", "0"),
        *("--memory", "--no-events", "--azurite-port", "0"),
        extra_env={"SWEEP_MODE": "queue"},
    )
    try:
        host_env = run.wait_ready()
        assert "Azurite  blob http://127.0.0.1:" in run.output(), run.output()
        started = requests.post(
            f"{host_env['FUNCTIONS_BASE_URL']}/admin/functions/scheduled_rotation",
            json={"input": ""},
            headers={"x-functions-key": host_env["FUNCTIONS_MASTER_KEY"]},
            timeout=30,
        )
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 30
        while '"outcome": "Scanned"' not in run.output():
            assert time.monotonic() < deadline, run.output()[-3000:]
            time.sleep(0.1)
    finally:
        code = run.terminate()
    assert code == 0, run.output()
    assert run.leftover_processes() == []  # Azurite included


def test_host_mode_serves_the_app_against_an_existing_vault(tmp_path: Path, vault, vault_env) -> None:
    """`python -m localdev host`: no vault of its own; the app uses the one its settings name."""
    name = f"e2e-host-{secrets.token_hex(4)}"
    value = f"v-{secrets.token_urlsafe(24)}"
    run = LocaldevProcess(tmp_path / "state", "host", "--port", "0", extra_env=vault_env)
    try:
        host_env = run.wait_ready()
        assert not (tmp_path / "state" / "vault.env").exists()
        written = requests.put(
            f"{host_env['FUNCTIONS_BASE_URL']}/api/secrets/{name}",
            json={"value": value},
            headers={"x-functions-key": host_env["FUNCTIONS_DEFAULT_KEY"]},
            timeout=30,
        )
        assert written.status_code == 201, written.text
        credential = ManagedIdentityCredential()
        client = SecretClient(
            vault.vault_url, credential, connection_verify=vault.ca_bundle, verify_challenge_resource=False
        )
        with client, credential:
            assert client.get_secret(name).value == value
    finally:
        code = run.terminate()
    assert code == 0, run.output()
    assert value not in run.output()
    assert run.leftover_processes() == []


def test_vault_events_reach_the_app_through_the_webhook(tmp_path: Path) -> None:
    """Without --no-events the vault posts SecretNewVersionCreated to keyvault_events, with the system key."""
    run = LocaldevProcess(
        tmp_path / "state", "--port", "0", "--vault-port", "0", "--identity-port", "0", "--memory"
    )
    try:
        host_env = run.wait_ready()
        written = requests.put(
            f"{host_env['FUNCTIONS_BASE_URL']}/api/secrets/e2e-events",
            timeout=30,
            json={"value": secrets.token_urlsafe(16)},
            headers={"x-functions-key": host_env["FUNCTIONS_DEFAULT_KEY"]},
        )
        assert written.status_code == 201, written.text
        deadline = time.monotonic() + 10
        delivered = "path=/runtime/webhooks/eventgrid status=202 duration_ms="
        while delivered not in run.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert delivered in run.output()
        assert "function=keyvault_events" in run.output()
    finally:
        assert run.terminate() == 0, run.output()


def _snapshot(state_dir: Path) -> dict[str, bytes]:
    return {name: (state_dir / name).read_bytes() for name in ("host.env", "vault.env", "vault.lock")}


def _modes(state_dir: Path) -> dict[str, str]:
    """Every file and directory under the state dir with its permission bits, as ls would show them."""
    found = {".": oct(state_dir.stat().st_mode & 0o777)}
    for path in sorted(state_dir.rglob("*")):
        found[str(path.relative_to(state_dir))] = oct(path.stat().st_mode & 0o777)
    return found


def test_a_second_start_beside_a_running_one_leaves_it_untouched(tmp_path: Path) -> None:
    """`make run` twice: the second is refused with the busy state dir first, and changes nothing of the
    first (its host.env, vault.env and vault.lock, which every README block sources, stay byte for byte);
    the same for a `python -m localdev.vault` pointed at that state dir. Every state file is 0600 and every
    state dir 0700 under the usual umask 022."""
    state = tmp_path / ".localdev"  # as make run's (an existing dir of another name keeps its mode)
    # a small fixture app: this is about the state dir, not about function_app
    app = ("--app-dir", str(REPO / "tests" / "host" / "apps" / "http"), "--script-file", "http_app.py")
    first = LocaldevProcess(
        state, "--port", "0", "--vault-port", "0", "--identity-port", "0", "--no-events", *app
    )
    try:
        host_env = first.wait_ready()
        before = _snapshot(state)
        ports = {
            "--port": str(urlparse(host_env["FUNCTIONS_BASE_URL"]).port),
            "--vault-port": str(urlparse(read_env_file(state / "vault.env")["KEY_VAULT_URL"]).port),
        }
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KEY_VAULT_")}
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "localdev",
                "--state-dir",
                str(state),
                *app,
                *itertools.chain(*ports.items()),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        first_line = second.stderr.strip().splitlines()[0]
        assert f"is using {state}" in first_line, second.stderr  # the real cause first, not the port
        assert "stop it first" in first_line and "--state-dir" in first_line
        assert "Traceback" not in second.stderr
        assert _snapshot(state) == before

        vault_only = subprocess.run(
            [sys.executable, "-m", "localdev.vault", "--state-dir", str(state), "--port", "0"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
        )
        assert vault_only.returncode == 2
        assert f"another local Key Vault is using {state}" in vault_only.stderr.splitlines()[0]
        assert _snapshot(state) == before  # vault.lock keeps the running vault's pid

        modes = _modes(state)
        loose = {
            name: mode
            for name, mode in modes.items()
            if mode != ("0o700" if (state / name).is_dir() else "0o600")
        }
        assert loose == {}, modes
        assert {"vault.env", "vault.sqlite3", "control.key", "keys.json", "host.env"} <= set(modes)
    finally:
        assert first.terminate() == 0, first.output()
    assert (first.output().count("stopped cleanly")) == 1
