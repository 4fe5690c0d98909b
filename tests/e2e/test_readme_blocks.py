"""The README's local Key Vault blocks that write or reset a vault run as written and leave the tour's
vault alone: before, the /_emulator block reset `make run`'s vault (wiping the tour's secrets) and the SDK
snippet wrote the tour's `db-password` without the app's ownership tag (the API then answered 403)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from localdev.vault.server import VaultConfig, start_vault_in_thread
from tests.fixtures.vault import make_sync_client

from .localdev_process import REPO

README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.index("\n### ", start + len(title))
    return README[start:end]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def _tour_vault(tmp_path: Path, monkeypatch):
    """Stands in for `make run`'s vault, holding the tour's db-password."""
    vault = start_vault_in_thread(
        VaultConfig(state_dir=tmp_path / "tour", port=0, identity_port=0, memory=True)
    )
    for key, value in vault.env().items():
        monkeypatch.setenv(key, value)
    with make_sync_client(vault) as client:
        version = client.set_secret(
            "db-password", "tour-value", tags={"ManagedBy": "tour"}
        ).properties.version
    return vault, version


def _untouched(vault, version: str) -> None:
    with make_sync_client(vault) as client:
        kept = client.get_secret("db-password")
    assert (kept.value, kept.properties.version, kept.properties.tags) == (
        "tour-value",
        version,
        {"ManagedBy": "tour"},
    )


def test_the_test_controls_block_resets_a_vault_of_its_own(tmp_path: Path, monkeypatch) -> None:
    [block] = _blocks(_section("### Test controls"), "bash")
    assert "/_emulator/reset" in block and ".localdev/vault.env" not in block
    own = tmp_path / "kv-controls"
    tour, version = _tour_vault(tmp_path, monkeypatch)
    try:
        run = subprocess.run(
            ["bash", "-e", "-c", block.replace("/tmp/kv-controls", str(own))],  # a path of this test's own
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if not k.startswith(("KEY_VAULT_", "IDENTITY_"))},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert '{"status": "reset"}' in run.stdout and '"disconnected": 0' in run.stdout
        assert '{"value":[],"nextLink":null}' in run.stdout  # the raw call with a real token
        # every control call carried the control key (a refusal would answer its 401 error body)
        assert "need the control key" not in run.stdout
        _untouched(tour, version)
    finally:
        tour.stop()


def test_the_sdk_snippets_write_names_of_their_own(tmp_path: Path, monkeypatch) -> None:
    sync_block, aio_block = _blocks(_section("### Point the SDK at it"), "python")
    tour, version = _tour_vault(tmp_path, monkeypatch)
    try:
        for block in (sync_block, aio_block):
            assert '"db-password"' not in block
            run = subprocess.run(
                [sys.executable, "-c", block], cwd=REPO, env=dict(os.environ), capture_output=True, text=True
            )
            assert run.returncode == 0, run.stderr
        _untouched(tour, version)
        with make_sync_client(tour) as client:
            assert {p.name for p in client.list_properties_of_secrets()} == {
                "db-password",
                "sdk-demo",
                "sdk-demo-aio",
            }
    finally:
        tour.stop()
