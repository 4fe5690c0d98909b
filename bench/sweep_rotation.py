"""A rotation sweep at scale vs a naive sweep that reads every secret, same emulator, same run.

    .venv/bin/python bench/sweep_rotation.py [--secrets 10000] [--due 100 1000] [--latency 0.02]

The local Key Vault runs in its own process (in memory). For each due count: seed N secrets with latency 0
and throttling off, then switch on the request latency and Key Vault's real limits (4,000 transactions and
300 creates per 10 s, 429 with Retry-After) and time
  list    only list every page (nothing decided): the sequential floor of this machine's HTTPS stack,
  naive   list every page, then GET every secret's value to decide (rotating nothing: reads only),
  engine  shared.rotation's sweep: decide from the listed properties, rotate the due ones.
Prints transactions (the emulator's own count) and seconds of both, the transaction budget
ceil(N/25) + 3 x due, and the floor max(pages x latency, due / 30 per s, transactions / 400 per s).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BENCH_SETTINGS = {"KEY_VAULT_RETRY_TOTAL": "4", "ROTATION_CONCURRENCY": "8", "ROTATION_BUDGET_SECONDS": "480"}


def start_vault(state_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env_file = state_dir / "vault.env"
    process = subprocess.Popen(
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
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                "the local Key Vault did not start; run `python -m localdev.vault --port 0` to see why"
            )
        time.sleep(0.05)
    return process, dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


async def seed(client: Any, total: int, due: int, concurrency: int = 64) -> None:
    now = datetime.now(UTC)
    every = max(1, total // max(1, due))
    semaphore = asyncio.Semaphore(concurrency)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        is_due = i % every == 0 and i // every < due
        async with semaphore:
            await client.set_secret(
                f"s-{i:05d}",
                "seed-value",
                tags={"ValidityPeriodDays": "60"},
                expires_on=now + timedelta(days=5 if is_due else 50),
            )
        done += 1
        if done % 2500 == 0:
            print(f"  seeded {done}/{total}", flush=True)

    await asyncio.gather(*(one(i) for i in range(total)))


async def naive_sweep(client: Any, concurrency: int) -> int:
    """Read every secret (value included) to decide; count what it would rotate."""
    semaphore = asyncio.Semaphore(concurrency)
    now = datetime.now(UTC)
    would = 0

    async def decide(name: str) -> None:
        nonlocal would
        async with semaphore:
            secret = await client.get_secret(name)
        expires = secret.properties.expires_on
        if (
            (secret.properties.tags or {}).get("ValidityPeriodDays")
            and expires
            and expires - now <= timedelta(days=30)
        ):
            would += 1

    tasks = []
    async for props in client.list_properties_of_secrets(max_page_size=25):
        tasks.append(asyncio.create_task(decide(props.name)))
    await asyncio.gather(*tasks)
    return would


def transactions(control: Any) -> int:
    return int(control.stats()["total"])


async def scenario(control: Any, total: int, due: int, latency: float) -> None:
    from shared.keyvault import close_secret_client, get_secret_client
    from shared.rotation.engine import RotationEngine
    from shared.settings import get_settings

    control.reset()
    control.set_latency(0)
    control.set_throttling(False)
    client = await get_secret_client()
    started = time.perf_counter()
    await seed(client, total, due)
    print(f"seeded {total} secrets ({due} due) in {time.perf_counter() - started:.1f} s")
    control.set_latency(latency)
    control.set_throttling(True, transactions_per_10s=4000, creates_per_10s=300, retry_after=1.0)
    settings = get_settings()

    time.sleep(10.5)  # an empty throttle window for each measurement
    started = time.perf_counter()
    listed = 0
    async for page in client.list_properties_of_secrets(max_page_size=25).by_page():
        listed += len([item async for item in page])
    list_seconds = time.perf_counter() - started

    time.sleep(10.5)
    before = transactions(control)
    started = time.perf_counter()
    would = await naive_sweep(client, settings.rotation_concurrency)
    naive_seconds = time.perf_counter() - started
    naive_tx = transactions(control) - before

    time.sleep(10.5)
    before = transactions(control)
    statuses_before = dict(control.stats()["statuses"])
    started = time.perf_counter()
    summary = await RotationEngine(client, settings).sweep()
    engine_seconds = time.perf_counter() - started
    engine_tx = transactions(control) - before
    throttled = control.stats()["statuses"].get("429", 0) - statuses_before.get("429", 0)
    await close_secret_client()

    pages = math.ceil(total / 25)
    budget = pages + 3 * due
    floor = max(pages * latency, due / 30.0, engine_tx / 400.0)
    print(f"N={total} due={due} latency={latency * 1000:.0f} ms, throttling on")
    print(
        f"  list  : {pages:6d} transactions {list_seconds:7.2f} s ({listed} secrets, "
        f"{list_seconds / pages * 1000:.1f} ms per page against {latency * 1000:.0f} ms injected latency)"
    )
    print(
        f"  naive : {naive_tx:6d} transactions {naive_seconds:7.2f} s (would rotate {would}; rotations not included)"
    )
    print(
        f"  engine: {engine_tx:6d} transactions {engine_seconds:7.2f} s  outcomes {dict(summary.outcomes)}  "
        f"429s {throttled}"
    )
    print(
        f"  transactions: engine/budget {engine_tx}/{budget} = {engine_tx / budget:.3f} (goal <= 1), "
        f"naive/engine = {naive_tx / engine_tx:.1f}x"
    )
    print(
        f"  wall time: engine/floor {engine_seconds:.2f}/{floor:.2f} = {engine_seconds / floor:.3f} (goal <= 1.25), "
        f"naive/engine = {naive_seconds / engine_seconds:.1f}x, engine/list-only = {engine_seconds / list_seconds:.3f}"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--secrets", type=int, default=10_000)
    parser.add_argument("--due", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()
    from localdev.vault.client import ControlClient

    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        process, env = start_vault(Path(tmp))
        os.environ.update(env)
        os.environ.update(BENCH_SETTINGS)
        control = ControlClient.for_state_dir(Path(tmp))
        try:
            for due in args.due:
                await scenario(control, args.secrets, due, args.latency)
        finally:
            control.close()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
