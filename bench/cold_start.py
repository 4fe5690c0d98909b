"""Cold start: process start → first successful write, the app vs a bare SDK script, same running emulator.

    .venv/bin/python bench/cold_start.py [--runs 7]

Each run starts a fresh Python process (alternating app / SDK) and times from just before `Popen` to the
child's report that its first write succeeded:
  app  imports function_app (as the worker indexes it), then awaits the put_secret HTTP function once:
       settings, managed identity token, challenge, one read and one write, audit line;
  sdk  imports azure.identity.aio + azure.keyvault.secrets.aio and awaits one set_secret.
Prints the median and min per kind, and the ratio of medians (goal ≤ 1.15x).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.http_write import EmulatorProcess, app_environment  # noqa: E402

GOAL_RATIO = 1.15

APP_CHILD = """
import asyncio, json, secrets, sys
import function_app  # what the worker imports and indexes
import azure.functions as func
from blueprints.secrets_http import put_secret
from shared.keyvault import close_secret_client

async def main():
    request = func.HttpRequest("PUT", "http://localhost/api/secrets/bench-cold",
                               route_params={"name": "bench-cold"},
                               headers={"content-type": "application/json"},
                               body=json.dumps({"value": secrets.token_urlsafe(24)}).encode())
    response = await put_secret(request)
    print(response.status_code, flush=True)
    await close_secret_client()

asyncio.run(main())
"""

SDK_CHILD = """
import asyncio, os, secrets
from azure.identity.aio import ManagedIdentityCredential
from azure.keyvault.secrets.aio import SecretClient

async def main():
    async with ManagedIdentityCredential() as credential:
        async with SecretClient(os.environ["KEY_VAULT_URL"], credential, verify_challenge_resource=False,
                                connection_verify=os.environ["KEY_VAULT_CA_BUNDLE"]) as client:
            await client.set_secret("bench-cold-sdk", secrets.token_urlsafe(24))
    print(200, flush=True)

asyncio.run(main())
"""


def first_write_seconds(code: str, env: dict[str, str]) -> float:
    """Seconds from process start to the child's first output line, which it prints after its write."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    elapsed = time.perf_counter() - started
    _out, err = process.communicate(timeout=60)
    if line not in ("200", "201"):
        raise SystemExit(f"the child's write failed ({line or 'no output'}):\n{err.decode()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="processes per kind (alternating)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-vault-") as state:
        emulator = EmulatorProcess(Path(state))
        try:
            env = {**app_environment(emulator.env), "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "0"}
            first_write_seconds(APP_CHILD, env)  # compile .pyc files once, as a deployed app has them
            first_write_seconds(SDK_CHILD, env)
            app: list[float] = []
            sdk: list[float] = []
            for run in range(args.runs):
                pair = [(app, APP_CHILD), (sdk, SDK_CHILD)]
                for sink, code in pair if run % 2 == 0 else reversed(pair):
                    sink.append(first_write_seconds(code, env))
                print(
                    f"  run {run + 1}/{args.runs}: app {app[-1] * 1000:.0f} ms, sdk {sdk[-1] * 1000:.0f} ms",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            emulator.stop()
    app_median, sdk_median = statistics.median(app), statistics.median(sdk)
    ratio = app_median / sdk_median
    print(f"Cold start, process start → first successful write ({args.runs} runs each)")
    print(
        f"  app (import function_app + PUT)  median={app_median * 1000:7.1f} ms"
        f"  min={min(app) * 1000:7.1f} ms"
    )
    print(
        f"  bare SDK script (set_secret)     median={sdk_median * 1000:7.1f} ms"
        f"  min={min(sdk) * 1000:7.1f} ms"
    )
    verdict = "meets" if ratio <= GOAL_RATIO else "misses"
    print(f"  ratio of medians: {ratio:.2f}x ({verdict} the {GOAL_RATIO}x goal)")
    print(
        json.dumps(
            {
                "app_ms": round(app_median * 1000, 1),
                "sdk_ms": round(sdk_median * 1000, 1),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
