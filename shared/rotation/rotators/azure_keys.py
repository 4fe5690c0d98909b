"""Two-key Azure resources: storage accounts, Cosmos DB accounts, Service Bus and Event Hubs SAS rules, Redis.

Azure's own sample semantics (KeyVault-Rotation-StorageAccountKey): the secret's `CredentialId` names the
key in service; rotation regenerates the OTHER key and flips `CredentialId`, so whoever still holds the
previous value keeps working until the next rotation.

Idempotent under crashes (shared/reference/rotation-targets.md B.4):
- Storage, Cosmos DB, Redis make the value: `create_pending` records a SHA-256 prefix of the key about to be
  replaced (tag RotationPreFingerprint, never the key) and stores a placeholder; `apply` regenerates only
  while the key still has that fingerprint (a changed key means a crash came after the regenerate: it
  just reads the new key) and returns the new value, which the engine stores before anything else.
- Service Bus and Event Hubs take the caller's key: `create_pending` draws it, `apply` sends it (skipped
  when the rule already has it), so a retry can never change the key twice.

ValueFormat `key` (default) stores the key; `connection-string` stores what a client library takes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

from ...errors import TargetRefused, TargetUnavailable
from ...vault.versions import tag
from ..policy import TAG_CREDENTIAL_ID, TAG_PROVIDER_ADDRESS, PolicyError, RotationPolicy
from . import PendingCredential, RotationContext
from .azure_rest import AzureRest, CallContext, Sleep

_log = logging.getLogger(__name__)

TAG_VALUE_FORMAT = "ValueFormat"
TAG_FINGERPRINT = "RotationPreFingerprint"
FORMATS = ("key", "connection-string")
INTENT_PREFIX = "(rotation in progress: "
FINGERPRINT_HEX = 16  # 64 bits of SHA-256: identifies a key, reveals nothing usable
LRO_MAX_POLLS = 60
LRO_MAX_WAIT = 10.0

_ARM_PREFIX = r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[-\w._()]{1,90})/providers/"


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:FINGERPRINT_HEX]


def intent_value(operation_id: str, what: str) -> str:
    """The first pending version's value where the target makes the credential: a placeholder, no secret."""
    return f"{INTENT_PREFIX}{what}; operation {operation_id})"


def is_intent(value: str) -> bool:
    return value.startswith(INTENT_PREFIX)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Address:
    resource_id: str
    name: str  # account / cache name, or the rule's name
    parts: dict[str, str]


