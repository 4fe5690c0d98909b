"""Throughput of the local Key Vault: mixed get/set/list over keep-alive HTTPS, emulator in its own process.

    .venv/bin/python bench/vault_throughput.py [--requests 20000] [--seconds 10] [--concurrency 32]

Runs three targets in one go, each in a separate process from this load generator:
  1. baseline: a trivial aiohttp HTTPS endpoint with the same TLS certificate (the transport's ceiling),
  2. the emulator with the in-memory store,
  3. the emulator with the SQLite store (throttling off) — the figure the >= 2,000 tx/s goal applies to.
Each run is bounded by a request count and a duration; it prints requests, seconds, tx/s, p50/p99 and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
GOAL_TPS = 2000.0
API = "api-version=2026-04-01"


@dataclass
class RunResult:
    label: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def tps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

    def line(self) -> str:
        return (
            f"{self.label:<28} requests={self.requests:>6} errors={self.errors:>3} seconds={self.seconds:6.2f} "
            f"tx/s={self.tps:8.1f} p50={self.percentile(0.5):6.2f}ms p99={self.percentile(0.99):6.2f}ms"
        )


def _start_emulator(state_dir: Path, memory: bool) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    args = [
        sys.executable,
        "-m",
        "localdev.vault",
        "--port",
        "0",
        "--identity-port",
        "0",
        "--state-dir",
        str(state_dir),
        "--log-level",
        "WARNING",
    ]
    if memory:
        args.append("--memory")
    env_file = state_dir / "vault.env"
    env_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        args,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the emulator did not start; run `python -m localdev.vault --port 0` to see why")
        time.sleep(0.05)
    return process, dict(line.split("=", 1) for line in env_file.read_text().splitlines())


def _start_trivial(ca_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A minimal aiohttp HTTPS server on the emulator's certificate: what any aiohttp TLS service costs."""
    code = (
        "import asyncio, json, ssl, sys\n"
        "from aiohttp import web\n"
        "ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n"
        f"ctx.load_cert_chain({str(ca_dir / 'server.pem')!r}, {str(ca_dir / 'server.key')!r})\n"
        "body = json.dumps({'value': 'x', 'id': 'https://localhost/secrets/a/b', 'attributes': {}}).encode()\n"
        "async def ok(request):\n"
        "    await request.read()\n"
        "    return web.Response(body=body, content_type='application/json')\n"
        "async def main():\n"
        "    app = web.Application(); app.router.add_route('*', '/{tail:.*}', ok)\n"
        "    runner = web.AppRunner(app, access_log=None); await runner.setup()\n"
        "    site = web.TCPSite(runner, '127.0.0.1', 0, ssl_context=ctx); await site.start()\n"
        "    print(site._server.sockets[0].getsockname()[1], flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    port = process.stdout.readline().decode().strip()
    if not port:
        raise SystemExit("the baseline server did not start")
    return process, f"https://localhost:{port}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _token(env: dict[str, str]) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            env["IDENTITY_ENDPOINT"],
            headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
            params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        ) as r:
            r.raise_for_status()
            return (await r.json())["access_token"]


async def _load(
    label: str,
    base: str,
    ca: str,
    token: str,
    *,
    total: int,
    seconds: float,
    concurrency: int,
    names: list[str],
    seed: bool,
) -> RunResult:
    context = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context, keepalive_timeout=60)
    async with aiohttp.ClientSession(base_url=None, connector=connector, headers=headers) as session:
        if seed:
            await asyncio.gather(*(_put(session, base, n) for n in names))
        latencies: list[float] = []
        errors = 0
        issued = 0
        rng = random.Random(7)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal issued, errors
            while issued < total and time.perf_counter() < deadline:
                issued += 1
                roll = rng.random()
                name = rng.choice(names)
                began = time.perf_counter()
                if roll < 0.70:
                    status = await _get(session, f"{base}/secrets/{name}/?{API}")
                elif roll < 0.90:
                    status = await _put(session, base, name)
                else:
                    status = await _get(session, f"{base}/secrets?{API}&maxresults=25")
                latencies.append(time.perf_counter() - began)
                if status != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return RunResult(label, len(latencies), errors, elapsed, latencies)


async def _get(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


async def _put(session: aiohttp.ClientSession, base: str, name: str) -> int:
    async with session.put(f"{base}/secrets/{name}?{API}", json={"value": os.urandom(12).hex()}) as response:
        await response.read()
        return response.status


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000, help="upper bound of requests per run")
    parser.add_argument("--seconds", type=float, default=10.0, help="upper bound of seconds per run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--secrets", type=int, default=200, help="secrets seeded before the run")
    args = parser.parse_args()
    names = [f"bench-{i:04d}" for i in range(args.secrets)]
    bounds = dict(total=args.requests, seconds=args.seconds, concurrency=args.concurrency, names=names)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="vault-bench-") as tmp:
        for label, memory in (("emulator, in-memory store", True), ("emulator, SQLite store", False)):
            state = Path(tmp) / ("memory" if memory else "sqlite")
            state.mkdir()
            print(f"# starting {label} ...", flush=True)
            process, env = _start_emulator(state, memory)
            try:
                token = await _token(env)
                if not results:  # the baseline uses the first emulator's certificate
                    trivial, url = _start_trivial(state / "tls")
                    try:
                        print("# running baseline: trivial aiohttp HTTPS endpoint ...", flush=True)
                        results.append(
                            await _load(
                                "baseline (trivial aiohttp)",
                                url,
                                env["KEY_VAULT_CA_BUNDLE"],
                                token,
                                seed=False,
                                **bounds,
                            )
                        )
                    finally:
                        _stop(trivial)
                print(f"# running {label} ...", flush=True)
                results.append(
                    await _load(
                        label, env["KEY_VAULT_URL"], env["KEY_VAULT_CA_BUNDLE"], token, seed=True, **bounds
                    )
                )
            finally:
                _stop(process)
    baseline, memory_run, sqlite_run = results
    print()
    print(
        f"mix: 70% get latest, 20% set, 10% list (25 per page); {args.concurrency} keep-alive connections; "
        f"{args.secrets} secrets; bounds {args.requests} requests / {args.seconds:g} s per run"
    )
    for result in results:
        print(result.line())
    print()
    print(f"SQLite store vs goal ({GOAL_TPS:.0f} tx/s): {sqlite_run.tps / GOAL_TPS:5.2f}x")
    print(f"SQLite store vs in-memory store:       {sqlite_run.tps / memory_run.tps:5.2f}x")
    print(f"SQLite store vs trivial aiohttp HTTPS:   {sqlite_run.tps / baseline.tps:5.2f}x")
    print(f"(cores: {os.cpu_count()}; load generator and emulator in separate processes)")
    return 0 if sqlite_run.errors == 0 and memory_run.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
