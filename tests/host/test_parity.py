"""Parity: what the host serves equals what get_function_json() declares, for every function of the app.

The declaration side imports the app fresh in a subprocess (get_functions() works once per FunctionApp);
the served side is the running host, probed over HTTP: each declared method of each route reaches the
function (401 without a key for function/admin level, never 404/405), undeclared methods get 404 (Azure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from localdev.host.registry import ALL_METHODS
from localdev.host.routes import compile_route

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).parent / "apps"

_DECLARE = """
import json, runpy, sys
sys.path.insert(0, sys.argv[1])
import azure.functions as func
namespace = runpy.run_path(sys.argv[2], run_name="parity_declarations")
apps = [v for v in namespace.values() if isinstance(v, func.FunctionRegister)]
print(json.dumps({f.get_function_name(): json.loads(f.get_function_json()) for f in apps[0].get_functions()}))
"""

# Candidate values for route parameters; the first one a parameter's constraints accept is used.
_CANDIDATES = [
    "sample-name",
    "abc",
    "42",
    "3",
    "true",
    "0f8fad5b-d9cb-469f-a165-70867728950e",
    "2026-01-01",
    "a",
    "x1",
]


def declared_functions(app_dir: Path, script: str) -> dict[str, dict]:
    out = subprocess.run(
        [sys.executable, "-c", _DECLARE, str(app_dir), str(app_dir / script)],
        capture_output=True,
        text=True,
        cwd=app_dir,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def concrete_path(route: str) -> str:
    """A path that the route template matches, built from candidate values."""
    template = compile_route(route)
    # None marks a one-parameter segment, filled below in order.
    segments = [None if s.startswith("{") and s.endswith("}") else s for s in route.strip("/").split("/")]
    values: list[str] = []
    for param in template.parameters:
        choice = next((c for c in _CANDIDATES if all(check(c) for check in param.constraints)), None)
        assert choice is not None, f"no sample value satisfies {param.name} in {route}"
        values.append(choice)
    filled = iter(values)
    path = "/".join(next(filled) if s is None else s for s in segments)
    assert template.match(path) is not None, (route, path)
    return path


async def check_parity(running, declared: dict[str, dict]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{running.base_url}/admin/functions", headers={"x-functions-key": running.keys.masterKey}
        ) as resp:
            served = {f["name"]: f for f in await resp.json()}
        assert set(served) == set(declared)
        prefix = f"/{running.host.route_prefix}" if running.host.route_prefix else ""
        for name, function_json in declared.items():
            trigger = next(
                b
                for b in function_json["bindings"]
                if b["direction"] == "IN" and b["type"].endswith("Trigger")
            )
            entry = served[name]
            assert entry["trigger"] == trigger["type"], name
            assert entry["config"] == function_json, name
            if trigger["type"] == "httpTrigger":
                methods = trigger.get("methods") or list(ALL_METHODS)
                assert entry["route"] == trigger.get("route", name)
                assert sorted(entry["methods"]) == sorted(methods)
                assert entry["authLevel"] == trigger["authLevel"].lower()
                url = f"{running.base_url}{prefix}/{concrete_path(entry['route'])}"
                for method in methods:
                    if method in ("HEAD", "OPTIONS"):
                        continue
                    async with http.request(method, url) as resp:
                        assert resp.status not in (404, 405), (name, method, url, resp.status)
                        if trigger["authLevel"] != "ANONYMOUS":
                            assert resp.status == 401, (name, method)
                others = [m for m in ("GET", "POST", "PUT", "DELETE", "PATCH") if m not in methods]
                for method in others:
                    async with http.request(method, url) as resp:
                        # Another function may own the same path for this method; otherwise 404.
                        assert resp.status != 405, (name, method, url)
            elif trigger["type"] == "timerTrigger":
                assert entry["schedule"] == trigger["schedule"]
                assert entry["runOnStartup"] == bool(trigger.get("runOnStartup"))


async def test_fixture_app_parity(host_factory) -> None:
    running = await host_factory("http")
    await check_parity(running, declared_functions(APPS / "http", "http_app.py"))


async def test_real_function_app_parity(host_factory_for_repo) -> None:
    running = await host_factory_for_repo()
    declared = declared_functions(REPO, "function_app.py")
    assert {"scheduled_rotation", "scheduled_cleanup", "keyvault_events", "health"} <= set(declared)
    await check_parity(running, declared)
    timers = {n: f for n, f in running.registry.functions.items() if f.trigger_type == "timerTrigger"}
    assert timers["scheduled_rotation"].schedule == "%ROTATION_SCHEDULE%"
    assert timers["scheduled_cleanup"].schedule == "%CLEANUP_SCHEDULE%"
    assert not any(f.run_on_startup for f in timers.values())


@pytest.fixture
async def host_factory_for_repo(tmp_path, clean_environ):
    """The real app at the repo root; no vault needed to serve. Parity compares declared schedules
    (`%ROTATION_SCHEDULE%`), so the settings get fixed values here; test_app_settings checks the real ones."""
    from localdev.host import HostConfig, start_host

    clean_environ["ROTATION_SCHEDULE"] = "0 0 0 1 1 *"
    clean_environ["CLEANUP_SCHEDULE"] = "0 0 0 1 1 *"
    started = []

    async def start():
        running = await start_host(HostConfig(app_dir=REPO, port=0, state_dir=tmp_path / "state"))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()
    try:
        from shared.keyvault import close_secret_client
    except ImportError:
        return
    await close_secret_client()
