"""A fleet of local processes for the fan-out's tests and benchmark (never deployed).

K local vaults in one child process (`python -m localdev.vault --vaults K`, memory store, one CA, one
identity endpoint, one token authority), Azurite (blob + queue, on disk in `state_dir`, free ports) and
any number of Functions host processes (`python -m localdev host`) pointed at all of them::

    config = FleetConfig(state_dir=tmp_path, vaults=4, latency=0.0, throttling=True,
                         app_settings={"FANOUT_CREATES_PER_SECOND": "30"})
    async with start_fleet(config) as fleet:
        fleet.vault_urls                  # ["https://localhost:<port>", ...], one per vault
        fleet.control(i)                  # ControlClient of vault i: stats, faults, latency, seed, clock
        fleet.storage_connection_string   # Azurite (blob + queue), for the SDKs' clients
        fleet.host_env()                  # the environment every host gets (see below)
        host = await fleet.start_host(extra_env=None)   # waits until it serves
        host.base_url, host.pid, host.log_path, host.master_key
        await host.invoke("scheduled_rotation")         # admin API: POST /admin/functions/<name> -> 202
        host.kill(signal.SIGKILL)                        # kill -9; stop_host reaps it
        await fleet.stop_host(host)       # SIGTERM, then SIGKILL after `grace` seconds

A host's environment: the caller's, minus anything that would point the app elsewhere (KEY_VAULT_*,
IDENTITY_*, MSI_*, AzureWebJobs*, FUNCTIONS_*, SWEEP_MODE, FANOUT_*), plus the vaults' settings
(KEY_VAULT_URL, KEY_VAULT_URLS, KEY_VAULT_CA_BUNDLE, IDENTITY_ENDPOINT/HEADER,
KEY_VAULT_VERIFY_CHALLENGE_RESOURCE=false), AzureWebJobsStorage=<Azurite>, SWEEP_MODE=queue,
AZURE_FUNCTIONS_ENVIRONMENT=Development (queue polling backs off to 2 s at most), timers that never
fire on their own (run them with `invoke`), then `FleetConfig.app_settings`, then `extra_env`.
Each host has its own state dir and log file (stdout and stderr) under `state_dir`; `log_tail()` is
for a failing test's report. Everything is stopped on leaving the `async with`, also on errors.

`azurite_unavailable()` says why Azurite cannot run here (None when it can): tests skip on it only when
Node.js itself is absent, and fail under CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .azurite import Azurite, AzuriteError, azurite_unavailable, start_azurite, stop_process, tail
from .vault.client import ControlClient
from .vault.runtime import CONTROL_KEY_FILE

REPO = Path(__file__).resolve().parents[1]
# Variables a developer's shell may carry that would point a host's app somewhere else.
FOREIGN_PREFIXES = (
    "KEY_VAULT_",
    "IDENTITY_",
    "MSI_",
    "AZURE_CLIENT_ID",
    "AzureWebJobs",
    "FUNCTIONS_",
    "SWEEP_MODE",
    "FANOUT_",
)
NEVER = "0 0 0 1 1 *"  # 1 January, midnight: a timer that does not fire during a run

__all__ = [
    "Azurite",
    "AzuriteError",
    "Fleet",
    "FleetConfig",
    "FleetError",
    "HostProcess",
    "azurite_unavailable",
    "start_azurite",
    "start_fleet",
]


class FleetError(RuntimeError):
    """A fleet process did not start (the message carries its log's tail) or cannot be found."""


def _read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


# ------------------------------------------------------------------------------------------ the fleet


@dataclass
class FleetConfig:
    """What to start. `vault_args` are extra `python -m localdev.vault` flags (e.g. ["--fault-seed", "9"])."""

    state_dir: Path
    vaults: int = 4
    latency: float = 0.0
    throttling: bool = True
    app_settings: Mapping[str, str] = field(default_factory=dict)
    app_dir: Path = REPO
    vault_args: list[str] = field(default_factory=list)
    host_log_level: str = "INFO"
    start_timeout: float = 60.0


@dataclass
class HostProcess:
    """One `python -m localdev host` child process."""

    name: str
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    base_url: str = ""
    master_key: str = field(default="", repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (default SIGKILL: kill -9, nothing runs on the host's side)."""
        if self.alive:
            self.process.send_signal(sig)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return tail(self.log_path, chars)

    async def invoke(self, function: str, input: str = "") -> None:
        """Run a function now through the admin API (as the portal's Test/Run does); 202 or FleetError."""
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.base_url}/admin/functions/{function}",
                json={"input": input},
                headers={"x-functions-key": self.master_key},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response,
        ):
            if response.status != 202:
                raise FleetError(f"{self.name}: POST admin/functions/{function}: {response.status}")


class Fleet:
    """The started fleet (from `start_fleet`); see the module docstring."""

    def __init__(self, config: FleetConfig, azurite: Azurite, vault_env: dict[str, str], control_key: str):
        self.config = config
        self.azurite = azurite
        self.vault_env = vault_env
        self.vault_urls: list[str] = vault_env.get("KEY_VAULT_URLS", vault_env["KEY_VAULT_URL"]).split(",")
        self.ca_bundle = vault_env["KEY_VAULT_CA_BUNDLE"]
        self._control_key = control_key
        self._controls: dict[int, ControlClient] = {}
        self.hosts: list[HostProcess] = []
        self._started = 0

    @property
    def storage_connection_string(self) -> str:
        return self.azurite.connection_string

    def control(self, index: int) -> ControlClient:
        """The test-controls client of vault `index` (0-based): stats, faults, latency, seed, clock..."""
        if not 0 <= index < len(self.vault_urls):
            raise IndexError(f"vault {index}: the fleet has {len(self.vault_urls)} vault(s)")
        if index not in self._controls:
            self._controls[index] = ControlClient(self.vault_urls[index], self.ca_bundle, self._control_key)
        return self._controls[index]

    def controls(self) -> list[ControlClient]:
        return [self.control(i) for i in range(len(self.vault_urls))]

    def host_env(self, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
        env.update(self.vault_env)
        env.update(
            {
                "KEY_VAULT_URLS": ",".join(self.vault_urls),
                "AzureWebJobsStorage": self.storage_connection_string,
                "SWEEP_MODE": "queue",
                "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
                "ROTATION_SCHEDULE": NEVER,
                "CLEANUP_SCHEDULE": NEVER,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.config.app_settings)
        env.update(extra_env or {})
        return env

    async def start_host(self, extra_env: Mapping[str, str] | None = None) -> HostProcess:
        """Start one more host process and wait until it serves (its host.env appears)."""
        self._started += 1
        name = f"host-{self._started}"
        state_dir = Path(self.config.state_dir) / name
        state_dir.mkdir(parents=True, exist_ok=True)
        log_path = Path(self.config.state_dir) / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "localdev",
            "host",
            "--port",
            "0",
            "--no-auth",
            "--app-dir",
            str(self.config.app_dir),
            "--state-dir",
            str(state_dir),
            "--log-level",
            self.config.host_log_level,
        ]
        process = await asyncio.to_thread(_spawn, command, self.host_env(extra_env), log_path)
        host = HostProcess(name, process, state_dir, log_path)
        self.hosts.append(host)
        env_file = state_dir / "host.env"
        deadline = time.monotonic() + self.config.start_timeout
        while not env_file.is_file():
            if process.poll() is not None:
                raise FleetError(f"{name} exited with {process.returncode}:\n{host.log_tail()}")
            if time.monotonic() > deadline:
                raise FleetError(
                    f"{name} not ready after {self.config.start_timeout:g} s:\n{host.log_tail()}"
                )
            await asyncio.sleep(0.05)
        written = _read_env_file(env_file)
        host.base_url, host.master_key = written["FUNCTIONS_BASE_URL"], written["FUNCTIONS_MASTER_KEY"]
        return host

    async def stop_host(self, host: HostProcess, grace: float = 15.0) -> int:
        """SIGTERM (nothing for one already dead), wait up to `grace` s, then SIGKILL; the exit code."""
        if host.alive:
            host.kill(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(host.process.wait, grace)
        except subprocess.TimeoutExpired:
            host.kill(signal.SIGKILL)
            code = await asyncio.to_thread(host.process.wait)
        if host in self.hosts:
            self.hosts.remove(host)
        return code

    async def close(self) -> None:
        for host in list(self.hosts):
            await self.stop_host(host)
        for control in self._controls.values():
            control.close()
        self._controls.clear()


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A child with stdout and stderr in `log_path` (never a pipe that can fill), in its own session so
    a Ctrl-C in the caller's terminal is the fleet's to pass on."""
    with log_path.open("wb") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _start_vaults(config: FleetConfig) -> tuple[subprocess.Popen[bytes], dict[str, str], str]:
    state_dir = Path(config.state_dir) / "vaults"
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(config.state_dir) / "vaults.log"
    command = [
        sys.executable,
        "-m",
        "localdev.vault",
        "--vaults",
        str(config.vaults),
        "--port",
        "0",
        "--identity-port",
        "0",
        "--memory",
        "--state-dir",
        str(state_dir),
        "--latency",
        str(config.latency),
        *(["--throttling"] if config.throttling else []),
        *config.vault_args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    process = _spawn(command, env, log_path)
    env_file = state_dir / "vault.env"
    deadline = time.monotonic() + config.start_timeout
    while not env_file.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise FleetError(f"the local vaults did not start:\n{tail(log_path)}")
        time.sleep(0.05)
    return process, _read_env_file(env_file), (state_dir / CONTROL_KEY_FILE).read_text().strip()


@contextlib.asynccontextmanager
async def start_fleet(config: FleetConfig) -> AsyncIterator[Fleet]:
    """Start the vaults and Azurite (hosts are started with `fleet.start_host()`); stop all on exit."""
    await asyncio.to_thread(Path(config.state_dir).mkdir, parents=True, exist_ok=True)
    stack = contextlib.ExitStack()
    with stack:
        folder = Path(config.state_dir) / "azurite"
        # on disk, as `make run` starts it: in memory, Azurite's queue GC stalls it for tens of seconds
        # under the fan-out's load (bench/azurite_stalls.py)
        azurite = await asyncio.to_thread(start_azurite, folder, location=folder / "data")
        stack.callback(azurite.stop)
        vaults, vault_env, control_key = await asyncio.to_thread(_start_vaults, config)
        stack.callback(stop_process, vaults)
        fleet = Fleet(config, azurite, vault_env, control_key)
        try:
            yield fleet
        finally:
            await fleet.close()


def describe(fleet: Fleet) -> dict[str, Any]:
    """Where everything is (for a benchmark's header or a test's failure report); no keys."""
    return {
        "vaults": fleet.vault_urls,
        "storage": {"blob": fleet.azurite.blob_port, "queue": fleet.azurite.queue_port},
        "hosts": [
            {"name": h.name, "pid": h.pid, "url": h.base_url, "log": str(h.log_path)} for h in fleet.hosts
        ],
    }
