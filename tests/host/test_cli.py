"""`python -m localdev` as users run it, on a fixture app: banner, host.env, clean SIGTERM, exit codes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import requests

from tests.e2e.localdev_process import LocaldevProcess, port_is_free, read_env_file

APP = Path(__file__).parent / "apps" / "triggers"


def test_localdev_starts_vault_and_host_then_stops_cleanly(tmp_path: Path) -> None:
    run = LocaldevProcess(
        tmp_path / "state",
        "--app-dir",
        str(APP),
        "--script-file",
        "triggers_app.py",
        "--port",
        "0",
        "--vault-port",
        "0",
        "--identity-port",
        "0",
        "--memory",
    )
    try:
        host_env = run.wait_ready()
        vault_env = read_env_file(tmp_path / "state" / "vault.env")
        base = host_env["FUNCTIONS_BASE_URL"]
        assert requests.get(f"{base}/api/ping", timeout=5).text == "pong"
        listed = requests.get(
            f"{base}/admin/functions",
            timeout=5,
            headers={"x-functions-key": host_env["FUNCTIONS_MASTER_KEY"]},
        )
        assert listed.status_code == 200 and len(listed.json()) == 8
        assert requests.get(f"{base}/admin/functions", timeout=5).status_code == 401
        assert (tmp_path / "state" / "keys.json").is_file()
        assert (tmp_path / "state" / "host.env").stat().st_mode & 0o077 == 0
        banner = run.stdout_path.read_text()
        assert "localdev ready in" in banner and base in banner and vault_env["KEY_VAULT_URL"] in banner
        assert host_env["FUNCTIONS_DEFAULT_KEY"] in banner
        ports = [
            urlparse(base).port,
            urlparse(vault_env["KEY_VAULT_URL"]).port,
            urlparse(vault_env["IDENTITY_ENDPOINT"]).port,
        ]
    finally:
        code = run.terminate()
    assert code == 0, run.output()
    assert "stopped cleanly" in run.stdout_path.read_text()
    assert run.leftover_processes() == []
    assert all(port_is_free(p) for p in ports), ports
    assert not (tmp_path / "state" / "host.env").exists()


def test_load_error_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    run = LocaldevProcess(
        tmp_path / "state",
        "host",
        "--app-dir",
        str(APP.parent / "broken"),
        "--script-file",
        "two_apps.py",
        "--port",
        "0",
    )
    code = run.process.wait(timeout=30)
    assert code == 2
    err = run.stderr_path.read_text()
    assert "error: More than one FunctionApp or other top level function app instances are defined." in err
    assert "Traceback" not in err


def test_missing_schedule_setting_puts_only_that_function_in_error(tmp_path: Path) -> None:
    """Azure puts the timer in error and serves the rest; the old host exited 2 and served nothing."""
    run = LocaldevProcess(
        tmp_path / "state",
        "host",
        "--app-dir",
        str(APP.parent / "broken"),
        "--script-file",
        "missing_setting.py",
        "--port",
        "0",
    )
    try:
        env = run.wait_ready()
        assert requests.get(f"{env['FUNCTIONS_BASE_URL']}/api/alive", timeout=10).text == "yes"
        output = run.output()
        assert "function orphan is in error and will not run" in output
        assert "NOT_A_SETTING_ANYWHERE" in output
    finally:
        assert run.terminate() == 0
