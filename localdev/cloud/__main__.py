"""`python -m localdev.cloud`: the local Azure control plane beside a local Key Vault, until Ctrl-C/SIGTERM.

Use the vault's state dir: the control plane serves the vault's certificate and accepts the tokens of its
managed-identity endpoint. `make run` starts both itself; this is for `python -m localdev.vault` or Core Tools.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .server import CloudConfig, start_cloud


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m localdev.cloud", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8444, help="HTTPS port (default 8444, 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback only)")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".localdev"),
        help="the local vault's state dir (default .localdev)",
    )
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cloud = await start_cloud(CloudConfig(state_dir=args.state_dir, host=args.host, port=args.port))
    print(f"local Azure control plane on {cloud.url} (CA {cloud.ca_bundle})", flush=True)
    for key, value in cloud.env().items():
        print(f"  {key}={value}", flush=True)
    print(f"  (also in {cloud.state_dir / 'cloud.env'}; Ctrl-C stops it)", flush=True)
    try:
        await stop.wait()
    finally:
        await cloud.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(run(parse_args(argv)))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
