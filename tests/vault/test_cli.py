"""`python -m localdev.vault`: starts, writes vault.env, prints it, and stops cleanly on SIGTERM / Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "KEY_VAULT_URL",
    "KEY_VAULT_CA_BUNDLE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
}


def _start(state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localdev.vault",
            "--port",
            "0",
            "--identity-port",
            "0",
            "--state-dir",
            str(state_dir),
            *extra,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_env(state_dir: Path, process: subprocess.Popen[str]) -> dict[str, str]:
    deadline = time.monotonic() + 20
    while not (state_dir / "vault.env").exists():
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "no vault.env after 20 s"
        time.sleep(0.05)
    return dict(line.split("=", 1) for line in (state_dir / "vault.env").read_text().splitlines())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_starts_writes_env_and_stops(tmp_path, stop_signal) -> None:
    process = _start(tmp_path, "--memory", "--identity", "reader=reader")
    try:
        env = _wait_env(tmp_path, process)
        assert set(env) == KEYS
        assert env["KEY_VAULT_URL"].startswith("https://localhost:")
        assert env["KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"] == "false"
        health = requests.get(
            env["KEY_VAULT_URL"] + "/_emulator/health", verify=env["KEY_VAULT_CA_BUNDLE"], timeout=5
        )
        assert health.json()["status"] == "ok"
        token = requests.get(
            env["IDENTITY_ENDPOINT"],
            headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
            params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
            timeout=5,
        )
        assert token.status_code == 200
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    for key, value in env.items():
        assert f"{key}={value}" in output  # printed the same lines it wrote
    assert "identity reader" in output and "stopping local Key Vault" in output
    assert "Traceback" not in output


def test_cli_reports_a_taken_port(tmp_path) -> None:
    first = _start(tmp_path / "a", "--memory")
    try:
        env = _wait_env(tmp_path / "a", first)
        port = env["KEY_VAULT_URL"].rsplit(":", 1)[1]
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "localdev.vault",
                "--port",
                port,
                "--identity-port",
                "0",
                "--state-dir",
                str(tmp_path / "b"),
                "--memory",
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr and "--port" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=15)


def test_identities_file(tmp_path) -> None:
    config = tmp_path / "identities.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {"name": "system", "system_assigned": True, "roles": ["Key Vault Secrets User"]},
                    {
                        "name": "ops",
                        "roles": ["administrator"],
                        "client_id": "11111111-2222-3333-4444-555555555555",
                    },
                ]
            }
        )
    )
    process = _start(tmp_path / "state", "--memory", "--identities-file", str(config))
    try:
        env = _wait_env(tmp_path / "state", process)
        token = requests.get(
            env["IDENTITY_ENDPOINT"],
            headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
            params={
                "api-version": "2019-08-01",
                "resource": "https://vault.azure.net",
                "client_id": "11111111-2222-3333-4444-555555555555",
            },
            timeout=5,
        )
        assert token.json()["client_id"] == "11111111-2222-3333-4444-555555555555"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert "identity ops" in output and "Key Vault Administrator" in output
