"""Assembly and lifecycle: builds the runtime, API and identity endpoint, binds them, starts and stops them.

`await start_vault(config)` runs on the caller's event loop; `start_vault_in_thread(config)` runs its own loop
in a daemon thread (for tests that drive the sync SDK and the aio SDK alike). With `config.vaults` = K > 1
the process serves K vaults, each on its own port with its own /_emulator controls (`RunningVault.members`),
behind one CA, one identity endpoint and one token authority; the `RunningVault` fields describe the first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiohttp import web

from ..statedir import StateDirInUse, hold_lock, make_private, private_dir, write_private
from .control import ControlApi
from .identity import TOKEN_PATH, IdentityEndpoint
from .runtime import CONTROL_KEY_FILE, VaultConfig, VaultRuntime
from .tls import ensure_certificates

_log = logging.getLogger("localdev.vault")

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
__all__ = [
    "RunningVault",
    "StateDirInUse",
    "ThreadedVault",
    "VaultConfig",
    "VaultMember",
    "start_vault",
    "start_vault_in_thread",
]


@dataclass
class VaultMember:
    """One vault of a (multi-vault) process: its name, where it listens, its controls and live parts."""

    name: str
    vault_url: str
    control_url: str
    runtime: VaultRuntime


@dataclass
class RunningVault:
    """A started vault: where it listens and what a client needs to reach it.

    `members` lists every vault the process serves (the first is the one the other fields describe)."""

    vault_url: str
    ca_bundle: str
    identity_endpoint: str
    identity_header: str
    control_url: str
    control_key: str = field(repr=False)
    state_dir: Path
    runtime: VaultRuntime
    started_seconds: float = 0.0
    _runners: list[web.AppRunner] = field(default_factory=list, repr=False)
    _lock: IO[str] | None = field(default=None, repr=False)
    _env_file: Path | None = field(
        default=None, repr=False
    )  # removed on stop, so it never names a dead vault
    members: list[VaultMember] = field(default_factory=list)

    @property
    def vault_urls(self) -> list[str]:
        return [m.vault_url for m in self.members] or [self.vault_url]

    def env(self) -> dict[str, str]:
        """The app's settings for these vaults (KEY_VAULT_URLS only when there are several)."""
        env = {
            "KEY_VAULT_URL": self.vault_url,
            "KEY_VAULT_CA_BUNDLE": self.ca_bundle,
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        }
        if len(self.members) > 1:
            env["KEY_VAULT_URLS"] = ",".join(self.vault_urls)
        return env

    def env_text(self) -> str:
        return "".join(f"{k}={v}\n" for k, v in self.env().items())

    async def stop(self) -> None:
        """Stop listeners and background tasks, then close the store (safe to call twice)."""
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        if runners:
            for runtime in [m.runtime for m in self.members] or [self.runtime]:
                if runtime.publisher is not None:
                    await runtime.publisher.stop()
                runtime.store.close()
        if self._env_file is not None:
            self._env_file.unlink(missing_ok=True)
            self._env_file = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _lock_state_dir(state_dir: Path) -> IO[str]:
    """One vault per state dir; a second one is refused before it writes anything there."""
    return hold_lock(
        state_dir / "vault.lock",
        f"another local Key Vault is using {state_dir} (it holds {state_dir / 'vault.lock'}). "
        "Stop it (Ctrl-C where it runs), or start this one with --state-dir <another dir>.",
    )


# files a vault or host keeps in a state dir, tightened to 0600 on start (an older checkout made some 0644)
_STATE_FILES = (
    "vault.env",
    "vault.sqlite3",
    "vault.sqlite3-wal",
    "vault.sqlite3-shm",
    "vault.lock",
    CONTROL_KEY_FILE,
    "keys.json",
    "host.env",
    "tls/ca.pem",
    "tls/ca.key",
    "tls/server.pem",
    "tls/server.key",
    "keys/backup.key",
    "keys/token-signing.pem",
)


def _tighten(state_dir: Path) -> None:
    for sub in ("tls", "keys"):
        if (state_dir / sub).is_dir():
            private_dir(state_dir / sub)
    for name in _STATE_FILES:
        make_private(state_dir / name)
    for path in state_dir.glob("vault[0-9]*.sqlite3*"):  # the other vaults of a multi-vault process
        make_private(path)