class KeyPairRotator:
    """The shared algorithm; subclasses describe their resource's REST shapes."""

    rotation_type: ClassVar[str]
    touches_target = True
    provider_generates: ClassVar[bool] = True
    api_version: ClassVar[str]
    address_pattern: ClassVar[re.Pattern[str]]
    address_example: ClassVar[str]
    # CredentialId values, canonical spelling, in order (first is the primary).
    slots: ClassVar[tuple[str, str]]
    regenerate_action: ClassVar[str] = "regenerateKey"
    role: ClassVar[str]

    def __init__(self, *, retry_total: int = 3, sleep: Sleep | None = None) -> None:
        self.retry_total = retry_total
        self.sleep = sleep

    # ------------------------------------------------------------------ policy

    def validate(self, policy: RotationPolicy) -> None:
        self._address(policy)
        self._format(policy)
        raw = tag(policy.options, TAG_CREDENTIAL_ID)
        if raw is not None and raw.strip() and self._slot(raw) is None:
            raise PolicyError(
                f"tag {TAG_CREDENTIAL_ID}={raw!r} must be {' or '.join(self.slots)} for {self.rotation_type} "
                "(the key the secret holds now; rotation regenerates the other one)"
            )

    def _address(self, policy: RotationPolicy) -> Address:
        raw = (tag(policy.options, TAG_PROVIDER_ADDRESS) or "").strip()
        found = self.address_pattern.match(raw)
        if not found:
            raise PolicyError(
                f"tag {TAG_PROVIDER_ADDRESS}={raw!r} is not a {self.rotation_type} resource ID; set it "
                f"to e.g. {self.address_example}"
            )
        parts = {k: v for k, v in found.groupdict().items() if v is not None}
        return Address(raw.rstrip("/"), parts["name"], parts)

    def _format(self, policy: RotationPolicy) -> str:
        value = (tag(policy.options, TAG_VALUE_FORMAT) or "key").strip().lower()
        if value not in FORMATS:
            raise PolicyError(f"tag {TAG_VALUE_FORMAT}={value!r} must be key or connection-string")
        return value

    def _slot(self, raw: str) -> str | None:
        return next((s for s in self.slots if s.lower() == raw.strip().lower()), None)

    def _other(self, slot: str) -> str:
        return self.slots[1] if slot == self.slots[0] else self.slots[0]

    def _rest(self, ctx: RotationContext) -> AzureRest:
        if ctx.settings is None:
            raise TargetRefused("The rotator needs the app's settings (AZURE_RESOURCE_MANAGER_URL).")
        if self.sleep is not None:
            return AzureRest(ctx.settings, retry_total=self.retry_total, sleep=self.sleep)
        return AzureRest(ctx.settings, retry_total=self.retry_total)

    def _call(self, operation: str, address: Address) -> CallContext:
        return CallContext(operation, address.resource_id, f"{self.role} on {address.resource_id}")

    # ------------------------------------------------------------------ REST shapes (per resource)

    async def list_keys(self, rest: AzureRest, address: Address) -> dict[str, str]:
        """slot → key value."""
        reply = await rest.arm(
            "POST", f"{address.resource_id}/listKeys", self.api_version, self._call("list keys", address)
        )
        return self.keys_from(reply.body)

    def keys_from(self, body: Any) -> dict[str, str]:
        raise NotImplementedError

    async def regenerate(
        self, rest: AzureRest, address: Address, slot: str, key: str | None
    ) -> dict[str, str]:
        """Regenerate one key (with the caller's value where the service takes one); slot → key after."""
        reply = await rest.arm(
            "POST",
            f"{address.resource_id}/{self.regenerate_action}",
            self.api_version,
            self._call(f"regenerate key {slot}", address),
            self.regenerate_body(slot, key),
        )
        return self.keys_from(reply.body)

    def regenerate_body(self, slot: str, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    async def format_value(
        self, rest: AzureRest, address: Address, value_format: str, slot: str, key: str
    ) -> str:
        return key

    def key_of(self, value: str) -> str:
        """The key inside a stored value (a connection string's key part, or the value itself)."""
        for part in value.split(";"):
            name, _, rest = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesskey", "password"):
                return rest
        if "password=" in value:
            return value.split("password=", 1)[1].split(",", 1)[0]
        return value

    async def check_value(self, rest: AzureRest, address: Address, slot: str, key: str) -> None:
        """A data-plane check that the key authenticates, where the rotator has one (storage)."""
        return None

    # ------------------------------------------------------------------ the four steps

    async def _current_slot(self, ctx: RotationContext, keys: dict[str, str]) -> str:
        raw = tag(ctx.policy.options, TAG_CREDENTIAL_ID)
        slot = self._slot(raw) if raw else None
        if slot is not None:
            return slot
        # No CredentialId yet (a secret written by hand): find which key the current value holds.
        current = self.key_of(await ctx.read_value(None))
        for candidate, value in keys.items():
            if current and same(value, current):
                return candidate
        raise TargetRefused(
            f"The secret's value is neither key of {self._address(ctx.policy).resource_id}, and it has no "
            f"{TAG_CREDENTIAL_ID} tag: set {TAG_CREDENTIAL_ID} to {' or '.join(self.slots)} (the key it should "
            "hold now; rotation regenerates the other one)."
        )

    async def create_pending(self, ctx: RotationContext) -> PendingCredential:
        address = self._address(ctx.policy)
        value_format = self._format(ctx.policy)
        rest = self._rest(ctx)
        keys = await self.list_keys(rest, address)
        target = self._other(await self._current_slot(ctx, keys))
        if target not in keys:
            raise TargetRefused(
                f"{address.resource_id} did not list key {target}; check {TAG_PROVIDER_ADDRESS}."
            )
        if not self.provider_generates:
            key = base64.b64encode(secrets.token_bytes(32)).decode()
            value = await self.format_value(rest, address, value_format, target, key)
            return PendingCredential(value, {TAG_CREDENTIAL_ID: target})
        return PendingCredential(
            intent_value(ctx.operation_id, f"{target} of {address.name} is regenerated next"),
            {TAG_CREDENTIAL_ID: target, TAG_FINGERPRINT: fingerprint(keys[target])},
        )

    def _target(self, pending: PendingCredential, address: Address) -> str:
        slot = self._slot(pending.tags.get(TAG_CREDENTIAL_ID, "") or "")
        if slot is None:
            raise TargetRefused(
                f"The pending version of the secret for {address.resource_id} lost its "
                f"{TAG_CREDENTIAL_ID} tag; delete the disabled pending version and rotate again."
            )
        return slot

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> PendingCredential | None:
        address = self._address(ctx.policy)
        value_format = self._format(ctx.policy)
        rest = self._rest(ctx)
        target = self._target(pending, address)
        keys = await self.list_keys(rest, address)
        if not self.provider_generates:
            key = self.key_of(pending.value)
            if not same(keys.get(target, ""), key):
                keys = await self.regenerate(rest, address, target, key)
            made = await self.format_value(rest, address, value_format, target, keys.get(target, ""))
            return None if same(made, pending.value) else PendingCredential(made, {TAG_CREDENTIAL_ID: target})
        if is_intent(pending.value):
            recorded = pending.tags.get(TAG_FINGERPRINT, "")
            if recorded and same(fingerprint(keys[target]), recorded):
                keys = await self.regenerate(rest, address, target, None)
            elif not recorded:  # never regenerate without knowing whether it already happened
                _log.warning(
                    "%s: the pending version has no %s tag; storing key %s of %s without regenerating it",
                    ctx.name,
                    TAG_FINGERPRINT,
                    target,
                    address.resource_id,
                )
            else:
                _log.info(
                    "%s: key %s of %s already regenerated (a crash came after it); storing it",
                    ctx.name,
                    target,
                    address.resource_id,
                )
            value = await self.format_value(rest, address, value_format, target, keys[target])
            return PendingCredential(value, {TAG_CREDENTIAL_ID: target})
        made = await self.format_value(rest, address, value_format, target, keys[target])
        if same(made, pending.value):
            return None
        _log.warning(
            "%s: key %s of %s changed outside this rotation; storing the key the resource has now",
            ctx.name,
            target,
            address.resource_id,
        )
        return PendingCredential(made, {TAG_CREDENTIAL_ID: target})

    async def test(self, ctx: RotationContext, pending: PendingCredential) -> None:
        address = self._address(ctx.policy)
        rest = self._rest(ctx)
        target = self._target(pending, address)
        keys = await self.list_keys(rest, address)
        key = self.key_of(pending.value)
        if not same(keys.get(target, ""), key):
            raise TargetUnavailable(
                f"{address.resource_id} does not list the pending value as key {target} yet; the next run "
                "applies and tests it again."
            )
        await self.check_value(rest, address, target, key)

    async def finish(self, ctx: RotationContext, pending: PendingCredential) -> None:
        return None  # the previous key stays valid until the next rotation regenerates it


# ---------------------------------------------------------------------- storage accounts


class StorageAccountKeyRotator(KeyPairRotator):
    rotation_type = "storage-account-key"
    api_version = "2023-05-01"
    address_pattern = re.compile(
        _ARM_PREFIX + r"Microsoft\.Storage/storageAccounts/(?P<name>[a-z0-9]{3,24})/?$", re.IGNORECASE
    )
    address_example = (
        "/subscriptions/<subscription-id>/resourceGroups/<group>/providers/Microsoft.Storage/"
        "storageAccounts/<name>"
    )
    slots = ("key1", "key2")
    role = "the 'Storage Account Key Operator Service Role' (81a9662b-bebf-436f-a333-f67b29880f12)"

    def keys_from(self, body: Any) -> dict[str, str]:
        entries = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise TargetUnavailable("Resource Manager answered listKeys without a keys list; retry later.")
        return {
            str(k.get("keyName")).lower(): str(k.get("value"))
            for k in entries
            if isinstance(k, dict) and str(k.get("keyName", "")).lower() in self.slots
        }

    def regenerate_body(self, slot: str, key: str | None) -> dict[str, str]:
        return {"keyName": slot}

    async def _endpoints(self, rest: AzureRest, address: Address) -> dict[str, str] | None:
        """The account's endpoints when the identity may read the account (Reader); None otherwise."""
        try:
            reply = await rest.arm("GET", address.resource_id, self.api_version, self._call("read", address))
        except TargetRefused:
            return None
        properties = reply.body.get("properties") if isinstance(reply.body, dict) else None
        endpoints = properties.get("primaryEndpoints") if isinstance(properties, dict) else None
        return {str(k): str(v) for k, v in endpoints.items()} if isinstance(endpoints, dict) else None

    async def format_value(
        self, rest: AzureRest, address: Address, value_format: str, slot: str, key: str
    ) -> str:
        if value_format == "key":
            return key
        endpoints = await self._endpoints(rest, address) or {}
        blob = endpoints.get("blob", "")
        suffix = re.match(rf"^https://{address.name}\.blob\.(.+?)/?$", blob)
        base = f"DefaultEndpointsProtocol=https;AccountName={address.name};AccountKey={key}"
        if suffix:
            return f"{base};EndpointSuffix={suffix.group(1)}"
        if blob:
            return f"{base};BlobEndpoint={blob}"
        return f"{base};EndpointSuffix={_storage_suffix(rest.arm_url)}"

    async def check_value(self, rest: AzureRest, address: Address, slot: str, key: str) -> None:
        """A Shared Key-signed Get Blob Service Properties with the new key (when the endpoint is known)."""
        endpoints = await self._endpoints(rest, address)
        if not endpoints or not endpoints.get("blob"):
            _log.info("%s: no read access to the account's endpoints; listKeys proved the key", address.name)
            return
        from azure.core.credentials import AzureNamedKeyCredential
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
        from azure.storage.blob.aio import BlobServiceClient

        options: dict[str, Any] = {"retry_total": 1}
        if rest.settings.ca_bundle:
            options["connection_verify"] = rest.settings.ca_bundle
        client = BlobServiceClient(
            endpoints["blob"], credential=AzureNamedKeyCredential(address.name, key), **options
        )
        try:
            await client.get_service_properties()
        except (ClientAuthenticationError, HttpResponseError) as exc:
            status = getattr(exc, "status_code", None)
            if status == 403:
                raise TargetUnavailable(
                    f"The blob service of {address.name} does not accept key {slot} yet (403); the next run "
                    "tests it again."
                ) from None
            raise TargetUnavailable(
                f"The blob service of {address.name} answered HTTP {status} to the key test; retry later."
            ) from None
        except AzureError as exc:
            raise TargetUnavailable(
                f"The blob service of {address.name} could not be reached to test the key "
                f"({type(exc).__name__})."
            ) from None
        finally:
            await client.close()


def _storage_suffix(arm_url: str) -> str:
    host = arm_url.split("//", 1)[-1].split("/", 1)[0].lower()
    return {
        "management.chinacloudapi.cn": "core.chinacloudapi.cn",
        "management.usgovcloudapi.net": "core.usgovcloudapi.net",
    }.get(host, "core.windows.net")


# ---------------------------------------------------------------------- Cosmos DB


class CosmosDbKeyRotator(KeyPairRotator):
    rotation_type = "cosmosdb-key"
    api_version = "2024-11-15"
    address_pattern = re.compile(
        _ARM_PREFIX + r"Microsoft\.DocumentDB/databaseAccounts/(?P<name>[a-z0-9-]{3,44})/?$", re.IGNORECASE
    )
    address_example = (
        "/subscriptions/<subscription-id>/resourceGroups/<group>/providers/Microsoft.DocumentDB/databaseAccounts/"
        "<account>"
    )
    slots = ("Primary", "Secondary")  # Azure's Cosmos sample: CredentialId Primary/Secondary → keyKind
    role = (
        "a role with Microsoft.DocumentDB/databaseAccounts/listKeys/action and .../regenerateKey/action "
        "(a custom role; Azure's sample grants Contributor)"
    )

    def keys_from(self, body: Any) -> dict[str, str]:
        if not isinstance(body, dict):
            raise TargetUnavailable("Resource Manager answered listKeys without keys; retry later.")
        return {s: str(body[f"{s.lower()}MasterKey"]) for s in self.slots if f"{s.lower()}MasterKey" in body}

    def regenerate_body(self, slot: str, key: str | None) -> dict[str, str]:
        return {"keyKind": slot.lower()}

    async def regenerate(
        self, rest: AzureRest, address: Address, slot: str, key: str | None
    ) -> dict[str, str]:
        """A long-running operation: 202 + Azure-AsyncOperation, polled until Succeeded; then listKeys."""
        call = self._call(f"regenerate key {slot}", address)
        reply = await rest.arm(
            "POST",
            f"{address.resource_id}/regenerateKey",
            self.api_version,
            call,
            self.regenerate_body(slot, None),
        )
        status_url = reply.headers.get("Azure-AsyncOperation") or reply.headers.get("azure-asyncoperation")
        if reply.status == 202 and status_url:
            for _ in range(LRO_MAX_POLLS):
                wait = reply.headers.get("Retry-After") or reply.headers.get("retry-after") or "1"
                try:
                    seconds = min(max(float(wait), 0.0), LRO_MAX_WAIT)
                except ValueError:
                    seconds = 1.0
                await rest.sleep(seconds)
                reply = await rest.arm_url_get(status_url, call)
                state = (
                    str((reply.body or {}).get("status", "")).lower() if isinstance(reply.body, dict) else ""
                )
                if state == "succeeded":
                    break
                if state in ("failed", "canceled", "cancelled"):
                    raise TargetUnavailable(
                        f"Regenerating key {slot} of {address.resource_id} ended {state}; the next "
                        "run tries again."
                    )
            else:
                raise TargetUnavailable(
                    f"Regenerating key {slot} of {address.resource_id} is still running after "
                    f"{LRO_MAX_POLLS} polls; the next run continues."
                )
        return await self.list_keys(rest, address)

    async def format_value(
        self, rest: AzureRest, address: Address, value_format: str, slot: str, key: str
    ) -> str:
        if value_format == "key":
            return key
        endpoint = f"https://{address.name}.documents.azure.com:443/"
        try:
            reply = await rest.arm("GET", address.resource_id, self.api_version, self._call("read", address))
            endpoint = str(reply.body["properties"]["documentEndpoint"])
        except (TargetRefused, KeyError, TypeError):
            pass
        return f"AccountEndpoint={endpoint};AccountKey={key};"


# ---------------------------------------------------------------------- Redis


class RedisKeyRotator(KeyPairRotator):
    rotation_type = "redis-key"
    api_version = "2024-11-01"
    address_pattern = re.compile(
        _ARM_PREFIX + r"Microsoft\.Cache/redis/(?P<name>[A-Za-z0-9-]{1,63})/?$", re.IGNORECASE
    )
    address_example = (
        "/subscriptions/<subscription-id>/resourceGroups/<group>/providers/Microsoft.Cache/redis/<name>"
    )
    slots = ("Primary", "Secondary")
    role = "a role with Microsoft.Cache/redis/listKeys/action and .../regenerateKey/action (a custom role)"

    def keys_from(self, body: Any) -> dict[str, str]:
        if not isinstance(body, dict):
            raise TargetUnavailable("Resource Manager answered listKeys without keys; retry later.")
        return {s: str(body[f"{s.lower()}Key"]) for s in self.slots if f"{s.lower()}Key" in body}

    def regenerate_body(self, slot: str, key: str | None) -> dict[str, str]:
        return {"keyType": slot}

    async def format_value(
        self, rest: AzureRest, address: Address, value_format: str, slot: str, key: str
    ) -> str:
        if value_format == "key":
            return key
        host, port = f"{address.name}.redis.cache.windows.net", 6380
        try:
            reply = await rest.arm("GET", address.resource_id, self.api_version, self._call("read", address))
            host, port = str(reply.body["properties"]["hostName"]), int(reply.body["properties"]["sslPort"])
        except (TargetRefused, KeyError, TypeError, ValueError):
            pass
        return f"{host}:{port},password={key},ssl=True,abortConnect=False"


# ---------------------------------------------------------------------- Service Bus and Event Hubs


class _SasRuleRotator(KeyPairRotator):
    provider_generates = False
    regenerate_action = "regenerateKeys"
    slots = ("PrimaryKey", "SecondaryKey")

    def keys_from(self, body: Any) -> dict[str, str]:
        if not isinstance(body, dict):
            raise TargetUnavailable("Resource Manager answered listKeys without keys; retry later.")
        return {s: str(body[s[0].lower() + s[1:]]) for s in self.slots if s[0].lower() + s[1:] in body}

    def regenerate_body(self, slot: str, key: str | None) -> dict[str, str]:
        body = {"keyType": slot}
        if key is not None:
            body["key"] = key
        return body

    async def format_value(
        self, rest: AzureRest, address: Address, value_format: str, slot: str, key: str
    ) -> str:
        if value_format == "key":
            return key
        # The service's own connection string for that key, with the key in it.
        reply = await rest.arm(
            "POST", f"{address.resource_id}/listKeys", self.api_version, self._call("list keys", address)
        )
        field = "primaryConnectionString" if slot == "PrimaryKey" else "secondaryConnectionString"
        template = str((reply.body or {}).get(field) or "") if isinstance(reply.body, dict) else ""
        if "SharedAccessKey=" not in template:
            raise TargetUnavailable(
                f"Resource Manager listed no {field} for {address.resource_id}; retry later."
            )
        return re.sub(r"SharedAccessKey=[^;]*", lambda _m: f"SharedAccessKey={key}", template)


class ServiceBusKeyRotator(_SasRuleRotator):
    rotation_type = "servicebus-key"
    api_version = "2021-11-01"
    address_pattern = re.compile(
        _ARM_PREFIX + r"Microsoft\.ServiceBus/namespaces/(?P<namespace>[A-Za-z0-9-]{6,50})"
        r"(?:/(?P<entity_type>queues|topics)/(?P<entity>[^/]{1,260}))?/authorizationRules/(?P<name>[^/]{1,256})/?$",
        re.IGNORECASE,
    )
    address_example = (
        "/subscriptions/<subscription-id>/resourceGroups/<group>/providers/Microsoft.ServiceBus/namespaces/<ns>/"
        "authorizationRules/<rule> (or .../queues/<queue>/authorizationRules/<rule>)"
    )
    role = (
        "a role with Microsoft.ServiceBus/namespaces/authorizationRules/listKeys/action and "
        ".../regenerateKeys/action (queues/topics: the same under their authorizationRules; a custom role)"
    )


class EventHubsKeyRotator(_SasRuleRotator):
    rotation_type = "eventhubs-key"
    api_version = "2024-01-01"
    address_pattern = re.compile(
        _ARM_PREFIX + r"Microsoft\.EventHub/namespaces/(?P<namespace>[A-Za-z0-9-]{6,50})"
        r"(?:/(?P<entity_type>eventhubs)/(?P<entity>[^/]{1,256}))?/authorizationRules/(?P<name>[^/]{1,256})/?$",
        re.IGNORECASE,
    )
    address_example = (
        "/subscriptions/<subscription-id>/resourceGroups/<group>/providers/Microsoft.EventHub/namespaces/<ns>/"
        "authorizationRules/<rule> (or .../eventhubs/<hub>/authorizationRules/<rule>)"
    )
    role = (
        "a role with Microsoft.EventHub/namespaces/authorizationRules/listKeys/action and .../regenerateKeys/"
        "action (event hubs: the same under their authorizationRules; a custom role)"
    )
