"""The control plane's state and rules, with no HTTP: resources and their keys, apps and their passwords,
role assignments, Graph permissions, long-running operations, faults and a call log.

Everything is in memory and guarded by one lock: the wire layer runs on the emulator's loop while tests
read counters and flip switches from their own thread. Values never leave through `snapshot()`.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import secrets
import string
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..vault.auth import SUBSCRIPTION_ID
from .errors import (
    CloudError,
    TokenError,
    authorization_failed,
    graph_denied,
    graph_not_found,
    resource_not_found,
)

# ------------------------------------------------------------------ resource types

# Lower-case type path (provider/type[/child...]) → (kind, canonical type path, key actions).
STORAGE, COSMOS, REDIS, RULE, CONTAINER = "storage", "cosmos", "redis", "rule", "container"
_TYPES: dict[str, tuple[str, str]] = {
    "microsoft.storage/storageaccounts": (STORAGE, "Microsoft.Storage/storageAccounts"),
    "microsoft.documentdb/databaseaccounts": (COSMOS, "Microsoft.DocumentDB/databaseAccounts"),
    "microsoft.cache/redis": (REDIS, "Microsoft.Cache/redis"),
}
for _ns, _hub in (("Microsoft.ServiceBus", ("queues", "topics")), ("Microsoft.EventHub", ("eventhubs",))):
    _TYPES[f"{_ns}/namespaces".lower()] = (CONTAINER, f"{_ns}/namespaces")
    _TYPES[f"{_ns}/namespaces/authorizationrules".lower()] = (RULE, f"{_ns}/namespaces/authorizationRules")
    for _child in _hub:
        _TYPES[f"{_ns}/namespaces/{_child}".lower()] = (CONTAINER, f"{_ns}/namespaces/{_child}")
        _TYPES[f"{_ns}/namespaces/{_child}/authorizationrules".lower()] = (
            RULE,
            f"{_ns}/namespaces/{_child}/authorizationRules",
        )

SERVED = ", ".join(sorted({c for _, c in _TYPES.values()}))

KEY_ACTIONS: dict[str, tuple[str, ...]] = {
    STORAGE: ("listKeys", "regenerateKey"),
    COSMOS: ("listKeys", "regenerateKey"),
    REDIS: ("listKeys", "regenerateKey"),
    RULE: ("listKeys", "regenerateKeys"),
    CONTAINER: (),
}

ROLES: dict[str, tuple[str, ...]] = {
    "Owner": ("*",),
    "Contributor": ("*",),
    "Reader": ("*/read",),
    "Storage Account Key Operator Service Role": (
        "Microsoft.Storage/storageAccounts/listkeys/action",
        "Microsoft.Storage/storageAccounts/regeneratekey/action",
    ),
    # A custom role with just the key actions of the other four providers (what the README recommends).
    "Key Rotator": (
        "Microsoft.DocumentDB/databaseAccounts/listKeys/action",
        "Microsoft.DocumentDB/databaseAccounts/regenerateKey/action",
        "Microsoft.Cache/redis/listKeys/action",
        "Microsoft.Cache/redis/regenerateKey/action",
        "Microsoft.ServiceBus/namespaces/*authorizationRules/listKeys/action",
        "Microsoft.ServiceBus/namespaces/*authorizationRules/regenerateKeys/action",
        "Microsoft.EventHub/namespaces/*authorizationRules/listKeys/action",
        "Microsoft.EventHub/namespaces/*authorizationRules/regenerateKeys/action",
    ),
}

GRAPH_PERMISSIONS = ("Application.Read.All", "Application.ReadWrite.OwnedBy", "Application.ReadWrite.All")
SECRET_ALPHABET = string.ascii_letters + string.digits + "~._-"


def _key(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode()


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_time(raw: str) -> datetime:
    """ISO-8601 as clients send it (Z or an offset, any fraction)."""
    text = raw.strip().replace("Z", "+00:00")
    if "." in text:  # Python 3.11 parses at most 6 fractional digits
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = head + "." + digits[:6] + rest[len(digits) :]
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ResourcePath:
    """An ARM path split into its parts; `key` is the case-insensitive identity of the resource."""

    subscription: str
    group: str
    provider: str
    types: tuple[str, ...]
    names: tuple[str, ...]
    action: str | None

    @property
    def type_key(self) -> str:
        return "/".join((self.provider, *self.types)).lower()

    @property
    def resource_id(self) -> str:
        parts = "".join(f"/{t}/{n}" for t, n in zip(self.types, self.names, strict=True))
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.group}/providers/{self.provider}{parts}"
        )

    @property
    def key(self) -> str:
        return self.resource_id.lower()

    @property
    def parent_key(self) -> str | None:
        if len(self.names) < 2:
            return None
        parent = ResourcePath(
            self.subscription, self.group, self.provider, self.types[:-1], self.names[:-1], None
        )
        return parent.key

    def kind(self) -> tuple[str, str]:
        found = _TYPES.get(self.type_key)
        if found is None:
            raise CloudError(
                400,
                "InvalidResourceType",
                f"The resource type '{'/'.join(self.types)}' could not be found in the namespace "
                f"'{self.provider}' (the emulator serves {SERVED}).",
            )
        return found

    def action_name(self, operation: str) -> str:
        _, canonical = self.kind()
        return (
            f"{canonical}/{operation}"
            if operation in ("read", "write")
            else f"{canonical}/{operation}/action"
        )


def parse_resource_path(path: str) -> ResourcePath:
    parts = [p for p in path.split("/") if p]
    if len(parts) < 8 or parts[0].lower() != "subscriptions" or parts[2].lower() != "resourcegroups":
        raise CloudError(404, "InvalidRequestUri", f"The request URI '{path}' is not a resource URI.")
    if parts[4].lower() != "providers":
        raise CloudError(404, "InvalidRequestUri", f"The request URI '{path}' is not a resource URI.")
    subscription, group, provider, rest = parts[1], parts[3], parts[5], parts[6:]
    action = rest.pop() if len(rest) % 2 == 1 else None
    return ResourcePath(subscription, group, provider, tuple(rest[0::2]), tuple(rest[1::2]), action)


@dataclass
class Resource:
    path: ResourcePath
    kind: str
    location: str
    body: dict[str, Any]
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    key_times: dict[str, datetime] = field(default_factory=dict)
    created_by: str = ""


@dataclass
class Operation:
    """A long-running operation (Cosmos regenerateKey): done after `polls_left` status reads."""

    id: str
    resource: str
    polls_left: int
    apply: Any = field(repr=False)
    done: bool = False


@dataclass
class PasswordCredential:
    key_id: str
    display_name: str | None
    secret: str = field(repr=False)
    start: datetime
    end: datetime
    rejections_left: int = 0  # propagation: token requests refused with this secret before it works

    def body(self, *, with_secret: bool = False) -> dict[str, Any]:
        return {
            "customKeyIdentifier": None,
            "displayName": self.display_name,
            "endDateTime": _time(self.end),
            "hint": self.secret[:3],
            "keyId": self.key_id,
            "secretText": self.secret if with_secret else None,
            "startDateTime": _time(self.start),
        }


@dataclass
class Application:
    object_id: str
    app_id: str
    display_name: str
    owners: set[str] = field(default_factory=set)
    passwords: list[PasswordCredential] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity",
            "id": self.object_id,
            "appId": self.app_id,
            "displayName": self.display_name,
            "passwordCredentials": [p.body() for p in self.passwords],
        }


@dataclass
class Fault:
    """Answer the next `times` matching calls with this error instead (service: arm, graph, token, blob)."""

    service: str
    match: str  # a case-insensitive substring of the operation name ("listKeys", "addPassword"), "" = any
    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1


@dataclass
class Principal:
    object_id: str
    client_id: str


class CloudStore:
    """All state of the local control plane."""

    def __init__(self, default_principals: list[str] | None = None) -> None:
        self.lock = threading.RLock()
        self.default_principals = list(default_principals or [])
        self.reset()

    # ------------------------------------------------------------------ lifecycle and switches

    def reset(self) -> None:
        with self.lock:
            self.resources: dict[str, Resource] = {}
            self.operations: dict[str, Operation] = {}
            self.apps: dict[str, Application] = {}
            self.assignments: list[tuple[str, str, str]] = [
                (p, "Owner", f"/subscriptions/{SUBSCRIPTION_ID}".lower()) for p in self.default_principals
            ]
            self.graph_permissions: dict[str, set[str]] = {
                p: {"Application.ReadWrite.OwnedBy"} for p in self.default_principals
            }
            self.faults: list[Fault] = []
            self.calls: list[tuple[str, str, str]] = []  # (service, operation, resource or app)
            self.regenerations: Counter[str] = Counter()
            self.lro_polls = 1  # status reads before a Cosmos regenerate completes
            self.propagation_failures = 0  # token requests refused with a new app secret before it works
            self.max_password_lifetime_days: float | None = None
            self.max_passwords: int | None = None

    def assign(self, principal: str, role: str, scope: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        with self.lock:
            self.assignments.append((principal.lower(), role, scope.rstrip("/").lower()))

    def unassign(self, principal: str, role: str | None = None) -> None:
        with self.lock:
            self.assignments = [
                a for a in self.assignments if not (a[0] == principal.lower() and role in (None, a[1]))
            ]

    def grant_graph(self, principal: str, *permissions: str) -> None:
        with self.lock:
            self.graph_permissions[principal.lower()] = set(permissions)

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def check_fault(self, service: str, operation: str) -> None:
        with self.lock:
            for fault in self.faults:
                if fault.service == service and fault.match.lower() in operation.lower() and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    raise CloudError(fault.status, fault.code, fault.message, headers=fault.headers)

    def record(self, service: str, operation: str, target: str) -> None:
        with self.lock:
            self.calls.append((service, operation, target.lower()))

    def count(self, operation: str, target: str | None = None) -> int:
        with self.lock:
            return sum(
                1 for _, op, t in self.calls if op == operation and (target is None or t == target.lower())
            )

    # ------------------------------------------------------------------ RBAC

    def authorize(self, principal: Principal, path: ResourcePath, operation: str) -> None:
        action = path.action_name(operation)
        with self.lock:
            for who, role, scope in self.assignments:
                if who != principal.object_id.lower():
                    continue
                if not (path.key == scope or path.key.startswith(scope + "/")):
                    continue
                if any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in ROLES[role]):
                    return
        raise authorization_failed(principal.client_id, principal.object_id, action, path.resource_id)

    # ------------------------------------------------------------------ ARM

    def _find(self, path: ResourcePath) -> Resource:
        resource = self.resources.get(path.key)
        if resource is None:
            _, canonical = path.kind()
            raise resource_not_found(canonical, path.names[-1], path.group)
        return resource

    def put(self, path: ResourcePath, body: dict[str, Any], principal: Principal) -> tuple[Resource, bool]:
        kind, canonical = path.kind()
        name = path.names[-1]
        if kind == STORAGE and not (3 <= len(name) <= 24 and name.isalnum() and name.islower()):
            raise CloudError(
                400,
                "AccountNameInvalid",
                f"{name} is not a valid storage account name. Storage account name must be between 3 and 24 "
                "characters in length and use numbers and lower-case letters only.",
            )
        with self.lock:
            parent = path.parent_key
            if parent is not None and parent not in self.resources:
                raise CloudError(
                    404,
                    "ParentResourceNotFound",
                    f"Can not perform requested operation on nested resource. "
                    f"Parent resource '{'/'.join(path.names[:-1])}' not found.",
                )
            existing = self.resources.get(path.key)
            location = str(body.get("location") or (existing.location if existing else "westeurope"))
            if existing is not None:
                existing.body = body
                return existing, False
            resource = Resource(path, kind, location, body, created_by=principal.object_id)
            now = datetime.now(UTC)
            for slot in self._slots(kind):
                resource.keys[slot] = self._new_key(kind)
                resource.key_times[slot] = now
            self.resources[path.key] = resource
            if kind == CONTAINER and len(path.types) == 1 and canonical.startswith("Microsoft.ServiceBus"):
                # Service Bus makes this rule with every namespace, as Azure does.
                rule = ResourcePath(
                    path.subscription,
                    path.group,
                    path.provider,
                    (*path.types, "AuthorizationRules"),
                    (*path.names, "RootManageSharedAccessKey"),
                    None,
                )
                self.put(rule, {"properties": {"rights": ["Listen", "Manage", "Send"]}}, principal)
            return resource, True

    @staticmethod
    def _slots(kind: str) -> tuple[str, ...]:
        if kind == STORAGE:
            return ("key1", "key2")
        if kind == COSMOS:
            return ("primary", "secondary", "primaryReadonly", "secondaryReadonly")
        if kind in (REDIS, RULE):
            return ("primary", "secondary")
        return ()

    @staticmethod
    def _new_key(kind: str) -> str:
        return _key(64) if kind in (STORAGE, COSMOS) else _key(32)

    def get(self, path: ResourcePath) -> Resource:
        with self.lock:
            return self._find(path)

    def keys_of(self, path: ResourcePath) -> Resource:
        with self.lock:
            resource = self._find(path)
            if resource.kind == CONTAINER:
                raise CloudError(404, "NotFound", f"listKeys is not an operation of '{path.resource_id}'.")
            return resource

    def regenerate(self, path: ResourcePath, body: dict[str, Any]) -> str | None:
        """Regenerate one key as the body asks; returns a long-running operation's id for Cosmos."""
        with self.lock:
            resource = self.keys_of(path)
            slot, supplied = self._slot_for(resource, body)
            self.regenerations[path.key] += 1

            def apply() -> None:
                resource.keys[slot] = supplied or self._new_key(resource.kind)
                resource.key_times[slot] = datetime.now(UTC)

            if resource.kind != COSMOS:
                apply()
                return None
            for pending in self.operations.values():  # as if the earlier one had finished meanwhile
                if pending.resource == path.key and not pending.done:
                    pending.apply()
                    pending.done = True
            operation = Operation(uuid.uuid4().hex, path.key, self.lro_polls, apply)
            self.operations[operation.id] = operation
            if operation.polls_left <= 0:
                apply()
                operation.done = True
            return operation.id

    def _slot_for(self, resource: Resource, body: dict[str, Any]) -> tuple[str, str | None]:
        kind = resource.kind
        field_name, choices = {
            STORAGE: ("keyName", {"key1": "key1", "key2": "key2"}),
            COSMOS: (
                "keyKind",
                {s.lower(): s for s in ("primary", "secondary", "primaryReadonly", "secondaryReadonly")},
            ),
            REDIS: ("keyType", {"primary": "primary", "secondary": "secondary"}),
            RULE: ("keyType", {"primarykey": "primary", "secondarykey": "secondary"}),
        }[kind]
        raw = body.get(field_name)
        slot = choices.get(str(raw).lower()) if isinstance(raw, str) else None
        if slot is None:
            raise CloudError(
                400,
                "InvalidValuesForRequestParameters",  # emulator: the real code is not verified
                f"Values for request parameters are invalid: {field_name}. Expected one of "
                f"{', '.join(sorted(set(choices.values())))}; got {raw!r}.",
            )
        supplied = body.get("key") if kind == RULE else None
        if supplied is not None and (not isinstance(supplied, str) or not 32 <= len(supplied) <= 256):
            raise CloudError(
                400, "BadRequest", "The key must be a string of 32 to 256 characters (emulator's rule)."
            )
        return slot, supplied

    def poll(self, operation_id: str) -> str:
        with self.lock:
            operation = self.operations.get(operation_id)
            if operation is None:
                raise CloudError(404, "OperationNotFound", f"Operation '{operation_id}' was not found.")
            if not operation.done:
                operation.polls_left -= 1
                if operation.polls_left <= 0:
                    operation.apply()
                    operation.done = True
            return "Succeeded" if operation.done else "InProgress"

    def storage_account(self, name: str) -> Resource | None:
        with self.lock:
            for resource in self.resources.values():
                if resource.kind == STORAGE and resource.path.names[-1] == name:
                    return resource
        return None

    def key_value(self, resource_id: str, slot: str) -> str:
        """A key's current value (tests compare what the vault holds with what the resource accepts)."""
        with self.lock:
            return self.resources[resource_id.lower()].keys[slot]

    # ------------------------------------------------------------------ Graph

    def _app(self, object_id: str | None = None, app_id: str | None = None) -> Application:
        for app in self.apps.values():
            if (object_id and app.object_id == object_id.lower()) or (
                app_id and app.app_id == app_id.lower()
            ):
                return app
        raise graph_not_found(object_id or app_id or "")

    def _graph_allow(self, principal: Principal, app: Application | None, write: bool) -> None:
        held = self.graph_permissions.get(principal.object_id.lower(), set())
        if "Application.ReadWrite.All" in held:
            return
        if not write and "Application.Read.All" in held:
            return
        if "Application.ReadWrite.OwnedBy" in held and (
            app is None or principal.object_id.lower() in app.owners
        ):
            return
        raise graph_denied()

    def create_app(self, principal: Principal, display_name: str) -> Application:
        with self.lock:
            self._graph_allow(principal, None, write=True)
            app = Application(
                str(uuid.uuid4()), str(uuid.uuid4()), display_name, {principal.object_id.lower()}
            )
            self.apps[app.object_id] = app
            return app

    def get_app(self, principal: Principal, object_id: str | None, app_id: str | None) -> Application:
        with self.lock:
            app = self._app(object_id, app_id)
            self._graph_allow(principal, app, write=False)
            return app

    def add_password(
        self, principal: Principal, object_id: str | None, app_id: str | None, body: dict[str, Any]
    ) -> PasswordCredential:
        with self.lock:
            app = self._app(object_id, app_id)
            self._graph_allow(principal, app, write=True)
            spec = body.get("passwordCredential") or {}
            if not isinstance(spec, dict):
                raise CloudError(400, "Request_BadRequest", "passwordCredential must be an object.")
            try:
                start = parse_time(spec["startDateTime"]) if spec.get("startDateTime") else datetime.now(UTC)
                end = (
                    parse_time(spec["endDateTime"])
                    if spec.get("endDateTime")
                    else start + timedelta(days=730)
                )
            except (TypeError, ValueError):
                raise CloudError(
                    400, "Request_BadRequest", "Invalid value specified for property 'endDateTime'."
                ) from None
            limit = self.max_password_lifetime_days
            if limit is not None and end - start > timedelta(days=limit):
                raise CloudError(
                    400,
                    "CredentialInvalidLifetimeAsPerAppPolicy",
                    "Credential lifetime exceeds the max value allowed as per assigned policy "
                    "'00000000-0000-0000-0000-00000000bead'.",
                )
            if self.max_passwords is not None and len(app.passwords) >= self.max_passwords:
                raise CloudError(
                    400,
                    "TooManyAppPasswords",
                    f"Not allowed to add {len(app.passwords) + 1} passwords. You can only add a maximum of "
                    f"{self.max_passwords} passwords.",
                )
            secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))
            credential = PasswordCredential(
                str(uuid.uuid4()),
                spec.get("displayName"),
                secret,
                start,
                end,
                rejections_left=self.propagation_failures,
            )
            app.passwords.append(credential)
            return credential

    def remove_password(
        self, principal: Principal, object_id: str | None, app_id: str | None, key_id: str
    ) -> None:
        with self.lock:
            app = self._app(object_id, app_id)
            self._graph_allow(principal, app, write=True)
            for credential in app.passwords:
                if credential.key_id.lower() == str(key_id).lower():
                    app.passwords.remove(credential)
                    return
            raise CloudError(  # emulator: the real wording is not verified
                400,
                "Request_BadRequest",
                f"No password credential with keyId '{key_id}' exists on the application.",
            )

    def app_by_object_id(self, object_id: str) -> Application:
        with self.lock:
            return self._app(object_id=object_id)

    # ------------------------------------------------------------------ Entra token endpoint

    def client_credentials(self, tenant: str, client_id: str, secret: str) -> Application:
        with self.lock:
            app = next((a for a in self.apps.values() if a.app_id == client_id.lower()), None)
            if app is None:
                raise TokenError(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
                )
            now = datetime.now(UTC)
            for credential in app.passwords:
                if (
                    hmac.compare_digest(
                        hashlib.sha256(credential.secret.encode()).digest(),
                        hashlib.sha256(secret.encode()).digest(),
                    )
                    and credential.start - timedelta(minutes=5) <= now <= credential.end
                ):
                    if credential.rejections_left > 0:  # not yet replicated
                        credential.rejections_left -= 1
                        break
                    return app
            raise TokenError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )

    # ------------------------------------------------------------------ what tests may look at

    def snapshot(self) -> dict[str, Any]:
        """Counts and names, never a value."""
        with self.lock:
            return {
                "resources": sorted(r.path.resource_id for r in self.resources.values()),
                "apps": {a.object_id: len(a.passwords) for a in self.apps.values()},
                "regenerations": dict(self.regenerations),
                "calls": len(self.calls),
            }
