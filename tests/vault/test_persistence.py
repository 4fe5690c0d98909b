"""SQLite persistence: data survives a restart and a crash (SIGKILL mid-write), concurrent writes all land."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from localdev.vault.server import StateDirInUse, VaultConfig, start_vault_in_thread
from tests.fixtures.vault import aclose_client, make_aio_client, make_sync_client

REPO = Path(__file__).resolve().parents[2]


def _config(state_dir: Path) -> VaultConfig:
    return VaultConfig(state_dir=state_dir, port=0, identity_port=0, memory=False)


def _use(vault, monkeypatch) -> None:
    for key, value in vault.env().items():
        monkeypatch.setenv(key, value)


def test_survives_restart(tmp_path, monkeypatch) -> None:
    first = start_vault_in_thread(_config(tmp_path))
    try:
        _use(first, monkeypatch)
        with make_sync_client(first) as client:
            v1 = client.set_secret("kept", "one", tags={"a": "b"}, content_type="text/plain")
            client.set_secret("kept", "two")
            client.update_secret_properties("kept", v1.properties.version, enabled=False)
            client.set_secret("binned", "x")
            deleted = client.begin_delete_secret("binned", _polling_interval=0).result()
            backup = client.backup_secret("kept")
        with pytest.raises(StateDirInUse, match="--state-dir") as refused:
            start_vault_in_thread(_config(tmp_path))
        assert "or --memory" not in str(refused.value)
        with pytest.raises(StateDirInUse):  # a memory vault would overwrite the running one's vault.env
            start_vault_in_thread(replace(_config(tmp_path), memory=True))
        assert (tmp_path / "vault.env").read_text() == first.env_text()
    finally:
        first.stop()
    assert not (tmp_path / "vault.env").exists()  # a stopped vault leaves no vault.env naming it

    second = start_vault_in_thread(_config(tmp_path))
    try:
        _use(second, monkeypatch)
        assert second.ca_bundle == first.ca_bundle  # same CA: clients keep trusting it
        with make_sync_client(second) as client:
            assert client.get_secret("kept").value == "two"
            versions = {v.version: v for v in client.list_properties_of_secret_versions("kept")}
            assert versions[v1.properties.version].enabled is False
            assert versions[v1.properties.version].tags == {"a": "b"}
            again = client.get_deleted_secret("binned")
            assert again.scheduled_purge_date == deleted.scheduled_purge_date
            client.begin_delete_secret("kept", _polling_interval=0).wait()
            client.purge_deleted_secret("kept")
            assert client.restore_secret_backup(backup).name == "kept"  # backup key survives too
    finally:
        second.stop()


async def test_concurrent_writes_all_land(tmp_path, monkeypatch) -> None:
    vault = start_vault_in_thread(_config(tmp_path))
    try:
        _use(vault, monkeypatch)
        client = make_aio_client(vault)
        try:
            await asyncio.gather(*(client.set_secret(f"c-{i % 10}", f"value-{i}") for i in range(60)))
        finally:
            await aclose_client(client)
    finally:
        vault.stop()
    db = sqlite3.connect(tmp_path / "vault.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 60
    assert db.execute("SELECT COUNT(*) FROM secrets").fetchone()[0] == 10
    db.close()


def test_crash_mid_write_leaves_a_consistent_store(tmp_path, monkeypatch) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localdev.vault",
            "--port",
            "0",
            "--identity-port",
            "0",
            "--state-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "vault.env").exists():
            assert process.poll() is None and time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.05)
        values = dict(line.split("=", 1) for line in (tmp_path / "vault.env").read_text().splitlines())
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        # the vault runs in the child: a client needs only its URL and CA
        target = SimpleNamespace(vault_url=values["KEY_VAULT_URL"], ca_bundle=values["KEY_VAULT_CA_BUNDLE"])
        acknowledged: list[str] = []
        twenty_acknowledged = threading.Event()

        def write_until_killed() -> None:
            with make_sync_client(target, retry_total=0) as client:
                for i in range(100_000):
                    try:
                        client.set_secret(f"crash-{i}", "v" * 1000)
                    except Exception:  # the process died under this request: that is the point
                        return
                    acknowledged.append(f"crash-{i}")
                    if len(acknowledged) == 20:
                        twenty_acknowledged.set()

        writer = threading.Thread(target=write_until_killed)
        writer.start()
        assert twenty_acknowledged.wait(timeout=20), "writes were not acknowledged"
        process.send_signal(signal.SIGKILL)  # while writes are in flight: no clean shutdown, no checkpoint
        process.wait(timeout=10)
        writer.join(timeout=20)
        assert not writer.is_alive()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
    db = sqlite3.connect(tmp_path / "vault.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    restarted = start_vault_in_thread(_config(tmp_path))
    try:
        _use(restarted, monkeypatch)
        with make_sync_client(restarted) as client:
            survivors = {p.name for p in client.list_properties_of_secrets()}
        # every acknowledged write survived; at most the one write in flight at the kill may have landed too
        assert set(acknowledged) <= survivors
        assert survivors - set(acknowledged) <= {f"crash-{len(acknowledged)}"}
    finally:
        restarted.stop()


def _modes(state_dir: Path) -> dict[str, int]:
    found = {".": state_dir.stat().st_mode & 0o777}
    for path in state_dir.rglob("*"):
        found[str(path.relative_to(state_dir))] = path.stat().st_mode & 0o777
    return found


def test_every_state_file_is_owner_only_whatever_the_umask(tmp_path, monkeypatch) -> None:
    state = tmp_path / "state"
    previous = os.umask(0o022)  # the usual umask: before, vault.env, the SQLite files and dirs were 0644/0755
    try:
        vault = start_vault_in_thread(_config(state))
        try:
            _use(vault, monkeypatch)
            with make_sync_client(vault) as client:
                client.set_secret("private", "value")
            modes = _modes(state)
        finally:
            vault.stop()
    finally:
        os.umask(previous)
    assert {"vault.env", "vault.sqlite3", "vault.sqlite3-wal", "vault.sqlite3-shm", "control.key"} <= set(
        modes
    )
    loose = {n: oct(m) for n, m in modes.items() if m != (0o700 if (state / n).is_dir() else 0o600)}
    assert loose == {}


def test_a_state_dir_from_an_older_checkout_is_tightened(tmp_path) -> None:
    state = tmp_path / ".localdev"
    (state / "tls").mkdir(parents=True)
    (state / "vault.env").write_text("KEY_VAULT_URL=https://localhost:1\n")
    for path, mode in ((state, 0o755), (state / "tls", 0o755), (state / "vault.env", 0o644)):
        os.chmod(path, mode)
    vault = start_vault_in_thread(replace(_config(state), write_env_file=False))
    try:
        assert state.stat().st_mode & 0o777 == 0o700
        assert (state / "tls").stat().st_mode & 0o777 == 0o700
        assert (state / "vault.env").stat().st_mode & 0o777 == 0o600
    finally:
        vault.stop()


def test_a_start_refused_for_a_busy_state_dir_changes_none_of_its_files(tmp_path) -> None:
    running = start_vault_in_thread(_config(tmp_path))
    try:
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        assert before["vault.lock"] == str(os.getpid()).encode()
        with pytest.raises(StateDirInUse) as refused:
            start_vault_in_thread(_config(tmp_path))
        message = str(refused.value)
        assert message.startswith(f"another local Key Vault is using {tmp_path}")
        assert "Stop it" in message and "--state-dir" in message
        after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        assert after == before  # vault.lock was truncated to 0 bytes by the refused start before
    finally:
        running.stop()


def test_a_directory_that_is_not_a_state_dir_keeps_its_mode(tmp_path) -> None:
    """`--state-dir ~` must not make your home 0700: an existing dir is tightened only if it is a .localdev."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    os.chmod(home, 0o755)
    for _ in range(2):  # the second start finds the first one's files there: still not tightened
        start_vault_in_thread(_config(home)).stop()
    vault = start_vault_in_thread(_config(home))
    try:
        assert home.stat().st_mode & 0o777 == 0o755
        assert (home / "vault.env").stat().st_mode & 0o777 == 0o600  # what it writes is private all the same
        assert (home / "tls").stat().st_mode & 0o777 == 0o700
    finally:
        vault.stop()
