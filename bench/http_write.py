"""PUT /api/secrets/{name} through the app vs a direct SecretClient.set_secret, same emulator, same run.

    .venv/bin/python bench/http_write.py [--writes 300] [--warmup 30]

The local Key Vault runs in its own process (so it does not share this process's GIL). Interleaved in one
event loop, each round measures:
  direct set      aio SecretClient.set_secret (the baseline the goal is stated against),
  direct get+set  get_secret then set_secret (the vault calls the app makes: one read for scope and
                  idempotency, one write),
  app in-process  the put_secret HTTP function awaited with a func.HttpRequest (parse, validate, scope,
                  read, compare, write, audit, JSON),
  app over HTTP   the same through the local Functions host (localdev.host) with a function key.
Every write carries a fresh random value, so every one creates a version. Prints p50/p99 and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GOAL_RATIO = 1.15
# Timers exist in the app but must not fire during a measurement: schedule them once a year.
BENCH_SETTINGS = {
    "SECRETS_NAME_PREFIX": "bench-",
    "KEY_VAULT_RETRY_TOTAL": "2",
    "ROTATION_SCHEDULE": "0 0 0 1 1 *",
    "CLEANUP_SCHEDULE": "0 0 0 1 1 *",
}


@dataclass
class Timings:
    label: str
    seconds: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

    def line(self, baseline: Timings | None = None) -> str:
        text = (
            f"{self.label:<16} n={len(self.seconds):>4}  p50={self.percentile(0.5):7.2f} ms  "
            f"p99={self.percentile(0.99):7.2f} ms"
        )
        if baseline is not None and baseline is not self:
            text += (
                f"  p50 ratio={self.percentile(0.5) / baseline.percentile(0.5):5.2f}x"
                f"  p99 ratio={self.percentile(0.99) / baseline.percentile(0.99):5.2f}x"
            )
        return text


class EmulatorProcess:
    """`python -m localdev.vault` on free ports with an in-memory store; its env from vault.env."""

    def __init__(self, state_dir: Path) -> None:
        env_file = state_dir / "vault.env"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localdev.vault",
                "--port",
                "0",
                "--identity-port",
                "0",
                "--memory",
                "--state-dir",
                str(state_dir),
                "--log-level",
                "WARNING",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not env_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(
                    "the local vault did not start; run `python -m localdev.vault --port 0` to see why"
                )
            time.sleep(0.05)
        self.env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def app_environment(vault_env: dict[str, str]) -> dict[str, str]:
    """What the app needs to run against the emulator (and nothing a developer's shell may have set)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KEY_VAULT_", "IDENTITY_", "AZURE_CLIENT_ID"))
    }
    env.update(vault_env)
    env.update(BENCH_SETTINGS)
    return env


def direct_client(env: dict[str, str]) -> tuple[Any, Any]:
    """The baseline: the SDK on the same identity and TLS settings, without the app around it.

    It gets the same pooled transport as the app: with `connection_verify=<CA file>` azure-core would
    handshake on every request (a local-CA artefact; in Azure the system store pools), which would
    flatter the app's ratio."""
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.secrets.aio import SecretClient

    from shared.transport import build_transport

    credential = ManagedIdentityCredential()
    client = SecretClient(
        env["KEY_VAULT_URL"],
        credential,
        transport=build_transport(env["KEY_VAULT_CA_BUNDLE"]),
        verify_challenge_resource=False,
    )
    return client, credential


async def timed(timings: Timings, action: Callable[[], Awaitable[Any]]) -> None:
    started = time.perf_counter()
    await action()
    timings.seconds.append(time.perf_counter() - started)


async def run(writes: int, warmup: int, with_host: bool) -> list[Timings]:
    from shared.keyvault import close_secret_client

    client, credential = direct_client(dict(os.environ))
    try:
        return await measure(client, writes, warmup, with_host)
    finally:
        await client.close()
        await credential.close()
        await close_secret_client()


async def measure(client: Any, writes: int, warmup: int, with_host: bool) -> list[Timings]:
    import aiohttp
    import azure.functions as func

    from blueprints.secrets_http import put_secret

    value = lambda: "bench-" + secrets.token_urlsafe(24)  # noqa: E731 - a fresh value per write

    async def direct_set() -> None:
        await client.set_secret("bench-direct", value())

    async def direct_get_set() -> None:
        await client.get_secret("bench-direct2")
        await client.set_secret("bench-direct2", value())

    async def app_in_process() -> None:
        request = func.HttpRequest(
            "PUT",
            "http://localhost/api/secrets/bench-app",
            headers={"content-type": "application/json"},
            route_params={"name": "bench-app"},
            body=json.dumps({"value": value()}).encode(),
        )
        response = await put_secret(request)
        if response.status_code not in (200, 201):
            raise SystemExit(f"the app answered {response.status_code}: {response.get_body()[:300]!r}")

    await client.set_secret("bench-direct2", value())
    targets: list[tuple[Timings, Callable[[], Awaitable[None]]]] = [
        (Timings("direct set"), direct_set),
        (Timings("direct get+set"), direct_get_set),
        (Timings("app in-process"), app_in_process),
    ]
    host = session = None
    if with_host:
        from localdev.host import HostConfig, start_host

        state = Path(tempfile.mkdtemp(prefix="bench-host-"))
        session = aiohttp.ClientSession()
        host = await start_host(HostConfig(app_dir=REPO, port=0, state_dir=state, load_local_settings=False))
        url = f"{host.base_url}/api/secrets/bench-http"
        headers = {"x-functions-key": host.keys.defaultFunctionKey}

        async def app_over_http() -> None:
            async with session.put(url, json={"value": value()}, headers=headers) as response:
                if response.status not in (200, 201):
                    raise SystemExit(f"the host answered {response.status}: {(await response.text())[:300]}")
                await response.read()

        targets.append((Timings("app over HTTP"), app_over_http))
    try:
        for _ in range(warmup):  # challenge, token, connection pools, imports
            for _timings, action in targets:
                await action()
        for round_number in range(writes):
            order = targets if round_number % 2 == 0 else list(reversed(targets))  # no position bias
            for timings, action in order:
                await timed(timings, action)
            if (round_number + 1) % 100 == 0:
                print(f"  {round_number + 1}/{writes} rounds", file=sys.stderr, flush=True)
    finally:
        if session is not None:
            await session.close()
        if host is not None:
            await host.stop()
    return [timings for timings, _ in targets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--writes", type=int, default=300, help="measured rounds (each target once per round)"
    )
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--no-host", action="store_true", help="skip the over-HTTP measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-vault-") as state:
        emulator = EmulatorProcess(Path(state))
        try:
            os.environ.clear()
            os.environ.update(app_environment(emulator.env))
            started = time.perf_counter()
            results = asyncio.run(run(args.writes, args.warmup, not args.no_host))
            elapsed = time.perf_counter() - started
        finally:
            emulator.stop()
    direct, direct_get_set = results[0], results[1]
    print(f"PUT /api/secrets/{{name}} vs SecretClient.set_secret ({args.writes} rounds, {elapsed:.1f} s)")
    for timings in results:
        print("  " + timings.line(direct))
    for timings in results[2:]:
        ratio = timings.percentile(0.5) / direct.percentile(0.5)
        verdict = "meets" if ratio <= GOAL_RATIO else "misses"
        own = timings.percentile(0.5) / direct_get_set.percentile(0.5)
        print(
            f"  {timings.label}: p50 {ratio:.2f}x direct set ({verdict} the {GOAL_RATIO}x goal); "
            f"{own:.2f}x the same two vault calls made directly"
        )


if __name__ == "__main__":
    main()
