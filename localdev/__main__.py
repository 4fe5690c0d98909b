"""`python -m localdev`: the local Key Vault, its identity endpoint and the Functions host on one event loop.

The vault starts first and its coordinates (KEY_VAULT_URL, CA bundle, identity endpoint) go into the
environment before function_app is imported, so the app's one shared client talks to it over verified
HTTPS with a real managed-identity token. `python -m localdev host` serves the app alone against whatever
vault local.settings.json names. Ctrl-C or SIGTERM stops everything and exits 0.
"""

# ruff: noqa: E402
from __future__ import annotations

import time

_BEGAN = time.perf_counter()  # before the heavy imports: "ready in" covers them

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from localdev.host.keys import HostKeys
from localdev.host.server import HostConfig, RunningHost, bind_socket, start_host
from localdev.statedir import hold_lock, private_dir, write_private

_log = logging.getLogger("localdev")

EVENTS_FUNCTION = "keyvault_events"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".localdev"),
        help="keys.json, host.env, vault.env, certificates, vault store (default .localdev)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default loopback only)")
    parser.add_argument(
        "--port", type=int, default=7071, help="Functions host port (default 7071, 0 = any free)"
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="accept requests without keys, as `func start` does by default"
    )
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=Path.cwd(),
        help="folder with function_app.py, host.json and local.settings.json (default: cwd)",
    )
    parser.add_argument(
        "--script-file",
        default=os.environ.get("PYTHON_SCRIPT_FILE_NAME", "function_app.py"),
        help="the app's script (default function_app.py)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    if argv[:1] == ["host"]:
        parser = argparse.ArgumentParser(
            prog="python -m localdev host",
            description="Serve function_app.py alone, against the vault local.settings.json names.",
        )
        _common(parser)
        args = parser.parse_args(argv[1:])
        args.mode = "host"
        return args
    parser = argparse.ArgumentParser(
        prog="python -m localdev",
        description=__doc__.split("\n\n")[0],
        epilog="`python -m localdev host --help`: the host alone.",
    )
    _common(parser)
    parser.add_argument(
        "--vault-port", type=int, default=8443, help="local Key Vault HTTPS port (default 8443)"
    )
    parser.add_argument(
        "--identity-port", type=int, default=8081, help="managed-identity endpoint port (default 8081)"
    )
    parser.add_argument("--memory", action="store_true", help="in-memory vault: nothing survives a restart")
    parser.add_argument(
        "--cloud-port", type=int, default=8444, help="local Azure control plane HTTPS port (default 8444)"
    )
    parser.add_argument(
        "--no-events",
        action="store_true",
        help=f"do not deliver Key Vault events to the {EVENTS_FUNCTION} function",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also start a local PostgreSQL (TLS, scram-sha-256) for database rotations; see postgres.env",
    )
    parser.add_argument("--postgres-port", type=int, default=0, help="its port (default 0 = any free)")
    parser.add_argument(
        "--no-azurite",
        action="store_true",
        help="do not start Azurite (the queue triggers then wait for storage; see AzureWebJobsStorage)",
    )
    parser.add_argument(
        "--azurite-port",
        type=int,
        default=10000,
        help="Azurite's blob port; queue and table are the next two (default 10000 = UseDevelopmentStorage's; "
        "0 = free ports, and AzureWebJobsStorage is set to them)",
    )
    args = parser.parse_args(argv)
    args.mode = "all"
    return args


def _banner(host: RunningHost, state_dir: Path, vault: Any | None, auth: bool, ready_seconds: float) -> str:
    lines = [f"localdev ready in {ready_seconds:.2f}s", ""]
    lines.append(f"  Functions host   {host.base_url}   (auth {'on' if auth else 'off: --no-auth'})")
    if vault is not None:
        lines.append(f"  Key Vault        {vault.vault_url}   (CA {vault.ca_bundle})")
        lines.append(f"  Identity         {vault.identity_endpoint}")
    lines.append(f"  State            {state_dir}  (keys.json, host.env{', vault.env' if vault else ''})")
    if host.settings_file:
        lines.append(f"  Settings         {host.settings_file}")
    lines += [
        "",
        "  Keys (x-functions-key header or ?code=)",
        f"    master           {host.keys.masterKey}",
        f"    default function {host.keys.defaultFunctionKey}",
        f"    eventgrid system {host.keys.eventGridSystemKey}",
        "",
        "  Functions",
    ]
    prefix = f"/{host.host.route_prefix}" if host.host.route_prefix else ""
    for function in host.registry.functions.values():
        state = "  [disabled]" if function.disabled else ""
        if function.is_http:
            methods = ",".join(function.methods)
            lines.append(
                f"    {function.name}: [{methods}] {host.base_url}{prefix}/{function.route}"
                f"  ({function.auth_level}){state}"
            )
        elif function.schedule is not None:
            upcoming = host.host.timers.next_occurrence(function.name)
            when = (
                f"next {upcoming:%Y-%m-%d %H:%M:%S}Z"
                if upcoming
                else f"IN ERROR, not running: {function.extra.get('error', 'its schedule never occurs')}"
            )
            lines.append(
                f"    {function.name}: timer {function.schedule} = "
                f"{function.extra.get('resolved_schedule')}, {when}{state}"
            )
        else:
            lines.append(
                f"    {function.name}: {function.trigger_type} "
                f"{host.base_url}/runtime/webhooks/eventgrid?functionName={function.name}{state}"
            )
    key_header = "" if not auth else f' -H "x-functions-key: {host.keys.defaultFunctionKey}"'
    lines += [
        "",
        "  Try",
        f"    curl -s{key_header} -X PUT -H 'Content-Type: application/json' "
        f'-d \'{{"value": "s3cret-value"}}\' {host.base_url}{prefix}/secrets/demo-secret',
        f"    curl -s{key_header} {host.base_url}{prefix}/secrets/demo-secret",
        "",
        "  Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _storage(args: argparse.Namespace, state_dir: Path) -> tuple[Any, str]:
    """Azurite for the queue triggers (and Core Tools' AzureWebJobsStorage=UseDevelopmentStorage=true):
    started on the development ports with its data in the state dir, reused when one already listens there,
    or a line saying why there is none and how to get it."""
    from localdev.azurite import HOW_TO_INSTALL, AzuriteError, azurite_unavailable, listening, start_azurite

    label = "  Storage          "
    if args.no_azurite:
        return None, f"{label}Azurite not started (--no-azurite): queue triggers wait for AzureWebJobsStorage"
    reason = azurite_unavailable()
    if reason is not None:
        return None, f"{label}no Azurite ({reason}): queue triggers wait for storage; {HOW_TO_INSTALL}"
    base = args.azurite_port
    if base and listening(base) and listening(base + 1):
        return None, f"{label}Azurite already running on 127.0.0.1:{base}-{base + 2} (used as it is)"
    folder = state_dir / "azurite"
    try:
        running = start_azurite(
            folder, ports=(base, base + 1, base + 2) if base else None, location=folder / "data"
        )
    except AzuriteError as exc:
        return None, f"{label}Azurite did not start ({exc}); queue triggers wait for storage"
    if not running.on_development_ports:  # UseDevelopmentStorage=true would miss it: name it (env wins)
        os.environ["AzureWebJobsStorage"] = running.connection_string  # noqa: SIM112 - the host's own name
    return running, (
        f"{label}Azurite  blob http://127.0.0.1:{running.blob_port}  queue http://127.0.0.1:{running.queue_port}"
        f"  (data in {folder / 'data'})"
    )


async def _close_app_client() -> None:
    """Close the app's process-wide clients on this loop (in Azure the worker process just exits): the Key
    Vault clients, the Azure key and Entra rotators' ARM/Graph pipelines, the fan-out's queue outbox and the
    rotation lease's blob client. Unclosed, aiohttp reports each of their sessions when the host exits."""
    try:
        from shared.fanout.queues import close_outbox
        from shared.keyvault import close_secret_client
        from shared.locks import close_lease_lock
        from shared.rotation.rotators.azure_rest import close_azure_clients
    except ImportError:  # another app than this repository's: it has none of these
        return
    closers = (
        ("Key Vault client", close_secret_client),
        ("rotators' Azure clients", close_azure_clients),
        ("fan-out queue client", close_outbox),
        ("rotation lease's blob client", close_lease_lock),
    )
    for what, close in closers:
        try:
            await close()
        except Exception as exc:  # noqa: BLE001 - shutdown goes on; say what failed
            _log.warning("closing the app's %s failed: %s", what, type(exc).__name__)


async def run(args: argparse.Namespace) -> int:
    """Start everything, print the banner, wait for Ctrl-C/SIGTERM, stop everything."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    app_dir = args.app_dir.resolve()
    state_dir = private_dir(
        (args.state_dir if args.state_dir.is_absolute() else Path.cwd() / args.state_dir).resolve()
    )
    # First, before anything in the state dir is touched or any port is tried: is another one running here?
    host_lock = hold_lock(
        state_dir / "host.lock",
        f"another localdev host (make run / python -m localdev) is using {state_dir}; its host.env and "
        "vault.env are left as they are. Use that one, stop it first (Ctrl-C where it runs), or start this "
        "one with --state-dir <another dir> (and other ports: --port, --vault-port, --identity-port).",
    )
    try:
        return await _run_locked(args, app_dir, state_dir, stop)
    finally:
        host_lock.close()


async def _run_locked(args: argparse.Namespace, app_dir: Path, state_dir: Path, stop: asyncio.Event) -> int:
    (state_dir / "host.env").unlink(missing_ok=True)  # ours now (stale); it appears once everything is up
    keys = HostKeys.load_or_create(state_dir)
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    vault = None
    cloud: Any = None
    host: RunningHost | None = None
    postgres: Any = None
    azurite: Any = None
    azurite_line = ""
    try:
        if args.mode == "all":
            from localdev.vault.server import VaultConfig, start_vault

            loopback = "127.0.0.1" if args.host in ("127.0.0.1", "localhost", "0.0.0.0") else args.host
            events_url = (
                None
                if args.no_events
                else (
                    f"http://{loopback}:{port}/runtime/webhooks/eventgrid?functionName={EVENTS_FUNCTION}"
                    f"&code={keys.eventGridSystemKey}"
                )
            )
            vault = await start_vault(
                VaultConfig(
                    state_dir=state_dir,
                    host=args.host,
                    port=args.vault_port,
                    identity_port=args.identity_port,
                    memory=args.memory,
                    events_url=events_url,
                )
            )
            os.environ.update(vault.env())  # before function_app is imported
            from localdev.cloud.server import CloudConfig, start_cloud

            cloud = await start_cloud(CloudConfig(state_dir=state_dir, host=args.host, port=args.cloud_port))
            os.environ.update(cloud.env())  # ARM, Graph and Entra for the key and app secret rotators
            _log.info("local Azure control plane at %s (URLs in %s)", cloud.url, state_dir / "cloud.env")
            azurite, azurite_line = await asyncio.to_thread(_storage, args, state_dir)
        if getattr(args, "postgres", False):  # before the app starts: it reads DB_CA_BUNDLE
            from localdev.databases import start_local_postgres

            postgres, postgres_line = await asyncio.to_thread(
                start_local_postgres, state_dir, args.postgres_port
            )
        host = await start_host(
            HostConfig(
                app_dir=app_dir,
                script_file=args.script_file,
                host=args.host,
                port=port,
                state_dir=state_dir,
                auth=not args.no_auth,
                sock=sock,
            )
        )
        if vault is not None and not args.no_events and host.registry.get(EVENTS_FUNCTION) is None:
            _log.warning(
                "the app has no %s function; Key Vault events will not be delivered", EVENTS_FUNCTION
            )
        write_private(state_dir / "host.env", "".join(f"{k}={v}\n" for k, v in host.env().items()).encode())
        banner = _banner(host, state_dir, vault, not args.no_auth, time.perf_counter() - _BEGAN)
        if postgres is not None:
            banner = banner.replace("\n  State ", f"\n{postgres_line}\n  State ", 1)
        if azurite_line:
            banner = banner.replace("\n  State ", f"\n{azurite_line}\n  State ", 1)
        print(banner, flush=True)
        await stop.wait()
        print("\nstopping: host, app client" + (", vault" if vault is not None else ""), flush=True)
    finally:
        if host is not None:
            await host.stop()
        else:
            sock.close()
        await _close_app_client()
        if cloud is not None:
            await cloud.stop()
        if vault is not None:
            await vault.stop()
        if postgres is not None:
            postgres.stop()
        if azurite is not None:
            azurite.stop()
        (state_dir / "host.env").unlink(missing_ok=True)
    print("stopped cleanly", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if logging.getLogger().level > logging.DEBUG:
        # The SDKs log every HTTP exchange at INFO; host.json keeps Azure.Core at Warning, so do we.
        logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        # Load errors, bad settings, busy ports: one line that says what to fix, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
