"""Test controls under /_emulator/ on the vault port (loopback callers only), and a small sync client for them.

Endpoints: GET stats · POST reset · GET/POST clock · GET/PUT/DELETE faults · PUT latency ·
GET/PUT throttling · PUT soft-delete · PUT operation-latency · POST tokens · POST events/check · GET health.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .auth import VAULT_RESOURCE
from .limits import ThrottleSettings
from .store import SoftDeletePolicy

if TYPE_CHECKING:
    from .server import VaultRuntime

OPERATIONS = (
    "SetSecret",
    "GetSecret",
    "GetSecrets",
    "GetSecretVersions",
    "UpdateSecret",
    "DeleteSecret",
    "GetDeletedSecret",
    "GetDeletedSecrets",
    "PurgeDeletedSecret",
    "RecoverDeletedSecret",
    "BackupSecret",
    "RestoreSecret",
)


class RequestStats:
    """Transactions by REST operationId and responses by status; bodiless challenge requests counted apart."""

    def __init__(self) -> None:
        self.operations: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.challenges = 0
        self.dropped = 0

    def record_challenge(self) -> None:
        self.challenges += 1
        self.statuses["401"] += 1

    def record_operation(self, operation: str) -> None:
        self.operations[operation] += 1

    def record_status(self, status: int) -> None:
        self.statuses[str(status)] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "operations": dict(self.operations),
            "statuses": dict(self.statuses),
            "challenges": self.challenges,
            "total": sum(self.operations.values()),
            "dropped": self.dropped,
        }

    def reset(self) -> None:
        self.operations.clear()
        self.statuses.clear()
        self.challenges = 0
        self.dropped = 0


@dataclass
class FaultRule:
    """Fail `rate` of an operation's transactions (None: every operation) with `status`, or drop the connection;
    with `count`, only the next `count` matching transactions (deterministic retry tests), then the rule ends."""

    operation: str | None
    status: int = 0
    rate: float = 1.0
    retry_after: float | None = None
    drop: bool = False
    latency: float = 0.0
    count: int | None = None


class FaultPlan:
    def __init__(self, chance: Callable[[], float] = random.random) -> None:
        self.rules: dict[str | None, FaultRule] = {}
        self._chance = chance

    def set(self, rule: FaultRule) -> None:
        if rule.operation is not None and rule.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {rule.operation!r}; use one of {', '.join(OPERATIONS)}")
        if not 0 <= rule.rate <= 1:
            raise ValueError(f"rate must be between 0 and 1, got {rule.rate}")
        if rule.status and not 400 <= rule.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {rule.status}")
        if rule.count is not None and rule.count < 1:
            raise ValueError(f"count must be at least 1, got {rule.count}")
        self.rules[rule.operation] = rule

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, operation: str) -> FaultRule | None:
        if not self.rules:
            return None
        key = operation if operation in self.rules else None
        rule = self.rules.get(key)
        if rule is None or self._chance() >= rule.rate:
            return None
        if rule.count is not None:
            rule.count -= 1
            if rule.count == 0:
                del self.rules[key]
        return rule


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
        """The /_emulator sub-application: its loopback check runs for these routes only, not on every vault call."""
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
        r.add_put("/latency", self.set_latency)
        r.add_get("/throttling", self.throttling)
        r.add_put("/throttling", self.set_throttling)
        r.add_put("/soft-delete", self.set_soft_delete)
        r.add_put("/operation-latency", self.set_operation_latency)
        r.add_post("/tokens", self.issue_token)
        r.add_post("/events/check", self.check_events)
        return app

    @web.middleware
    async def loopback_only(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not _loopback(request):
            return web.json_response({"error": "test controls answer loopback callers only"}, status=403)
        try:
            return await handler(request)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad control request: {exc}"}, status=400)

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
            status=int(body.get("status", 0)),
            rate=float(body.get("rate", 1.0)),
            retry_after=None if body.get("retry_after") is None else float(body["retry_after"]),
            drop=bool(body.get("drop", False)),
            latency=float(body.get("latency", 0.0)),
            count=None if body.get("count") is None else int(body["count"]),
        )
        if not (rule.status or rule.drop or rule.latency):
            raise ValueError("give a status, drop=true or a latency")
        self.runtime.api.faults.set(rule)
        return web.json_response(asdict(rule))

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


class ControlClient:
    """Sync client for /_emulator (tests and benchmarks); verifies the vault's CA like every other client."""

    def __init__(self, vault_url: str, ca_bundle: str, timeout: float = 10.0) -> None:
        import requests

        self.base = vault_url.rstrip("/") + "/_emulator"
        self.session = requests.Session()
        self.ca_bundle = ca_bundle
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        # verify per request: a session-level verify loses to REQUESTS_CA_BUNDLE in the environment
        response = self.session.request(
            method, f"{self.base}/{path}", json=body, timeout=self.timeout, verify=self.ca_bundle
        )
        if response.status_code >= 400:
            raise RuntimeError(f"control call {method} {path} failed: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def reset(self) -> None:
        self._call("POST", "reset")

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self._call("POST", "clock", {"advance_seconds": seconds})

    def set_faults(
        self,
        operation: str | None,
        status: int,
        rate: float = 1.0,
        retry_after: float | None = None,
        drop: bool = False,
        latency: float = 0.0,
        count: int | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "PUT",
            "faults",
            {
                "operation": operation,
                "status": status,
                "rate": rate,
                "retry_after": retry_after,
                "drop": drop,
                "latency": latency,
                "count": count,
            },
        )

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def set_latency(self, seconds: float) -> None:
        self._call("PUT", "latency", {"seconds": seconds})

    def set_throttling(
        self,
        enabled: bool,
        transactions_per_10s: int = 4000,
        creates_per_10s: int = 300,
        retry_after: float | None = 1.0,
        window_seconds: float = 10.0,
    ) -> dict[str, Any]:
        return self._call(
            "PUT",
            "throttling",
            {
                "enabled": enabled,
                "transactions_per_10s": transactions_per_10s,
                "creates_per_10s": creates_per_10s,
                "retry_after": retry_after,
                "window_seconds": window_seconds,
            },
        )

    def set_soft_delete(self, retention_days: int = 90, purge_protection: bool = False) -> dict[str, Any]:
        return self._call(
            "PUT", "soft-delete", {"retention_days": retention_days, "purge_protection": purge_protection}
        )

    def set_operation_latency(
        self, delete: float | None = None, recover: float | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("delete", delete), ("recover", recover)) if v is not None}
        return self._call("PUT", "operation-latency", body)

    def issue_token(
        self, identity: str | None = None, audience: str | None = None, lifetime_seconds: float = 3600
    ) -> str:
        body: dict[str, Any] = {"lifetime_seconds": lifetime_seconds}
        if identity:
            body["identity"] = identity
        if audience:
            body["audience"] = audience
        return self._call("POST", "tokens", body)["access_token"]

    def check_events(self) -> int:
        return int(self._call("POST", "events/check")["queued"])

    def close(self) -> None:
        self.session.close()
