"""`python -m localdev.vault`: the local Key Vault and its managed-identity endpoint until Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .auth import default_identities, make_identity
from .events import DEFAULT_WEBHOOK
from .runtime import CONTROL_KEY_FILE, VaultConfig
from .server import StateDirInUse, start_vault


def _retry_after(raw: str) -> float | None:
    return None if raw.lower() in {"none", "off", "absent"} else float(raw)


def _identity(raw: str) -> tuple[str, list[str]]:
    name, sep, roles = raw.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=ROLE[,ROLE...], got {raw!r}")
    return name, [r for r in roles.split(",") if r]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m localdev.vault", description=__doc__)
    p.add_argument("--port", type=int, default=8443, help="vault HTTPS port (0: any free port)")
    p.add_argument(
        "--identity-port", type=int, default=8081, help="identity endpoint HTTP port (0: any free port)"
    )
    p.add_argument("--host", default="127.0.0.1", help="vault listen address (default loopback only)")
    p.add_argument(
        "--state-dir", type=Path, default=Path(".localdev"), help="certificates, keys, SQLite store"
    )
    p.add_argument(
        "--memory", action="store_true", help="keep secrets in memory only (nothing survives a restart)"
    )
    p.add_argument("--vault-name", default="localvault")
    p.add_argument(
        "--vaults",
        type=int,
        default=1,
        help="vaults to serve, each on its own port (--port, --port+1, ...; all free ones with --port 0), "
        "named VAULT_NAME, VAULT_NAME2, ...; they share the CA, the identity endpoint and its tokens",
    )
    p.add_argument("--retention-days", type=int, default=90, help="soft-delete retention, 7-90")
    p.add_argument("--purge-protection", action="store_true")
    p.add_argument("--throttling", action="store_true", help="enforce the service limits (429)")
    p.add_argument("--transactions-per-10s", type=int, default=4000)
    p.add_argument("--creates-per-10s", type=int, default=300)
    p.add_argument(
        "--throttle-retry-after",
        type=_retry_after,
        default=1.0,
        help="Retry-After seconds on 429, or 'none' to omit the header like the real service",
    )
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every vault request")
    p.add_argument("--delete-latency", type=float, default=0.0, help="seconds before a delete completes")
    p.add_argument("--recover-latency", type=float, default=0.0, help="seconds before a recovery completes")
    p.add_argument(
        "--fault-seed", type=int, help="seed for injected faults' random choices (repeatable fault runs)"
    )
    p.add_argument("--events", action="store_true", help=f"deliver Key Vault events to {DEFAULT_WEBHOOK}")
    p.add_argument("--events-url", help="deliver Key Vault events (Event Grid schema) to this webhook URL")
    p.add_argument("--events-check-interval", type=float, default=60.0, help="seconds between expiry checks")
    p.add_argument("--identities-file", type=Path, help="JSON file of identities and their roles")
    p.add_argument(
        "--system-roles",
        default=None,
        help="roles of the system-assigned identity, comma-separated (default: officer,purge)",
    )
    p.add_argument(
        "--identity",
        action="append",
        type=_identity,
        default=[],
        metavar="NAME=ROLE[,ROLE]",
        help="add a user-assigned identity (repeatable), e.g. reader=reader or app=secrets-user",
    )
    p.add_argument("--identity-header", help="the IDENTITY_HEADER secret (default: random per start)")
    p.add_argument("--token-lifetime", type=float, default=24 * 3600.0, help="seconds a token stays valid")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> VaultConfig:
    identities = None
    if args.system_roles is not None or args.identity:
        system = (
            [make_identity("system", args.system_roles.split(","), system_assigned=True)]
            if args.system_roles is not None
            else default_identities()
        )
        identities = system + [make_identity(name, roles) for name, roles in args.identity]
    return VaultConfig(
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        identity_port=args.identity_port,
        memory=args.memory,
        vault_name=args.vault_name,
        vaults=args.vaults,
        retention_days=args.retention_days,
        purge_protection=args.purge_protection,
        throttling=args.throttling,
        transactions_per_10s=args.transactions_per_10s,
        creates_per_10s=args.creates_per_10s,
        throttle_retry_after=args.throttle_retry_after,
        latency=args.latency,
        delete_latency=args.delete_latency,
        recover_latency=args.recover_latency,
        fault_seed=args.fault_seed,
        events_url=args.events_url or (DEFAULT_WEBHOOK if args.events else None),
        events_check_interval=args.events_check_interval,
        identities=identities,
        identities_file=args.identities_file,
        identity_header=args.identity_header,
        token_lifetime=args.token_lifetime,
    )


async def run(config: VaultConfig) -> None:
    running = await start_vault(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = "memory" if config.memory else f"SQLite {running.state_dir / 'vault.sqlite3'}"
    print(
        f"# local Key Vault ready in {running.started_seconds:.2f}s ({store}); "
        f"written to {running.state_dir / 'vault.env'}",
        flush=True,
    )
    for identity in running.runtime.authority.identities:
        kind = (
            "system-assigned" if identity.system_assigned else f"user-assigned client_id={identity.client_id}"
        )
        print(f"# identity {identity.name} ({kind}): {', '.join(identity.roles) or 'no roles'}", flush=True)
    for member in running.members if len(running.members) > 1 else []:
        print(f"# vault {member.name}: {member.vault_url} (test controls {member.control_url})", flush=True)
    print(
        f"# test controls: {running.control_url} (header X-Emulator-Key: "
        f"$(cat {running.state_dir / CONTROL_KEY_FILE}))",
        flush=True,
    )
    print(running.env_text(), end="", flush=True)
    await stop.wait()
    print("# stopping local Key Vault", flush=True)
    await running.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = config_from_args(args)
        asyncio.run(run(config))
    except (StateDirInUse, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