async def _serve(
    app: web.Application, hosts: list[str], port: int, ssl_context=None
) -> tuple[web.AppRunner, int]:
    """Bind `app` on every host at one port (port 0: the first bind picks it, the others follow)."""
    # in-flight requests get a few seconds to finish on stop; idle keep-alive connections close at once
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    bound = port
    for i, host in enumerate(hosts):
        site = web.TCPSite(runner, host, bound, ssl_context=ssl_context, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            if i == 0:
                await runner.cleanup()
                raise OSError(
                    exc.errno,
                    f"cannot listen on {host}:{port}: {exc.strerror}. "
                    "Pick another port (--port / --identity-port, 0 = any free port).",
                ) from exc
            _log.debug("not listening on %s:%s (%s)", host, bound, exc)
            continue
        if i == 0:
            server = site._server  # type: ignore[attr-defined]
            bound = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound


def _vault_hosts(host: str) -> list[str]:
    if host in LOOPBACK_NAMES:
        # KEY_VAULT_URL says "localhost", which may resolve to ::1 first: answer on both loopbacks.
        return ["127.0.0.1", "::1"] if socket.has_ipv6 else ["127.0.0.1"]
    return [host]


def _vault_url(config: VaultConfig, port: int) -> str:
    # the certificate names only loopback; a wildcard listener is reached through localhost as well
    vault_host = "localhost" if config.host in LOOPBACK_NAMES | {"0.0.0.0", "::", ""} else config.host
    return f"https://{vault_host}:{port}"


async def start_vault(config: VaultConfig) -> RunningVault:
    """Start the vault(s) (HTTPS) and identity endpoint (HTTP) on this loop; write <state-dir>/vault.env."""
    began = time.perf_counter()
    state_dir = private_dir(Path(config.state_dir).absolute())  # noqa: ASYNC240 - once, at start
    lock = _lock_state_dir(state_dir)  # memory or SQLite: one vault per state dir (certificates, vault.env)
    runners: list[web.AppRunner] = []
    members: list[VaultMember] = []
    try:
        _tighten(state_dir)
        tls = ensure_certificates(state_dir)
        first = VaultRuntime(config, tls)
        runtimes = [first] + [
            VaultRuntime(config, tls, index=i, authority=first.authority) for i in range(1, config.vaults)
        ]
        header = config.identity_header or secrets.token_urlsafe(24)
        for index, runtime in enumerate(runtimes):
            control = ControlApi(runtime)
            app = web.Application(middlewares=[runtime.api.gate], client_max_size=1024 * 1024)
            runtime.api.add_routes(app)
            app.add_subapp("/_emulator", control.app())
            runner, port = await _serve(
                app, _vault_hosts(config.host), config.port_of(index), tls.server_context()
            )
            runners.append(runner)
            url = _vault_url(config, port)
            runtime.api.vault_url = url
            members.append(VaultMember(runtime.store.vault_name, url, f"{url}/_emulator", runtime))
        identity = IdentityEndpoint(first.authority, header, config.token_lifetime)
        id_runner, id_port = await _serve(identity.app(), ["127.0.0.1"], config.identity_port)
        runners.append(id_runner)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        if lock is not None:
            lock.close()
        raise
    for member in members:
        if member.runtime.publisher is not None:
            member.runtime.publisher.vault_url = member.vault_url
            member.runtime.publisher.start()
    running = RunningVault(
        vault_url=members[0].vault_url,
        ca_bundle=str(tls.ca_cert),
        identity_endpoint=f"http://127.0.0.1:{id_port}{TOKEN_PATH}",
        identity_header=header,
        control_url=members[0].control_url,
        control_key=first.control_key,
        state_dir=state_dir,
        runtime=first,
        _runners=runners,
        _lock=lock,
        members=members,
    )
    if config.write_env_file:
        write_private(state_dir / "vault.env", running.env_text().encode())
        running._env_file = state_dir / "vault.env"
    running.started_seconds = time.perf_counter() - began
    return running


class ThreadedVault(RunningVault):
    """A vault on its own event loop in a daemon thread; `stop()` is synchronous here."""

    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread

    def stop(self) -> None:  # type: ignore[override]
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(RunningVault.stop(self), self._loop)
        future.result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)


def start_vault_in_thread(config: VaultConfig) -> ThreadedVault:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    outcome: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            outcome["vault"] = loop.run_until_complete(start_vault(config))
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            outcome["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        # as asyncio.run does: requests still in flight (a test's 60 s latency fault) are cancelled, not
        # left to be destroyed pending with the loop
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name="localdev-vault", daemon=True)
    thread.start()
    ready.wait()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    running: RunningVault = outcome["vault"]  # type: ignore[assignment]
    threaded = ThreadedVault(**{f: getattr(running, f) for f in RunningVault.__dataclass_fields__})
    threaded._loop = loop
    threaded._thread = thread
    return threaded
