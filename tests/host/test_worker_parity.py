"""The real worker as the referee: Microsoft's Python 3.13 worker indexes each app; the local host agrees.

tests/host/worker/driver.py runs in .venv-worker (Python 3.13, requirements-worker.txt:
azure-functions-runtime and azure-functions 2.x, as Azure runs Python 3.13 apps) and drives the
runtime's start-up requests as the platform's proxy worker does: WorkerInitRequest (indexing),
FunctionsMetadataRequest, FunctionLoadRequest per function. What is not real: the gRPC transport and
the protobuf module, compiled from host_worker.proto (the start-up subset of the protocol) because the
proxy worker that carries the generated one is not on PyPI. The runtime, the SDK, indexing, type
checks and retry conversion are the real ones.

For every app the worker indexes, the local registry must hold the same functions with the same metadata,
field by field; for every app it refuses, the local host must refuse it too, with the worker's reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from localdev.host import FunctionLoadError, load_registry
from localdev.host.registry import RegisteredFunction

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).parent / "apps"
DRIVER = Path(__file__).parent / "worker" / "driver.py"
WORKER_PYTHON = REPO / ".venv-worker" / "bin" / "python"

# (app directory, script): apps the worker indexes ...
INDEXED = [
    (REPO, "function_app.py"),
    (APPS / "http", "http_app.py"),
    (APPS / "triggers", "triggers_app.py"),
    (APPS / "broken", "missing_setting.py"),  # indexes; the host puts the timer in error at start-up
]
# ... and apps it refuses (each definition the old local host accepted is here, with the ones it refused).
REFUSED = sorted(p.name for p in (APPS / "broken").glob("*.py") if p.name != "missing_setting.py")


def _worker_python() -> Path:
    """.venv-worker's Python, built by the Makefile on first use; skip (fail on CI) without Python 3.13."""
    if not WORKER_PYTHON.exists() and shutil.which("make"):
        subprocess.run(["make", "-s", ".venv-worker/.installed"], cwd=REPO, check=False, timeout=600)
    if not WORKER_PYTHON.exists():
        reason = (
            "no Python 3.13 to build .venv-worker (the worker referee): install python3.13, then `make test`"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return WORKER_PYTHON


def run_worker(app_dir: Path, script: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    out = subprocess.run(
        [str(_worker_python()), str(DRIVER), str(app_dir), script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=app_dir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["python"] == "3.13", report
    return report


def _seconds(duration: str | None) -> float | None:
    return None if duration is None else float(duration.rstrip("s"))


def compare(worker: dict[str, Any], local: RegisteredFunction) -> list[str]:
    """Every difference between the worker's metadata for one function and the local registry's entry."""
    problems = []

    def same(field: str, theirs: object, ours: object) -> None:
        if theirs != ours:
            problems.append(f"{local.name}.{field}: worker {theirs!r}, local {ours!r}")

    same("script_file", worker["script_file"], local.function_json.get("scriptFile"))
    same("entry_point", worker["entry_point"], local.name)
    same("language", worker["language"], "python")
    same("raw_bindings", worker["raw_bindings"], local.function_json["bindings"])
    directions = {"in": "IN", "out": "OUT", "inout": "INOUT"}
    same(
        "bindings",
        {n: (b["type"], directions[b.get("direction", "in")]) for n, b in worker["bindings"].items()},
        {b["name"]: (b["type"], b["direction"]) for b in local.function_json["bindings"]},
    )
    trigger = next(b for b in worker["raw_bindings"] if b["direction"] == "IN")
    same("trigger_type", trigger["type"], local.trigger_type)
    same("trigger_name", trigger["name"], local.trigger_name)
    same("has_return", "$return" in worker["bindings"], local.has_return)
    if local.is_http:
        same("route", trigger.get("route"), local.route)
        same(
            "methods",
            tuple(trigger.get("methods") or ()) or None,
            tuple(local.binding.get("methods") or ()) or None,
        )
        same("auth_level", str(trigger.get("authLevel", "FUNCTION")).lower(), local.auth_level)
    if local.trigger_type == "timerTrigger":
        same("schedule", trigger.get("schedule"), local.schedule)
        same("run_on_startup", bool(trigger.get("runOnStartup")), local.run_on_startup)
        same("use_monitor", trigger.get("useMonitor"), local.binding.get("useMonitor"))
    retry = worker.get("retry_options") if worker["has_retry_options"] else None
    same("retry", retry is None, local.retry is None)
    if retry is not None and local.retry is not None:
        same("retry.strategy", retry.get("retry_strategy", "exponential_backoff"), local.retry.strategy)
        same("retry.max_retry_count", retry.get("max_retry_count", 0), local.retry.max_retry_count)
        if local.retry.strategy == "fixed_delay":
            same("retry.delay_interval", _seconds(retry.get("delay_interval", "0s")), local.retry.delay)
        else:
            same("retry.minimum_interval", _seconds(retry.get("minimum_interval", "0s")), local.retry.minimum)
            same("retry.maximum_interval", _seconds(retry.get("maximum_interval", "0s")), local.retry.maximum)
    return problems


@pytest.mark.timeout(600)
def test_local_registry_matches_the_worker_field_by_field(clean_environ) -> None:
    counted = 0
    for app_dir, script in INDEXED:
        report = run_worker(app_dir, script)
        assert report["init"] == {"status": "Success", "error": None}, (script, report["init"])
        assert all(load["status"] == "Success" for load in report["loads"].values()), report["loads"]
        registry = load_registry(app_dir / script, environ={})
        assert [f["name"] for f in report["functions"]] == list(registry.functions), script
        problems = [p for f in report["functions"] for p in compare(f, registry.functions[f["name"]])]
        assert problems == [], "\n".join(problems)
        counted += len(report["functions"])
    print(f"worker parity: {counted} functions in {len(INDEXED)} apps match field by field")
    assert counted >= 12 + 20


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", REFUSED)
def test_the_local_host_refuses_what_the_worker_refuses_with_its_reason(script: str, clean_environ) -> None:
    report = run_worker(APPS / "broken", script)
    assert report["init"]["status"] == "Failure", f"the worker indexed {script}: update the fixture lists"
    kind, _, reason = report["init"]["error"].partition(": ")
    with pytest.raises(FunctionLoadError) as refused:
        load_registry(APPS / "broken" / script, environ={})
    ours = str(refused.value)
    if kind == "TypeError" and "strptime()" in reason:  # the worker's own reason is its crash on None
        assert "needs delay_interval" in ours, ours
    else:
        assert reason in ours, f"worker: {reason}\nlocal:  {ours}"
