"""Test controls under /_emulator/ on the vault port: loopback callers holding the control key only.

The key is `<state-dir>/control.key` (0600), sent as `X-Emulator-Key`: these routes mint tokens for any
identity and empty the vault, so another local user or a page in a browser must not reach them.
`GET health` alone answers without it (it tells only that the vault is up and where).

Endpoints: GET stats · POST reset · GET/POST clock · GET/PUT/DELETE faults · PUT faults/seed · PUT latency ·
GET/PUT throttling · PUT soft-delete · PUT operation-latency · POST tokens · POST events/check · POST seed ·
GET health. The sync client for them is `localdev.vault.client.ControlClient`. In a multi-vault process
each vault has these routes on its own port and they act on that vault alone (one control key for all).

`POST seed` inserts many new secrets straight into the store (one version each, created/updated from the
emulator clock, values generated here and never returned), for benchmarks that need 100,000 secrets in
seconds; it is counted as `seeded` in stats, never as transactions. Body: `{"groups": [{"count": N,
"prefix": "s-", "start": 0, "digits": 6, "tags": {...}, "content_type": null, "value_length": 32,
"enabled": true, "created_offset_seconds": 0, "expires_in_seconds": null, "not_before_in_seconds": null}]}`;
names are `<prefix><start..start+count-1 zero-padded to digits>`. A group's tags and times decide whether
its secrets are due (e.g. `ValidityPeriodDays=60` with `expires_in_seconds` of 10 days: due).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import time
import uuid
from dataclasses import asdict
from typing import Any

from aiohttp import web

from .auth import VAULT_RESOURCE
from .instrumentation import FaultRule
from .limits import ThrottleSettings
from .runtime import CONTROL_KEY_FILE, VaultRuntime
from .store import MAX_VALUE_BYTES, SecretVersion, SoftDeletePolicy

CONTROL_KEY_HEADER = "X-Emulator-Key"
OPEN_PATHS = frozenset({"/health"})
MAX_SEED = 500_000  # secrets per seed request
SEED_FIELDS = frozenset(
    {
        "count",
        "prefix",
        "start",
        "digits",
        "tags",
        "content_type",
        "value_length",
        "enabled",
        "created_offset_seconds",
        "expires_in_seconds",
        "not_before_in_seconds",
    }
)


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


class ControlApi:
    """The /_emulator/ routes; every change applies at once to the running vault."""

    def __init__(self, runtime: VaultRuntime) -> None:
        self.runtime = runtime

    def app(self) -> web.Application:
        """The /_emulator sub-application: its checks run for these routes only, not on every vault call."""
        app = web.Application(middlewares=[self.loopback_only])
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/stats", self.stats)
        r.add_post("/reset", self.reset)
        r.add_get("/clock", self.clock)
        r.add_post("/clock", self.advance_clock)
        r.add_get("/faults", self.faults)
        r.add_put("/faults", self.set_faults)
        r.add_delete("/faults", self.clear_faults)
        r.add_put("/faults/seed", self.seed_faults)
        r.add_put("/latency", self.set_latency)
        r.add_get("/throttling", self.throttling)
        r.add_put("/throttling", self.set_throttling)
        r.add_put("/soft-delete", self.set_soft_delete)
        r.add_put("/operation-latency", self.set_operation_latency)
        r.add_post("/tokens", self.issue_token)
        r.add_post("/events/check", self.check_events)
        r.add_post("/seed", self.seed)
        return app

    @web.middleware
    async def loopback_only(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not _loopback(request):
            return web.json_response({"error": "test controls answer loopback callers only"}, status=403)
        if not self._holds_key(request):
            return web.json_response(
                {
                    "error": f"the test controls need the control key: send the header "
                    f"{CONTROL_KEY_HEADER} with the contents of <state-dir>/{CONTROL_KEY_FILE} "
                    f"(make run: .localdev/{CONTROL_KEY_FILE})"
                },
                status=401,
            )
        try:
            return await handler(request)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad control request: {exc}"}, status=400)

    def _holds_key(self, request: web.Request) -> bool:
        if request.path.removeprefix("/_emulator") in OPEN_PATHS:
            return True
        presented = request.headers.get(CONTROL_KEY_HEADER, "")
        # headers arrive surrogate-escaped where they are not UTF-8: compare bytes, never raise
        return hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), self.runtime.control_key.encode()
        )

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        return body

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "vault_url": self.runtime.api.vault_url})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.runtime.api.stats.snapshot())

    async def reset(self, request: web.Request) -> web.Response:
        self.runtime.reset()
        return web.json_response({"status": "reset"})

    async def clock(self, request: web.Request) -> web.Response:
        clock = self.runtime.store.clock
        return web.json_response({"offset_seconds": clock.offset, "now": clock.now()})

    async def advance_clock(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        clock = self.runtime.store.clock
        if "offset_seconds" in body:
            clock.offset = float(body["offset_seconds"])
        else:
            clock.offset += float(body["advance_seconds"])
        purged = self.runtime.store.purge_due()
        self.runtime.after_clock_change()
        return web.json_response({"offset_seconds": clock.offset, "now": clock.now(), "purged": purged})

    async def faults(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.runtime.api.faults.rules.values()])

    async def set_faults(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        rule = FaultRule(
            operation=body.get("operation"),
            status=int(body.get("status") or 0),
            rate=float(body.get("rate", 1.0)),
            retry_after=None if body.get("retry_after") is None else float(body["retry_after"]),
            drop=bool(body.get("drop", False)),
            drop_response=bool(body.get("drop_response", False)),
            latency=float(body.get("latency", 0.0)),
            count=None if body.get("count") is None else int(body["count"]),
        )
        self.runtime.api.faults.set(rule)
        return web.json_response(asdict(rule))

    async def seed_faults(self, request: web.Request) -> web.Response:
        raw = (await self._json(request)).get("seed")
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
            raise ValueError("seed must be an integer or null")
        self.runtime.api.faults.reseed(raw)
        return web.json_response({"seed": raw})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.runtime.api.faults.clear()
        return web.json_response([])

    async def set_latency(self, request: web.Request) -> web.Response:
        seconds = float((await self._json(request))["seconds"])
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self.runtime.api.latency = seconds
        return web.json_response({"seconds": seconds})

    async def throttling(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.runtime.throttle.settings))

    async def set_throttling(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        current = self.runtime.throttle.settings
        settings = ThrottleSettings(
            enabled=bool(body.get("enabled", current.enabled)),
            transactions_per_10s=int(body.get("transactions_per_10s", current.transactions_per_10s)),
            creates_per_10s=int(body.get("creates_per_10s", current.creates_per_10s)),
            retry_after=(None if body["retry_after"] is None else float(body["retry_after"]))
            if "retry_after" in body
            else current.retry_after,
            window_seconds=float(body.get("window_seconds", current.window_seconds)),
        )
        if settings.window_seconds <= 0 or settings.transactions_per_10s < 1 or settings.creates_per_10s < 1:
            raise ValueError("limits and window_seconds must be positive")
        self.runtime.throttle.configure(settings)
        return web.json_response(asdict(settings))

    async def set_soft_delete(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        current = self.runtime.store.policy
        policy = SoftDeletePolicy(
            retention_days=int(body.get("retention_days", current.retention_days)),
            purge_protection=bool(body.get("purge_protection", current.purge_protection)),
        )
        self.runtime.store.policy = policy
        return web.json_response({**asdict(policy), "recovery_level": policy.recovery_level})

    async def set_operation_latency(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        store = self.runtime.store
        store.delete_latency = float(body.get("delete", store.delete_latency))
        store.recover_latency = float(body.get("recover", store.recover_latency))
        return web.json_response({"delete": store.delete_latency, "recover": store.recover_latency})

    async def issue_token(self, request: web.Request) -> web.Response:
        """Mint a token with any audience or lifetime, to test the vault's refusals (never used by apps)."""
        body = await self._json(request)
        authority = self.runtime.authority
        name = body.get("identity")
        identity = authority.by_name(name) if name else authority.find()
        if identity is None:
            raise ValueError(f"no identity named {name!r}")
        token, expires_on = authority.issue(
            identity, str(body.get("audience", VAULT_RESOURCE)), float(body.get("lifetime_seconds", 3600))
        )
        return web.json_response(
            {"access_token": token, "expires_on": expires_on, "client_id": identity.client_id}
        )

    async def check_events(self, request: web.Request) -> web.Response:
        sent = self.runtime.check_expiry_events()
        return web.json_response({"queued": sent})

    async def seed(self, request: web.Request) -> web.Response:
        """Bulk-insert the body's groups of new secrets (see the module docstring); never returns a value."""
        began = time.perf_counter()
        groups = (await self._json(request)).get("groups")
        if not isinstance(groups, list) or not groups:
            raise ValueError('groups: expected a non-empty list, e.g. [{"count": 100, "prefix": "s-"}]')
        now = self.runtime.store.clock.now_int()
        items: list[tuple[str, SecretVersion]] = []
        summary = []
        for i, group in enumerate(groups):
            names = _seed_group(group, f"groups[{i}]", now, items, MAX_SEED - len(items))
            summary.append({"count": len(names), "first": names[0], "last": names[-1]})
        seeded = self.runtime.store.seed(items)
        self.runtime.api.stats.seeded += seeded
        return web.json_response(
            {"seeded": seeded, "groups": summary, "seconds": round(time.perf_counter() - began, 3)}
        )


