"""The azd postdeploy hook, run for real with sh. Only `az` is a stand-in (a script on PATH that records its
arguments): the Azure CLI and Azure are not reachable here. pwsh is not installed, so postdeploy.ps1 is only
checked for the same deployment call."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.infra import bicep

HOOK = bicep.INFRA / "hooks" / "postdeploy.sh"
TOPICS = [
    {
        "subscriptionId": "00000000-0000-0000-0000-000000000001",
        "resourceGroup": "rg-a",
        "name": "evgt-kva",
        "principalId": "p",
    }
]
ENV = {
    "AZURE_FUNCTION_APP_ID": "/subscriptions/s/resourceGroups/rg-x/providers/Microsoft.Web/sites/func-x",
    "KEY_VAULT_EVENT_TOPICS": json.dumps(TOPICS),
    "AZURE_LOCATION": "swedencentral",
    "AZURE_ENV_NAME": "prod",
    "DEAD_LETTER_CONTAINER_ID": "/subscriptions/s/.../containers/eventgrid-dead-letters",
}


def _run(
    tmp_path: Path, env: dict[str, str], *, with_az: bool = True
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    run_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    bin_dir = run_dir / "bin"
    bin_dir.mkdir()
    record = run_dir / "az-args.txt"
    if with_az:
        fake = bin_dir / "az"
        fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{record}'\n")
        fake.chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin"
    result = subprocess.run(
        ["sh", str(HOOK)], env={"PATH": path, **env}, capture_output=True, text=True, timeout=60, check=False
    )
    args = record.read_text().splitlines() if record.exists() else []
    return result, args


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_the_hook_deploys_events_bicep_with_the_provision_outputs(tmp_path: Path) -> None:
    result, args = _run(tmp_path, ENV)
    assert result.returncode == 0, result.stderr
    assert args[:3] == ["deployment", "sub", "create"]
    assert args[args.index("--template-file") + 1].endswith("infra/hooks/../events.bicep")
    assert (HOOK.parent / ".." / "events.bicep").resolve() == bicep.INFRA / "events.bicep"
    assert f"functionAppId={ENV['AZURE_FUNCTION_APP_ID']}" in args
    assert json.loads(next(a for a in args if a.startswith("topics="))[len("topics=") :]) == TOPICS
    assert args[args.index("--location") + 1] == "swedencentral"
    assert "eventsQueueStorageId=" in args and "keyvault_events" in result.stdout  # inline: to the function
    assert "done" in result.stdout
    queued = {**ENV, "EVENTS_QUEUE_STORAGE_ID": "/subscriptions/s/.../storageAccounts/stx"}
    result, args = _run(tmp_path, queued)
    assert result.returncode == 0 and f"eventsQueueStorageId={queued['EVENTS_QUEUE_STORAGE_ID']}" in args
    assert "kv-events queue" in result.stdout


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_the_hook_names_what_is_missing(tmp_path: Path) -> None:
    result, args = _run(tmp_path, {k: v for k, v in ENV.items() if k != "AZURE_FUNCTION_APP_ID"})
    assert result.returncode == 1 and not args
    assert "AZURE_FUNCTION_APP_ID is not set" in result.stderr and "azd provision" in result.stderr
    result, args = _run(tmp_path, ENV, with_az=False)
    assert (
        result.returncode == 1
        and "Azure CLI" in result.stderr
        and "azd hooks run postdeploy" in result.stderr
    )
    result, args = _run(tmp_path, {**ENV, "KEY_VAULT_EVENT_TOPICS": "[]"})
    assert result.returncode == 0 and not args and "nothing to subscribe" in result.stdout


def test_the_windows_hook_makes_the_same_call() -> None:
    text = (bicep.INFRA / "hooks" / "postdeploy.ps1").read_text()
    for needle in (
        "az deployment sub create",
        "events.bicep",
        "AZURE_FUNCTION_APP_ID",
        "KEY_VAULT_EVENT_TOPICS",
        "EVENTS_QUEUE_STORAGE_ID",
    ):
        assert needle in text
    assert os.access(HOOK, os.X_OK), "postdeploy.sh must be executable (azd runs it directly)"
