"""Client secrets of Microsoft Entra app registrations, through Microsoft Graph.

Entra makes the secret (`addPassword` returns `secretText` once), so:
- `create_pending` checks the app can be read and stores a placeholder that records which credential the
  new one replaces (tag RotationReplacedCredentialId);
- `apply` removes credentials this very operation added earlier but never stored (orphans of a crash, found
  by the marker display name `kvrot:<vault>/<secret>:<operation id>`), then adds the new secret and returns
  it: the engine stores it at once, before the test;
- `test` acquires a token with the new secret (client-credentials grant), retrying for Entra's
  propagation delay within a bounded budget (sleep and clock injected);
- `finish` removes the credential two generations old (the one the current version replaced) and any other
  marker-named credential of this secret that is neither in service nor new; credentials people added by
  hand are never touched.

The app's identity needs Graph's `Application.ReadWrite.OwnedBy` and must own the application.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from ...errors import TargetRefused, TargetUnavailable
from ...vault.versions import TAG_OPERATION, TAG_REVOKE_AFTER, parse_time, tag
from ..policy import TAG_CREDENTIAL_ID, TAG_PROVIDER_ADDRESS, PolicyError, RotationPolicy
from . import PendingCredential, RotationContext
from .azure_keys import intent_value, is_intent
from .azure_rest import GRAPH_ROLE, AzureRest, CallContext, ServiceRefused, Sleep

_log = logging.getLogger(__name__)

TAG_TENANT = "TenantId"
TAG_APP_ID = "AppId"
TAG_LIFETIME = "CredentialLifetimeDays"
TAG_REPLACED = "RotationReplacedCredentialId"
MARKER_PREFIX = "kvrot:"
TOKEN_SCOPE = "https://graph.microsoft.com/.default"
PROPAGATION_BUDGET_SECONDS = 120.0
PROPAGATION_FIRST_WAIT = 2.0
PROPAGATION_MAX_WAIT = 20.0
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TENANT = re.compile(r"^(?:[0-9a-fA-F-]{36}|[A-Za-z0-9][A-Za-z0-9.-]{0,252})$")
PROPAGATING = ("AADSTS7000215", "AADSTS7000222")  # invalid / expired client secret: not replicated yet


class EntraAppSecretRotator:
    rotation_type = "entra-app-secret"
    touches_target = True

    def __init__(
        self,
        *,
        retry_total: int = 3,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        propagation_budget: float = PROPAGATION_BUDGET_SECONDS,
    ) -> None:
        self.retry_total = retry_total
        self.sleep = sleep
        self.monotonic = monotonic
        self.propagation_budget = propagation_budget

    # ------------------------------------------------------------------ policy

    def validate(self, policy: RotationPolicy) -> None:
        self._object_id(policy)
        for name in (TAG_TENANT, TAG_APP_ID):
            raw = (tag(policy.options, name) or "").strip()
            pattern = _GUID if name == TAG_APP_ID else _TENANT
            if not pattern.match(raw):
                what = "the application (client) ID" if name == TAG_APP_ID else "the tenant ID (a GUID)"
                raise PolicyError(f"tag {name}={raw!r} must be {what}, used to test the new secret")
        lifetime = self._lifetime(policy)
        interval = policy.validity - policy.threshold
        if lifetime <= interval + policy.overlap:
            raise PolicyError(
                f"tag {TAG_LIFETIME}={lifetime.total_seconds() / 86400:g} must exceed the rotation interval "
                f"({interval.total_seconds() / 86400:g} days) plus the overlap "
                f"({policy.overlap.total_seconds() / 86400:g} days), or the secret in service expires first"
            )

    def _object_id(self, policy: RotationPolicy) -> str:
        raw = (tag(policy.options, TAG_PROVIDER_ADDRESS) or "").strip()
        if not _GUID.match(raw):
            raise PolicyError(
                f"tag {TAG_PROVIDER_ADDRESS}={raw!r} must be the application's object ID (a GUID; Entra "
                "admin center → App registrations → the app → Object ID), not its client ID"
            )
        return raw.lower()

    @staticmethod
    def _lifetime(policy: RotationPolicy) -> timedelta:
        raw = tag(policy.options, TAG_LIFETIME)
        if raw is None or not raw.strip():
            return policy.validity
        try:
            days = float(raw.strip())
        except ValueError:
            raise PolicyError(f"tag {TAG_LIFETIME}={raw!r} is not a number of days; set e.g. 90") from None
        if not 1 <= days <= 3650:
            raise PolicyError(f"tag {TAG_LIFETIME}={raw!r} must be between 1 and 3650 days")
        return timedelta(days=days)

    # ------------------------------------------------------------------ helpers

    def _rest(self, ctx: RotationContext) -> AzureRest:
        if ctx.settings is None:
            raise TargetRefused("The rotator needs the app's settings (MICROSOFT_GRAPH_URL).")
        return AzureRest(ctx.settings, retry_total=self.retry_total, sleep=self.sleep)

    @staticmethod
    def _marker_base(ctx: RotationContext) -> str:
        vault = ""
        if ctx.settings is not None:
            vault = (urlsplit(ctx.settings.vault_url).hostname or "").split(".")[0]
        return f"{MARKER_PREFIX}{vault}/{ctx.name}:"

    @staticmethod
    def _call(operation: str, object_id: str) -> CallContext:
        return CallContext(operation, f"application {object_id}", GRAPH_ROLE)

    async def _credentials(self, rest: AzureRest, object_id: str) -> list[dict[str, Any]]:
        reply = await rest.graph(
            "GET",
            f"/applications/{object_id}?$select=id,appId,passwordCredentials",
            self._call("read", object_id),
        )
        found = reply.body.get("passwordCredentials") if isinstance(reply.body, dict) else None
        return [c for c in found or [] if isinstance(c, dict) and c.get("keyId")]

    async def _remove(self, rest: AzureRest, object_id: str, key_id: str, why: str, name: str) -> None:
        try:
            await rest.graph(
                "POST",
                f"/applications/{object_id}/removePassword",
                self._call("remove a client secret", object_id),
                {"keyId": key_id},
            )
        except ServiceRefused as exc:
            if exc.http_status == 404:  # the application itself is gone
                raise
            # Gone already (removed by a run that crashed before recording it) is the outcome we want.
            remaining = {c["keyId"] for c in await self._credentials(rest, object_id)}
            if key_id in remaining:
                raise
        _log.info("%s: removed client secret %s of application %s (%s)", name, key_id, object_id, why)

    # ------------------------------------------------------------------ the four steps

    async def create_pending(self, ctx: RotationContext) -> PendingCredential:
        object_id = self._object_id(ctx.policy)
        await self._credentials(self._rest(ctx), object_id)  # refuses now, before anything is written
        tags: dict[str, str] = {}
        current = (tag(ctx.current.tags if ctx.current else None, TAG_CREDENTIAL_ID) or "").strip()
        if current:
            tags[TAG_REPLACED] = current
        return PendingCredential(
            intent_value(ctx.operation_id, f"a client secret for application {object_id} is added next"), tags
        )

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> PendingCredential | None:
        object_id = self._object_id(ctx.policy)
        rest = self._rest(ctx)
        credentials = await self._credentials(rest, object_id)
        marker = self._marker_base(ctx) + ctx.operation_id
        if not is_intent(pending.value):
            key_id = (pending.tags.get(TAG_CREDENTIAL_ID) or "").lower()
            if any(str(c["keyId"]).lower() == key_id for c in credentials):
                return None  # added and stored before a crash
            _log.warning(
                "%s: the stored client secret %s is gone from the application; adding another",
                ctx.name,
                key_id,
            )
        for credential in credentials:  # added by this operation but never stored: its secret is lost
            if credential.get("displayName") == marker:
                await self._remove(
                    rest, object_id, str(credential["keyId"]), "orphan of a crashed rotation", ctx.name
                )
        end = ctx.now + self._lifetime(ctx.policy)
        request = {
            "passwordCredential": {"displayName": marker, "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
        }
        call = self._call("add a client secret", object_id)
        try:
            reply = await rest.graph("POST", f"/applications/{object_id}/addPassword", call, request)
        except ServiceRefused as exc:
            if exc.service_code != "TooManyAppPasswords":
                raise
            # The app allows few secrets: once the previous secret's overlap is over it may go before the
            # new one comes (the order finish would use, one step early); then add once more.
            revoke_after = parse_time(tag(ctx.current.tags if ctx.current else None, TAG_REVOKE_AFTER))
            if revoke_after is not None and revoke_after > ctx.now:
                raise TargetRefused(
                    f"Application {object_id} allows no more client secrets ({exc.service_code}) and the "
                    f"previous secret is in its overlap until {revoke_after:%Y-%m-%dT%H:%M:%SZ}; rotate after "
                    "that, or remove an unused secret of the application by hand."
                ) from None
            current = await self._credentials(rest, object_id)
            await self._remove_superseded(ctx, rest, object_id, current, new_key_id=None)
            reply = await rest.graph("POST", f"/applications/{object_id}/addPassword", call, request)
        body = reply.body if isinstance(reply.body, dict) else {}
        secret, new_key = body.get("secretText"), body.get("keyId")
        if not isinstance(secret, str) or not secret or not isinstance(new_key, str):
            raise TargetUnavailable(
                f"Microsoft Graph answered addPassword for application {object_id} without a secret; the "
                "next run removes it by its marker and adds another."
            )
        _log.info("%s: added client secret %s to application %s", ctx.name, new_key, object_id)
        return PendingCredential(secret, {TAG_CREDENTIAL_ID: new_key})

    async def test(self, ctx: RotationContext, pending: PendingCredential) -> None:
        """A token for the app with the new secret; 'invalid secret' within the budget: not replicated yet."""
        from azure.core.exceptions import AzureError, ClientAuthenticationError
        from azure.identity.aio import ClientSecretCredential

        tenant = (tag(ctx.policy.options, TAG_TENANT) or "").strip()
        app_id = (tag(ctx.policy.options, TAG_APP_ID) or "").strip()
        options: dict[str, Any] = {}
        if ctx.settings is not None and ctx.settings.ca_bundle:
            options["connection_verify"] = ctx.settings.ca_bundle
        began = self.monotonic()
        wait = PROPAGATION_FIRST_WAIT
        attempts = 0
        while True:
            attempts += 1
            credential = ClientSecretCredential(tenant, app_id, pending.value, **options)
            try:
                await credential.get_token(TOKEN_SCOPE)
                if attempts > 1:
                    _log.info("%s: the new client secret works after %d attempts", ctx.name, attempts)
                return
            except ClientAuthenticationError as exc:
                text = str(exc)
                if not any(code in text for code in PROPAGATING):
                    codes = re.findall(r"AADSTS\d+", text)
                    raise TargetRefused(
                        f"Entra refused a token for app {app_id} in tenant {tenant} with the new secret "
                        f"({', '.join(codes) or type(exc).__name__}); check the {TAG_APP_ID} and "
                        f"{TAG_TENANT} tags."
                    ) from None
            except AzureError as exc:
                raise TargetUnavailable(
                    f"Entra could not be reached to test the new secret of app {app_id} "
                    f"({type(exc).__name__}); retry later."
                ) from None
            finally:
                await credential.close()
            if self.monotonic() - began + wait > self.propagation_budget:
                raise TargetUnavailable(
                    f"Entra does not accept the new secret of app {app_id} yet after {attempts} attempts "
                    f"({self.propagation_budget:g} s; propagation); the next run tests it again."
                )
            await self.sleep(wait)
            wait = min(wait * 2, PROPAGATION_MAX_WAIT)

    async def finish(self, ctx: RotationContext, pending: PendingCredential) -> None:
        object_id = self._object_id(ctx.policy)
        rest = self._rest(ctx)
        credentials = await self._credentials(rest, object_id)
        await self._remove_superseded(
            ctx, rest, object_id, credentials, new_key_id=pending.tags.get(TAG_CREDENTIAL_ID)
        )

    async def _remove_superseded(
        self,
        ctx: RotationContext,
        rest: AzureRest,
        object_id: str,
        credentials: list[dict[str, Any]],
        *,
        new_key_id: str | None,
    ) -> None:
        """Remove what the version in service replaced, and this secret's marker-named credentials that are
        neither in service nor the new one; never a credential someone added by hand."""
        base = self._marker_base(ctx)
        current_tags = ctx.current.tags if ctx.current else {}
        keep = {(new_key_id or "").lower()} - {""}
        current_operation = tag(current_tags, TAG_OPERATION)
        in_service = [
            c for c in credentials if current_operation and c.get("displayName") == base + current_operation
        ]
        if in_service:
            keep |= {str(c["keyId"]).lower() for c in in_service}
        else:  # the version in service was written by hand (no marker): its CredentialId says which it is
            keep.add((tag(current_tags, TAG_CREDENTIAL_ID) or "").strip().lower())
        replaced = (tag(current_tags, TAG_REPLACED) or "").strip().lower()
        for credential in credentials:
            key_id = str(credential["keyId"]).lower()
            ours = str(credential.get("displayName") or "").startswith(base)
            if key_id in keep or not (ours or key_id == replaced):
                continue
            why = "two generations old" if key_id == replaced or ours else "superseded"
            await self._remove(rest, object_id, key_id, why, ctx.name)
