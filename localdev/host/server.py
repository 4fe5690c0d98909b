"""Start and stop the host on the caller's event loop (so it can share the loop with the local vault)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from . import protocol
from .app import FunctionHost, create_app
from .appsettings import apply_settings, read_host_json, read_local_settings
from .clock import Clock, SystemClock
from .invocation import Invoker
from .keys import HostKeys
from .protocol import GuardedAppRunner
from .queues import QueueService, queue_service_for
from .registry import TIMER_TRIGGER, FunctionRegistry, load_registry
from .timers import TimerService

_log = logging.getLogger("localdev.host")


@dataclass
class HostConfig:
    """Where the app is and how to serve it. Port 0 picks a free port."""

    app_dir: Path = field(default_factory=Path.cwd)
    script_file: str = "function_app.py"
    host: str = "127.0.0.1"
    port: int = 7071
    state_dir: Path = Path(".localdev")
    auth: bool = True
    load_local_settings: bool = True
    # A socket bound in advance (by `python -m localdev`, which must know the port before the app loads).
    sock: socket.socket | None = None
    # What timers and retry delays read and sleep on (tests inject a fake one), and the backoff's jitter.
    clock: Clock | None = None
    rng: random.Random | None = None


@dataclass
class RunningHost:
    """A started host: its URL, keys and functions; `await stop()` shuts it down."""

    base_url: str
    port: int
    keys: HostKeys
    registry: FunctionRegistry
    host: FunctionHost
    settings_file: Path | None
    _runner: web.AppRunner
    queues: QueueService | None = None  # the queue triggers' listeners (localdev.host.queues)

    def env(self) -> dict[str, str]:
        """What clients need (written to <state-dir>/host.env by `python -m localdev`)."""
        return {
            "FUNCTIONS_BASE_URL": self.base_url,
            "FUNCTIONS_MASTER_KEY": self.keys.masterKey,
            "FUNCTIONS_DEFAULT_KEY": self.keys.defaultFunctionKey,
            "FUNCTIONS_EVENTGRID_KEY": self.keys.eventGridSystemKey,
        }

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop timers, let manual runs finish (up to `grace_seconds`), close the server and the pool."""
        await self.host.timers.stop()
        if self.queues is not None:
            await self.queues.stop()
        pending = list(self.host.background)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace_seconds)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        await self._runner.cleanup()
        await asyncio.to_thread(self.host.invoker.close)


async def start_host(config: HostConfig) -> RunningHost:
    """Load settings and the app (as Core Tools + the worker do), then listen; errors name their fix."""
    app_dir = config.app_dir.resolve()
    settings_file = None
    if config.load_local_settings:
        values, settings_file = read_local_settings(app_dir)
        apply_settings(values)
    host_json = read_host_json(app_dir)
    registry = load_registry(app_dir / config.script_file)
    state_dir = config.state_dir if config.state_dir.is_absolute() else app_dir / config.state_dir
    keys = HostKeys.load_or_create(state_dir)
    clock = config.clock or SystemClock()
    invoker = Invoker(
        str(app_dir),
        max_workers=int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "0")) or None,
        timeout_seconds=host_json.function_timeout_seconds,
        clock=clock,
        rng=config.rng,
    )
    timers = TimerService(
        [f for f in registry.functions.values() if f.trigger_type == TIMER_TRIGGER],
        invoker,
        os.environ,
        state_dir,
        clock,
    )
    function_host = FunctionHost(registry, keys, invoker, timers, host_json.route_prefix, config.auth)
    limit = os.environ.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", "").strip()
    if limit:
        if not limit.isdigit():
            raise ValueError(f"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT {limit!r}: give a number of bytes")
        function_host.body_limit = int(limit)
    # keepalive_timeout also closes a kept-alive connection whose next request's headers stall.
    runner = GuardedAppRunner(
        create_app(function_host),
        access_log=None,
        handle_signals=False,
        keepalive_timeout=protocol.KEEPALIVE_TIMEOUT,
    )
    await runner.setup()
    site: web.BaseSite
    if config.sock is not None:
        site = web.SockSite(runner, config.sock)
    else:
        site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        invoker.close()
        raise OSError(
            exc.errno,
            f"cannot listen on {config.host}:{config.port} ({exc.strerror}); "
            "pick another --port, or 0 for a free one",
        ) from None
    port = int(runner.addresses[0][1])
    shown = "127.0.0.1" if config.host in ("127.0.0.1", "localhost", "0.0.0.0", "") else config.host
    if ":" in shown:
        shown = f"[{shown}]"
    timers.start()
    queues = queue_service_for(list(registry.functions.values()), invoker, app_dir, clock, config.rng)
    if queues is not None:
        queues.start()
    _log.info("host listening on http://%s:%d with %d functions", shown, port, len(registry.functions))
    return RunningHost(
        f"http://{shown}:{port}", port, keys, registry, function_host, settings_file, runner, queues
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the host's listening socket early, so its port is known before the vault and the app start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port, or 0 for a free one",
        ) from None
    sock.setblocking(False)
    return sock
