"""One rotation sweep over 200 PostgreSQL-backed secrets vs a hand-written floor, same servers, same run.

    .venv/bin/python bench/sweep_postgres.py [--secrets 200] [--latency 0 0.02] [--concurrency 8]

A throw-away PostgreSQL (localdev/databases.py: TLS verify-full, scram-sha-256) and the local Key Vault
(own process, in memory, throttling off) are started; N roles and N secrets (RotationType=postgresql,
single user, all due) are seeded. For each injected vault latency:
  floor   the least any rotation of these secrets can do, with the same concurrency: list the vault once, and
          per secret 3 vault transactions (list its versions, set the disabled pending version, enable it)
          plus the database round trips (probe the pending password, log in with the current one and
          ALTER ROLE with a SCRAM verifier, log in with the new one);
  engine  shared.rotation's sweep doing the real thing (which also reads the current value: one GetSecret
          more per secret than the floor).
Both leave every secret rotated and still due, so the next measurement starts from the same state.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.sweep_rotation import start_vault  # noqa: E402

SETTINGS = {"KEY_VAULT_RETRY_TOTAL": "4", "ROTATION_BUDGET_SECONDS": "480"}


class OneProcessLease:
    """The cross-instance lease the engine requires for target rotators; one process here, so a no-op."""

    @asynccontextmanager
    async def hold(self, name: str) -> Any:
        yield


def due_soon() -> datetime:
    return datetime.now(UTC) + timedelta(days=5)


async def seed(client: Any, server: Any, total: int) -> dict[str, str]:
    import psycopg

    passwords = {f"bench_{i:04d}": f"Seed-{i:04d}-pass-Aa9" for i in range(total)}
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        for user, password in passwords.items():
            conn.execute(f"DROP ROLE IF EXISTS {user}")
            conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    semaphore = asyncio.Semaphore(32)

    async def one(user: str, password: str) -> None:
        async with semaphore:
            await client.set_secret(
                user.replace("_", "-"),
                password,
                tags={
                    "ValidityPeriodDays": "60",
                    "RotationType": "postgresql",
                    "CredentialId": user,
                    "DbHost": f"127.0.0.1:{server.port}",
                },
                expires_on=due_soon(),
            )

    await asyncio.gather(*(one(u, p) for u, p in passwords.items()))
    return passwords


async def floor_sweep(client: Any, server: Any, passwords: dict[str, str], concurrency: int) -> None:
    """The minimal rotation of every secret: 3 vault transactions + the database round trips."""
    import psycopg
    from psycopg import sql

    from shared.rotation.policy import carried_tags
    from shared.rotation.rotators._database import generate_password

    semaphore = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        user = name.replace("-", "_")
        async with semaphore:
            versions = [v async for v in client.list_properties_of_secret_versions(name)]
            latest = max(versions, key=lambda v: v.created_on)
            new = generate_password(32, "unreserved", user)
            tags = carried_tags(latest.tags)  # the engine's bookkeeping of older versions is not copied
            stored = await client.set_secret(name, new, enabled=False, tags=tags, expires_on=due_soon())
            try:  # the probe: the pending password does not log in yet
                await psycopg.AsyncConnection.connect(server.conninfo(user, new))
                raise AssertionError("the pending password logged in before it was set")
            except psycopg.OperationalError:
                pass
            async with await psycopg.AsyncConnection.connect(
                server.conninfo(user, passwords[user]), autocommit=True
            ) as conn:
                verifier = conn.pgconn.encrypt_password(
                    new.encode(), user.encode(), b"scram-sha-256"
                ).decode()
                await conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier))
                )
            async with await psycopg.AsyncConnection.connect(server.conninfo(user, new)) as conn:
                await conn.execute("SELECT 1")
            await client.update_secret_properties(
                name, stored.properties.version, enabled=True, expires_on=due_soon()
            )
            passwords[user] = new

    # Rotations start as pages arrive, as the engine's sweep does.
    tasks = [
        asyncio.create_task(one(p.name)) async for p in client.list_properties_of_secrets(max_page_size=25)
    ]
    await asyncio.gather(*tasks)


async def engine_sweep(client: Any, concurrency: int) -> Any:
    from shared.locks import SecretLocks
    from shared.rotation.engine import RotationEngine
    from shared.settings import get_settings

    get_settings.cache_clear()
    os.environ["ROTATION_CONCURRENCY"] = str(concurrency)
    engine = RotationEngine(client, get_settings(), locks=SecretLocks(distributed=OneProcessLease()))
    return await engine.sweep()


async def refresh_passwords(client: Any, passwords: dict[str, str]) -> None:
    """After the engine rotated, the vault holds the passwords (the floor needs them in hand)."""
    for user in passwords:
        passwords[user] = (await client.get_secret(user.replace("_", "-"))).value
        await client.update_secret_properties(user.replace("_", "-"), expires_on=due_soon())


async def run(args: argparse.Namespace, control: Any, server: Any) -> None:
    from shared.keyvault import close_secret_client, get_secret_client

    control.reset()
    control.set_latency(0)
    control.set_throttling(False)
    client = await get_secret_client()
    passwords = await seed(client, server, args.secrets)
    print(f"seeded {args.secrets} roles and secrets; PostgreSQL {server.version} on 127.0.0.1:{server.port}")
    try:
        for latency in args.latency:
            control.set_latency(latency)
            floors, engines = [], []
            for _ in range(args.repeat):
                started = time.perf_counter()
                await floor_sweep(client, server, passwords, args.concurrency)
                floors.append(time.perf_counter() - started)
                started = time.perf_counter()
                summary = await engine_sweep(client, args.concurrency)
                engines.append(time.perf_counter() - started)
                rotated = summary.outcomes.get("Rotated", 0)
                if rotated != args.secrets or summary.errors:
                    raise SystemExit(f"the engine rotated {rotated}/{args.secrets}: {summary.errors[:3]}")
                control.set_latency(0)
                await refresh_passwords(client, passwords)
                control.set_latency(latency)
            floor, engine = min(floors), min(engines)
            print(
                f"latency {latency * 1000:.0f} ms, concurrency {args.concurrency}, {args.secrets} secrets "
                f"(best of {args.repeat}):"
            )
            print(f"  floor : {floor:6.2f} s  ({args.secrets / floor:5.1f} rotations/s)")
            print(f"  engine: {engine:6.2f} s  ({args.secrets / engine:5.1f} rotations/s)")
            print(f"  wall time engine/floor = {engine / floor:.3f} (goal <= 1.3)")
    finally:
        await close_secret_client()


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.02])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from localdev.databases import DatabaseUnavailable, start_postgres
    from localdev.vault.client import ControlClient

    tmp = Path(tempfile.mkdtemp(prefix="pg-bench-"))
    try:
        server = start_postgres(
            tmp / "pg", preload=(), extra={"log_statement": "none", "log_connections": "off"}
        )
    except DatabaseUnavailable as exc:
        print(f"skipped: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    process = None
    try:
        (tmp / "vault").mkdir()
        process, env = start_vault(tmp / "vault")
        os.environ.update(env)
        os.environ.update(SETTINGS)
        os.environ["DB_CA_BUNDLE"] = str(server.tls.ca_cert)
        control = ControlClient.for_state_dir(tmp / "vault")
        try:
            await run(args, control, server)
        finally:
            control.close()
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
