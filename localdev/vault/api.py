"""The wire layer: Key Vault's secrets REST routes, JSON shapes, api-versions, and the request gate.

Every request passes one gate, in this order: test latency → challenge (no token) → token → api-version →
injected fault → throttling → RBAC → the operation (→ a response-losing fault). Stats count challenges apart
from transactions. A client that goes away mid-request is one INFO line, not an error: nothing is answered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import errors
from .auth import CHALLENGE, MISSING_TOKEN, TokenAuthority
from .instrumentation import FaultPlan, FaultRule, RequestStats
from .limits import Throttle
from .store import (
    SecretAttributesInput,
    SecretRecord,
    SecretVersion,
    SoftDeletePolicy,
    VaultStore,
    decode_marker,
    encode_marker,
)

STABLE_API_VERSIONS = (
    "2016-10-01",
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
    "2026-04-01",
)
PREVIEW_API_VERSIONS = ("7.6-preview.2", "2025-06-01-preview", "2026-01-01-preview", "2026-03-01-preview")
API_VERSIONS = frozenset(STABLE_API_VERSIONS + PREVIEW_API_VERSIONS)
LATEST_API_VERSION = STABLE_API_VERSIONS[-1]
MAX_RESULTS = 25
CONTROL_PREFIX = "/_emulator/"
_log = logging.getLogger("localdev.vault")
SERVICE_VERSION = "1.9.0.0-localdev"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class _Dropped(Exception):
    """A fault rule cut the connection: there is no one left to answer."""


def _undeliverable() -> web.Response:
    # The connection is closed: aiohttp fails to write this and lets it go quietly (no status is counted).
    return web.Response(status=499)


def _dumps(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return _json_bytes(status, _dumps(body), headers)


def _json_bytes(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"Content-Type": JSON_CONTENT_TYPE}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=body, headers=all_headers)


def _int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.BadParameter(f"Property {field} has invalid value: expected Unix seconds.")
    return int(value)


def _attributes_in(raw: Any) -> SecretAttributesInput | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise errors.BadParameter("Property attributes has invalid value: expected an object.")
    enabled = raw.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise errors.BadParameter("Property enabled has invalid value: expected true or false.")
    return SecretAttributesInput(
        enabled=enabled, nbf=_int(raw.get("nbf"), "nbf"), exp=_int(raw.get("exp"), "exp")
    )


def _tags_in(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise errors.BadParameter("Property tags has invalid value: expected an object of string values.")
    return raw


def _content_type_in(raw: Any) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise errors.BadParameter("Property contentType has invalid value: expected a string.")
    return raw


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # inferred text: the service's message for a malformed body was not captured
        raise errors.BadParameter("The request body is not a valid JSON object.")
    return body


class VaultApi:
    """Routes and shapes. `vault_url` (https://localhost:PORT) is set once the listener is bound."""

    def __init__(
        self,
        store: VaultStore,
        authority: TokenAuthority,
        throttle: Throttle,
        stats: RequestStats,
        faults: FaultPlan,
    ) -> None:
        self.store = store
        self.authority = authority
        self.throttle = throttle
        self.stats = stats
        self.faults = faults
        self.latency = 0.0
        self.vault_url = ""
        # name -> (version, policy, vault_url, JSON of its list item): a sweep lists every secret on every
        # run, and most have not changed since the last one
        self._listed: dict[str, tuple[SecretVersion, SoftDeletePolicy, str, bytes]] = {}

    # ---- assembly ---------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/secrets", self.list_secrets, name="GetSecrets")
        r.add_post("/secrets/restore", self.restore, name="RestoreSecret")
        r.add_get("/secrets/{name}/versions", self.list_versions, name="GetSecretVersions")
        r.add_post("/secrets/{name}/backup", self.backup, name="BackupSecret")
        r.add_put("/secrets/{name}", self.set_secret, name="SetSecret")
        r.add_delete("/secrets/{name}", self.delete_secret, name="DeleteSecret")
        r.add_get("/secrets/{name}", self.get_secret, name="GetSecret")
        r.add_get("/secrets/{name}/", self.get_secret, name="GetSecret-latest")
        r.add_get("/secrets/{name}/{version}", self.get_secret, name="GetSecret-version")
        r.add_patch("/secrets/{name}/", self.update_secret, name="UpdateSecret-latest")
        r.add_patch("/secrets/{name}/{version}", self.update_secret, name="UpdateSecret-version")
        r.add_get("/deletedsecrets", self.list_deleted, name="GetDeletedSecrets")
        r.add_get("/deletedsecrets/{name}", self.get_deleted, name="GetDeletedSecret")
        r.add_delete("/deletedsecrets/{name}", self.purge, name="PurgeDeletedSecret")
        r.add_post("/deletedsecrets/{name}/recover", self.recover, name="RecoverDeletedSecret")

    @web.middleware
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        route_name = request.match_info.route.name
        operation = route_name.partition("-")[0] if route_name else None
        authorization = request.headers.get("Authorization")
        if not authorization:
            self.stats.record_challenge()
            return self._error(errors.Unauthorized(MISSING_TOKEN))
        self.stats.record_operation(operation or "Unknown")
        try:
            response = await self._admit(request, handler, operation, authorization)
        except _Dropped:
            return _undeliverable()
        except ConnectionError:
            # the client closed the connection (timeout, crash, Ctrl-C) before its request was read whole
            self.stats.disconnected += 1
            _log.info("client went away during %s %s; nothing was answered", request.method, request.path)
            return _undeliverable()
        except errors.ServiceError as exc:
            response = self._error(exc)
        except web.HTTPException as exc:
            response = self._error(errors.BadParameter(f"{exc.reason}: {request.method} {request.path}"))
            response.set_status(exc.status)
        except Exception:  # noqa: BLE001 - an emulator bug: answer the service's 500, keep serving, log where
            _log.exception("local Key Vault failed on %s %s", request.method, request.path)
            response = self._error(errors.InternalError())
        self.stats.record_status(response.status)
        return response

    async def _admit(
        self, request: web.Request, handler: Handler, operation: str | None, authorization: str
    ) -> web.StreamResponse:
        identity = self.authority.verify(authorization)
        version = request.query.get("api-version")
        if version not in API_VERSIONS:
            if version is None:
                raise errors.BadParameter("The api-version query parameter is required.")
            raise errors.UnsupportedApiVersion(version, LATEST_API_VERSION)
        if operation is None:
            raise web.HTTPNotFound()
        fault = self.faults.pick(operation)
        if fault is not None:
            if fault.latency:
                await asyncio.sleep(fault.latency)
            if fault.drop:
                self._drop(request, fault)  # before the operation: nothing changes in the vault
            if fault.status:
                raise errors.InjectedFault(fault.status, fault.retry_after)
        self.throttle.admit(operation)
        self.authority.authorize(identity, operation, self.store.vault_name, request.match_info.get("name"))
        response = await handler(request)
        if fault is not None and fault.drop_response:
            self._drop(request, fault)  # after the operation: a write has committed, its answer is lost
        return response

    def _drop(self, request: web.Request, fault: FaultRule) -> None:
        self.stats.dropped += 1
        if request.transport is not None:
            request.transport.abort()
        raise _Dropped()

    def _error(self, exc: errors.ServiceError) -> web.Response:
        headers = self._headers()
        headers.update(exc.headers)
        if exc.status == 401:
            headers["WWW-Authenticate"] = CHALLENGE
        return _json(exc.status, exc.body(), headers)

    def _headers(self) -> dict[str, str]:
        return {
            "Cache-Control": "no-cache",
            "x-ms-keyvault-region": errors.REGION,
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-keyvault-service-version": SERVICE_VERSION,
        }

    def _ok(self, body: object) -> web.Response:
        return _json(200, body, self._headers())

    def forget_listed(self) -> None:
        """Drop the cached list items (the store was reset)."""
        self._listed.clear()

    # ---- shapes -----------------------------------------------------------------------------------
    def _attributes(self, v: SecretVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": v.enabled}
        if v.nbf is not None:
            attrs["nbf"] = v.nbf
        if v.exp is not None:
            attrs["exp"] = v.exp
        attrs["created"] = v.created
        attrs["updated"] = v.updated
        attrs["recoveryLevel"] = self.store.policy.recovery_level
        attrs["recoverableDays"] = self.store.policy.retention_days
        return attrs

    def _item(self, record: SecretRecord, v: SecretVersion, *, versioned: bool) -> dict[str, Any]:
        item: dict[str, Any] = {}
        item["id"] = f"{self.vault_url}/secrets/{record.name}" + (f"/{v.version}" if versioned else "")
        if v.content_type is not None:
            item["contentType"] = v.content_type
        if v.tags is not None:
            item["tags"] = v.tags
        item["attributes"] = self._attributes(v)
        return item

    def _listed_item(self, record: SecretRecord) -> bytes:
        """The list item's JSON, rebuilt only when the current version, the soft-delete policy or the URL
        changed (versions are replaced, never changed in place, so identity tells)."""
        current, policy = record.current, self.store.policy
        cached = self._listed.get(record.key)
        if (
            cached is not None
            and cached[0] is current
            and cached[1] is policy
            and cached[2] == self.vault_url
        ):
            return cached[3]
        item = _dumps(self._item(record, current, versioned=False))
        self._listed[record.key] = (current, policy, self.vault_url, item)
        return item

    def _bundle(self, record: SecretRecord, v: SecretVersion, *, with_value: bool) -> dict[str, Any]:
        bundle = self._item(record, v, versioned=True)
        if with_value:
            bundle = {"value": v.value, **bundle}
        return bundle

    def _deleted(self, record: SecretRecord, *, versioned: bool) -> dict[str, Any]:
        d = record.deleted
        assert d is not None
        body: dict[str, Any] = {
            "recoveryId": f"{self.vault_url}/deletedsecrets/{record.name}",
            "deletedDate": d.deleted_date,
            "scheduledPurgeDate": d.scheduled_purge_date,
        }
        body.update(self._item(record, record.current, versioned=versioned))
        return body

    def _page_size(self, request: web.Request) -> int:
        raw = request.query.get("maxresults")
        if raw is None or raw == "":
            return MAX_RESULTS
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_RESULTS:
            # inferred text: the service's message for this check was not captured
            raise errors.BadParameter(
                f"Invalid maxresults value {raw}: it must be between 1 and {MAX_RESULTS}."
            )
        return size

    def _next_link(self, request: web.Request, marker: str | int | None, size: int) -> str | None:
        if marker is None:
            return None
        return (
            f"{self.vault_url}{request.path}?api-version={request.query['api-version']}"
            f"&$skiptoken={encode_marker(marker)}&maxresults={size}"
        )

    # ---- operations -------------------------------------------------------------------------------
    async def set_secret(self, request: web.Request) -> web.Response:
        body = await _body(request)
        value = body.get("value")
        if not isinstance(value, str):
            raise errors.BadParameter("Property value is required and must be a string.")
        record, version = self.store.set_secret(
            request.match_info["name"],
            value,
            content_type=_content_type_in(body.get("contentType")),
            tags=_tags_in(body.get("tags")),
            attributes=_attributes_in(body.get("attributes")),
        )
        return self._ok(self._bundle(record, version, with_value=True))

    async def get_secret(self, request: web.Request) -> web.Response:
        record, version = self.store.get_secret(request.match_info["name"], request.match_info.get("version"))
        return self._ok(self._bundle(record, version, with_value=True))

    async def update_secret(self, request: web.Request) -> web.Response:
        body = await _body(request)
        record, version = self.store.update_secret(
            request.match_info["name"],
            request.match_info.get("version"),
            content_type=_content_type_in(body.get("contentType")),
            tags=_tags_in(body.get("tags")),
            attributes=_attributes_in(body.get("attributes")),
        )
        return self._ok(self._bundle(record, version, with_value=False))

    async def list_secrets(self, request: web.Request) -> web.Response:
        size = self._page_size(request)
        token = request.query.get("$skiptoken")
        records, marker = self.store.list_secrets(str(decode_marker(token)) if token else None, size)
        # the same bytes as dumping {"value": [...], "nextLink": ...} whole, from cached items
        body = (
            b'{"value":['
            + b",".join([self._listed_item(r) for r in records])
            + b'],"nextLink":'
            + _dumps(self._next_link(request, marker, size))
            + b"}"
        )
        return _json_bytes(200, body, self._headers())

    async def list_versions(self, request: web.Request) -> web.Response:
        size = self._page_size(request)
        token = request.query.get("$skiptoken")
        offset = decode_marker(token) if token else 0
        if not isinstance(offset, int) or offset < 0:
            raise errors.BadParameter("The $skiptoken is invalid; start the listing again without it.")
        name = request.match_info["name"]
        if not self.store.exists(name):  # the service lists no versions of a name it never held: 200, empty
            return self._ok({"value": [], "nextLink": None})
        versions, marker = self.store.list_versions(name, offset, size)
        record = self.store.get_record(name)
        return self._ok(
            {
                "value": [self._item(record, v, versioned=True) for v in versions],
                "nextLink": self._next_link(request, marker, size),
            }
        )

    async def delete_secret(self, request: web.Request) -> web.Response:
        record = self.store.delete_secret(request.match_info["name"])
        return self._ok(self._deleted(record, versioned=True))

    async def get_deleted(self, request: web.Request) -> web.Response:
        return self._ok(self._deleted(self.store.get_deleted(request.match_info["name"]), versioned=True))

    async def list_deleted(self, request: web.Request) -> web.Response:
        size = self._page_size(request)
        token = request.query.get("$skiptoken")
        records, marker = self.store.list_deleted(str(decode_marker(token)) if token else None, size)
        return self._ok(
            {
                "value": [self._deleted(r, versioned=False) for r in records],
                "nextLink": self._next_link(request, marker, size),
            }
        )

    async def purge(self, request: web.Request) -> web.Response:
        self.store.purge_deleted(request.match_info["name"])
        response = web.Response(status=204)
        response.headers.update(self._headers())
        return response

    async def recover(self, request: web.Request) -> web.Response:
        record, version = self.store.recover_deleted(request.match_info["name"])
        return self._ok(self._bundle(record, version, with_value=False))

    async def backup(self, request: web.Request) -> web.Response:
        blob = self.store.backup_secret(request.match_info["name"])
        return self._ok({"value": base64.urlsafe_b64encode(blob).decode().rstrip("=")})

    async def restore(self, request: web.Request) -> web.Response:
        body = await _body(request)
        raw = body.get("value")
        if not isinstance(raw, str):
            raise errors.BadParameter("Property value is required: the base64url backup blob.")
        try:
            blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            raise errors.BadParameter("Property value has invalid value: expected base64url.") from None
        record, version = self.store.restore_secret(blob)
        return self._ok(self._bundle(record, version, with_value=False))
