"""The managed-identity token endpoint, speaking App Service's protocol (IDENTITY_ENDPOINT + IDENTITY_HEADER).

`ManagedIdentityCredential` (sync via MSAL, aio via azure-identity) calls
`GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...[&client_id|object_id|mi_res_id|resource_id]`
with `X-IDENTITY-HEADER`. Plain HTTP on loopback, as on App Service.
"""

from __future__ import annotations

import hmac
import json

from aiohttp import web

from .auth import TokenAuthority

TOKEN_PATH = "/msi/token"
API_VERSION = "2019-08-01"


def _refuse(status: int, message: str) -> web.Response:
    # App Service answers token errors as {"statusCode": n, "message": "..."}
    return web.Response(
        status=status,
        body=json.dumps({"statusCode": status, "message": message}),
        content_type="application/json",
    )


class IdentityEndpoint:
    """Issues tokens for configured identities; the vault verifies exactly these tokens."""

    def __init__(self, authority: TokenAuthority, header_secret: str, token_lifetime: float) -> None:
        self.authority = authority
        self.header_secret = header_secret
        self.token_lifetime = token_lifetime
        self.issued = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(TOKEN_PATH, self.token)
        return app

    async def token(self, request: web.Request) -> web.Response:
        presented = request.headers.get("X-IDENTITY-HEADER", "")
        if not hmac.compare_digest(presented.encode(), self.header_secret.encode()):
            return _refuse(
                401,
                "The X-IDENTITY-HEADER header is missing or wrong. Use the IDENTITY_HEADER value the local "
                "Key Vault printed (also in <state-dir>/vault.env).",
            )
        query = request.query
        if query.get("api-version") != API_VERSION:
            return _refuse(400, f"Unsupported api-version {query.get('api-version')!r}; use {API_VERSION}.")
        resource = query.get("resource", "").strip()
        if not resource:
            return _refuse(400, "The resource parameter is required, e.g. resource=https://vault.azure.net.")
        identity = self.authority.find(
            client_id=query.get("client_id"),
            object_id=query.get("object_id") or query.get("principal_id"),
            resource_id=query.get("mi_res_id") or query.get("resource_id"),
        )
        if identity is None:
            configured = ", ".join(f"{i.name} (client_id {i.client_id})" for i in self.authority.identities)
            return _refuse(
                400, f"Unable to load the proper Managed Identity. Configured identities: {configured}."
            )
        token, expires_on = self.authority.issue(identity, resource, self.token_lifetime)
        self.issued += 1
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            }
        )
