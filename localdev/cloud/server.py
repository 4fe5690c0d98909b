"""Assembly and lifecycle of the local control plane: one HTTPS listener (the vault's CA and certificate,
from the same state dir), tokens verified with the vault's signing key, state in memory.

`await start_cloud(config)` runs on the caller's loop; `start_cloud_in_thread(config)` on its own loop in a
daemon thread (tests). Writes `<state-dir>/cloud.env` with the URLs the app and its SDKs read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..statedir import load_or_create_secret, private_dir, write_private
from ..vault.auth import TokenAuthority, default_identities
from ..vault.control import CONTROL_KEY_HEADER
from ..vault.runtime import CONTROL_KEY_FILE
from ..vault.tls import ensure_certificates
from .api import CloudApi
from .auth import CloudAuth, load_authority
from .store import ROLES, CloudStore, Fault


@dataclass
class CloudConfig:
    state_dir: Path = Path(".localdev")
    host: str = "127.0.0.1"
    port: int = 8444
    # Object ids granted Owner on the subscription and Application.ReadWrite.OwnedBy in Graph at start
    # (default: the vault's default, system-assigned identity).
    principals: list[str] | None = None
    authority: TokenAuthority | None = None  # default: the vault's signing key in <state_dir>/keys
    write_env_file: bool = True


@dataclass
class RunningCloud:
    url: str
    ca_bundle: str
    store: CloudStore
    state_dir: Path
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _env_file: Path | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        return {
            "AZURE_RESOURCE_MANAGER_URL": self.url,
            "MICROSOFT_GRAPH_URL": self.url,
            # azure-identity's own variable: where ClientSecretCredential asks for tokens
            "AZURE_AUTHORITY_HOST": self.url,
        }

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._env_file is not None:
            self._env_file.unlink(missing_ok=True)
            self._env_file = None


def _control_app(store: CloudStore, control_key: str) -> web.Application:
    """/_cloud: state (no values), reset, faults, role assignments. Loopback callers holding the vault's
    control key only (header X-Emulator-Key, file <state-dir>/control.key): these switches grant roles."""

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        peer = request.remote or ""
        if peer not in ("127.0.0.1", "::1") and not peer.startswith("127."):
            return web.json_response({"error": "the control routes answer loopback callers only"}, status=403)
        presented = request.headers.get(CONTROL_KEY_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(presented, control_key.encode()):
            return web.json_response(
                {
                    "error": f"send the header {CONTROL_KEY_HEADER} with the contents of <state-dir>/"
                    f"{CONTROL_KEY_FILE} (make run: .localdev/{CONTROL_KEY_FILE})"
                },
                status=401,
            )
        return await handler(request)

    async def body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        parsed = json.loads(raw) if raw.strip() else {}
        if not isinstance(parsed, dict):
            raise web.HTTPBadRequest(text="a JSON object is expected")
        return parsed

    async def state(request: web.Request) -> web.Response:
        return web.json_response(store.snapshot())

    async def reset(request: web.Request) -> web.Response:
        store.reset()
        return web.json_response({"reset": True})

    async def faults(request: web.Request) -> web.Response:
        spec = await body(request)
        try:
            store.inject(
                Fault(
                    str(spec["service"]),
                    str(spec.get("match", "")),
                    int(spec["status"]),
                    str(spec.get("code", "Injected")),
                    str(spec.get("message", "Injected by the local control plane.")),
                    {str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
                    int(spec.get("times", 1)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(
                text=f"expected {{service: arm|graph|token|blob, status, match?, code?, message?, headers?, "
                f"times?}}: {exc}"
            ) from None
        return web.json_response({"faults": len(store.faults)})

    async def roles(request: web.Request) -> web.Response:
        spec = await body(request)
        try:
            if spec.get("remove"):
                store.unassign(str(spec["principal"]), spec.get("role"))
            else:
                store.assign(str(spec["principal"]), str(spec["role"]), str(spec["scope"]))
        except (KeyError, ValueError) as exc:
            raise web.HTTPBadRequest(
                text=f"expected {{principal, role (one of {', '.join(ROLES)}), scope, remove?}}: {exc}"
            ) from None
        return web.json_response({"assignments": len(store.assignments)})

    app = web.Application(middlewares=[guard])
    app.router.add_get("/state", state)
    app.router.add_post("/reset", reset)
    app.router.add_post("/faults", faults)
    app.router.add_post("/roles", roles)
    return app


async def start_cloud(config: CloudConfig) -> RunningCloud:
    state_dir = private_dir(Path(config.state_dir).absolute())  # noqa: ASYNC240 - once, at start
    tls = ensure_certificates(state_dir)
    authority = config.authority or load_authority(state_dir)
    principals = (
        config.principals
        if config.principals is not None
        else [i.object_id for i in default_identities() if i.system_assigned]
    )
    store = CloudStore(principals)
    api = CloudApi(store, CloudAuth(authority))
    app = web.Application(client_max_size=1024 * 1024)
    api.add_routes(app)
    app.add_subapp("/_cloud", _control_app(store, load_or_create_secret(state_dir / CONTROL_KEY_FILE)))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=tls.server_context(), reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(
            exc.errno,
            f"cannot listen on {config.host}:{config.port}: {exc.strerror}. Pick another port (0 = any).",
        ) from exc
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    host = "localhost" if config.host in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "") else config.host
    api.base_url = f"https://{host}:{port}"
    running = RunningCloud(api.base_url, str(tls.ca_cert), store, state_dir, _runner=runner)
    if config.write_env_file:
        env_file = state_dir / "cloud.env"
        write_private(env_file, "".join(f"{k}={v}\n" for k, v in running.env().items()).encode())
        running._env_file = env_file
    return running


class ThreadedCloud(RunningCloud):
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread

    def stop(self) -> None:  # type: ignore[override]
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(RunningCloud.stop(self), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)


def start_cloud_in_thread(config: CloudConfig) -> ThreadedCloud:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            outcome["cloud"] = loop.run_until_complete(start_cloud(config))
        except BaseException as exc:  # noqa: BLE001 (reported to the starting thread)
            outcome["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    began = time.perf_counter()
    thread = threading.Thread(target=run, name="localdev-cloud", daemon=True)
    thread.start()
    ready.wait(timeout=60)
    if "error" in outcome:
        raise outcome["error"]
    if "cloud" not in outcome:
        raise TimeoutError(f"the local control plane did not start in {time.perf_counter() - began:.0f} s")
    running: RunningCloud = outcome["cloud"]
    threaded = ThreadedCloud(**{f: getattr(running, f) for f in RunningCloud.__dataclass_fields__})
    threaded._loop = loop
    threaded._thread = thread
    return threaded