def _number(group: dict[str, Any], key: str, where: str, default: float | None) -> float | None:
    raw = group.get(key, default)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError(f"{where}.{key}: expected a number of seconds, got {raw!r}")
    return float(raw)


def _whole(group: dict[str, Any], key: str, where: str, default: int, low: int, high: int) -> int:
    raw = group.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise ValueError(f"{where}.{key}: expected a whole number {low}-{high}, got {raw!r}")
    return raw


def _seed_group(
    group: Any, where: str, now: int, out: list[tuple[str, SecretVersion]], room: int
) -> list[str]:
    """Append one group's secrets to `out`; return their names. Errors name the group and the field."""
    if not isinstance(group, dict):
        raise ValueError(f"{where}: expected an object with count and prefix")
    unknown = sorted(set(group) - SEED_FIELDS)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(SEED_FIELDS))}"
        )
    if "count" not in group:
        raise ValueError(f"{where}.count is required")
    count = _whole(group, "count", where, 0, 1, max(1, room))
    prefix = group.get("prefix", "seed-")
    if not isinstance(prefix, str):
        raise ValueError(f"{where}.prefix: expected a string")
    start = _whole(group, "start", where, 0, 0, 10**12)
    digits = _whole(group, "digits", where, 6, 1, 12)
    length = _whole(group, "value_length", where, 32, 1, MAX_VALUE_BYTES)
    tags = group.get("tags")
    if tags is not None and (
        not isinstance(tags, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise ValueError(f"{where}.tags: expected an object of string values")
    content_type = group.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise ValueError(f"{where}.content_type: expected a string or null")
    enabled = group.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}.enabled: expected true or false")
    created = now + int(_number(group, "created_offset_seconds", where, 0.0) or 0)
    expires_in = _number(group, "expires_in_seconds", where, None)
    not_before_in = _number(group, "not_before_in_seconds", where, None)
    exp = None if expires_in is None else now + int(expires_in)
    nbf = None if not_before_in is None else now + int(not_before_in)
    names = []
    for n in range(start, start + count):
        name = f"{prefix}{n:0{digits}d}"
        value = secrets.token_urlsafe(length)[:length]
        version = SecretVersion(
            uuid.uuid4().hex,
            value,
            content_type,
            dict(tags) if tags else None,
            enabled,
            nbf,
            exp,
            created,
            created,
        )
        out.append((name, version))
        names.append(name)
    return names
