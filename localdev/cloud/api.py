"""The wire: ARM, Microsoft Graph, Entra's token endpoint and a Shared Key-checking blob endpoint on one
HTTPS listener, mapping requests to the store and the store's typed errors to each service's exact body.

Paths (one host, each service's own path shape):
  ARM    /subscriptions/{s}/resourceGroups/{rg}/providers/{type path}[/{action}]?api-version=...
         /subscriptions/{s}/providers/Microsoft.DocumentDB/locations/{l}/operation(sStatus|Results)/{id}
  Graph  /v1.0/applications[/{id} | (appId='{appId}')][/addPassword | /removePassword]
  Entra  /{tenant}/oauth2/v2.0/token                   (client-credentials grant with a client secret)
  Blob   /blob/{account}/?restype=service&comp=properties   (Shared Key signature checked against both keys)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from .auth import CloudAuth
from .errors import CloudError, TokenError
from .store import COSMOS, REDIS, RULE, STORAGE, CloudStore, Resource, ResourcePath, parse_resource_path

_OPERATION = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.DocumentDB/locations/[^/]+/"
    r"(operationsStatus|operationResults)/([0-9a-f]+)$",
    re.IGNORECASE,
)
_APPLICATION = re.compile(
    r"^/v1\.0/applications(?:/(?P<id>[0-9a-fA-F-]{36})|\(appId='(?P<app_id>[0-9a-fA-F-]{36})'\))?"
    r"(?:/(?P<action>addPassword|removePassword))?/?$"
)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode() if body is not None else b"",
        content_type="application/json" if body is not None else None,
        headers=headers,
    )


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise CloudError(
            400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
        ) from None
    if not isinstance(parsed, dict):
        raise CloudError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return parsed


class CloudApi:
    def __init__(self, store: CloudStore, auth: CloudAuth) -> None:
        self.store = store
        self.auth = auth
        self.base_url = ""  # set once the listener is bound

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/subscriptions/{tail:.*}", self.arm)
        app.router.add_route("*", "/v1.0/{tail:.*}", self.graph)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        app.router.add_route("*", "/blob/{account}/{tail:.*}", self.blob)
        app.router.add_route("*", "/blob/{account}", self.blob)

    # ------------------------------------------------------------------ ARM

    async def arm(self, request: web.Request) -> web.Response:
        headers = {"x-ms-request-id": str(uuid.uuid4())}
        try:
            if not request.query.get("api-version"):
                raise CloudError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            principal = self.auth.arm(request.headers.get("Authorization", ""))
            found = _OPERATION.match(request.path)
            if found:
                return self._operation(found.group(1), found.group(2), headers)
            path = parse_resource_path(request.path)
            kind, _ = path.kind()
            operation = self._arm_operation(request.method, path, kind)
            self.store.check_fault("arm", operation)
            self.store.authorize(principal, path, operation)
            self.store.record("arm", operation, path.resource_id)
            if operation == "write":
                # 200 whether created or updated: every one of these types' specs allows it (storage: 200 or
                # 202 only), and the SDKs' create pollers take a 200 with the resource as done.
                resource, _created = self.store.put(path, await _body(request), principal)
                return _json(200, self._resource_body(resource), headers)
            if operation == "read":
                return _json(200, self._resource_body(self.store.get(path)), headers)
            if operation == "listKeys":
                return _json(200, self._keys_body(self.store.keys_of(path)), headers)
            operation_id = self.store.regenerate(path, await _body(request))
            resource = self.store.keys_of(path)
            if operation_id is not None:  # Cosmos: a long-running operation, no body
                status_url = (
                    f"{self.base_url}/subscriptions/{path.subscription}/providers/Microsoft.DocumentDB/locations/"
                    f"{resource.location}/operationsStatus/{operation_id}?api-version={request.query['api-version']}"
                )
                return _json(
                    202,
                    None,
                    {
                        **headers,
                        "Azure-AsyncOperation": status_url,
                        "Location": status_url.replace("/operationsStatus/", "/operationResults/"),
                        "Retry-After": "0",
                    },
                )
            return _json(200, self._keys_body(resource), headers)
        except CloudError as exc:
            return _json(exc.status, exc.arm_body(), {**headers, **exc.headers})

    @staticmethod
    def _arm_operation(method: str, path: ResourcePath, kind: str) -> str:
        from .store import KEY_ACTIONS

        if path.action is None:
            if method == "GET":
                return "read"
            if method == "PUT":
                return "write"
            raise CloudError(
                405, "MethodNotAllowed", f"The emulator serves GET and PUT on resources, not {method}."
            )
        for action in KEY_ACTIONS[kind]:
            if action.lower() == path.action.lower() and method == "POST":
                return action
        raise CloudError(
            404,
            "NoRegisteredProviderFound",  # emulator: the operations it serves are listed
            f"The operation '{method} {path.action}' is not served here for '{path.resource_id}'; "
            f"it serves POST {' and '.join(KEY_ACTIONS[kind]) or 'nothing'}.",
        )

    def _operation(self, kind: str, operation_id: str, headers: dict[str, str]) -> web.Response:
        self.store.check_fault("arm", "poll")
        status = self.store.poll(operation_id)
        if kind.lower() == "operationsstatus":
            return _json(200, {"status": status, "name": operation_id}, {**headers, "Retry-After": "0"})
        return _json(204 if status == "Succeeded" else 202, None, {**headers, "Retry-After": "0"})

    def _resource_body(self, resource: Resource) -> dict[str, Any]:
        path = resource.path
        _, canonical = path.kind()
        body: dict[str, Any] = {
            "id": path.resource_id,
            "name": path.names[-1],
            "type": canonical,
            "location": resource.location,
        }
        properties: dict[str, Any] = {"provisioningState": "Succeeded"}
        name = path.names[-1]
        if resource.kind == STORAGE:
            body["sku"] = resource.body.get("sku") or {"name": "Standard_LRS", "tier": "Standard"}
            body["kind"] = resource.body.get("kind") or "StorageV2"
            properties["primaryEndpoints"] = {"blob": f"{self.base_url}/blob/{name}/"}
            properties["keyCreationTime"] = {
                slot: moment.strftime("%Y-%m-%dT%H:%M:%S.%f0Z") for slot, moment in resource.key_times.items()
            }
        elif resource.kind == COSMOS:
            properties["documentEndpoint"] = f"https://{name}.documents.azure.com:443/"
        elif resource.kind == REDIS:
            properties.update({"hostName": f"{name}.redis.cache.windows.net", "port": 6379, "sslPort": 6380})
        elif resource.kind == RULE:
            properties["rights"] = (resource.body.get("properties") or {}).get("rights") or ["Listen", "Send"]
        body["properties"] = properties
        return body

    @staticmethod
    def _keys_body(resource: Resource) -> dict[str, Any]:
        keys = resource.keys
        if resource.kind == STORAGE:
            return {
                "keys": [
                    {
                        "keyName": slot,
                        "value": keys[slot],
                        "permissions": "FULL",
                        "creationTime": resource.key_times[slot].strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
                    }
                    for slot in ("key1", "key2")
                ]
            }
        if resource.kind == COSMOS:
            return {f"{slot}MasterKey": keys[slot] for slot in keys}
        if resource.kind == REDIS:
            return {"primaryKey": keys["primary"], "secondaryKey": keys["secondary"]}
        path = resource.path
        rule = path.names[-1]
        namespace = path.names[0]
        suffix = "servicebus.windows.net"
        entity = f";EntityPath={path.names[1]}" if len(path.names) == 3 else ""

        def connection(key: str) -> str:
            return f"Endpoint=sb://{namespace}.{suffix}/;SharedAccessKeyName={rule};SharedAccessKey={key}{entity}"

        return {
            "primaryConnectionString": connection(keys["primary"]),
            "secondaryConnectionString": connection(keys["secondary"]),
            "primaryKey": keys["primary"],
            "secondaryKey": keys["secondary"],
            "keyName": rule,
        }

    # ------------------------------------------------------------------ Graph

    async def graph(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        headers = {
            "request-id": request_id,
            "client-request-id": request.headers.get("client-request-id", request_id),
        }
        try:
            principal = self.auth.graph(request.headers.get("Authorization", ""))
            found = _APPLICATION.match(request.path)
            if found is None:
                raise CloudError(
                    400, "BadRequest", f"Resource not found for the segment '{request.path.split('/')[2]}'."
                )
            object_id, app_id, action = found.group("id"), found.group("app_id"), found.group("action")
            method = request.method
            if object_id is None and app_id is None:
                if method != "POST" or action:
                    raise CloudError(
                        405, "Request_BadRequest", "Only POST /v1.0/applications is served here."
                    )
                self.store.check_fault("graph", "createApplication")
                body = await _body(request)
                app = self.store.create_app(principal, str(body.get("displayName") or "app"))
                self.store.record("graph", "createApplication", app.object_id)
                return _json(201, app.body(), headers)
            operation = action or ("getApplication" if method == "GET" else "")
            if not operation or (action and method != "POST"):
                raise CloudError(
                    405, "Request_BadRequest", f"{method} is not served on this application path."
                )
            self.store.check_fault("graph", operation)
            target = object_id or app_id or ""
            if operation == "getApplication":
                app = self.store.get_app(principal, object_id, app_id)
                self.store.record("graph", operation, app.object_id)
                return _json(200, app.body(), headers)
            body = await _body(request)
            if operation == "addPassword":
                credential = self.store.add_password(principal, object_id, app_id, body)
                self.store.record("graph", operation, target)
                result = {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential",
                    **credential.body(with_secret=True),
                }
                return _json(200, result, headers)
            key_id = body.get("keyId")
            if not isinstance(key_id, str):
                raise CloudError(400, "Request_BadRequest", "The keyId property is required.")
            self.store.remove_password(principal, object_id, app_id, key_id)
            self.store.record("graph", operation, target)
            return _json(204, None, headers)
        except CloudError as exc:
            return _json(exc.status, exc.graph_body(), {**headers, **exc.headers})

    # ------------------------------------------------------------------ Entra token endpoint

    async def token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        try:
            self.store.check_fault("token", "token")
        except CloudError as exc:
            return _json(exc.status, {"error": exc.code, "error_description": exc.message}, exc.headers)
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        try:
            if form.get("grant_type") != "client_credentials":
                raise TokenError(
                    400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
                )
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            if not secret:
                raise TokenError(
                    401,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: "
                    "'client_assertion' or 'client_secret'.",
                )
            app = self.store.client_credentials(tenant, client_id, secret)
            self.store.record("token", "token", app.object_id)
            token, expires_on = self.auth.app_token(app, form.get("scope", ""))
        except TokenError as exc:
            return _json(exc.status, exc.body())
        now = int(datetime.now(UTC).timestamp())
        return _json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": expires_on - now,
                "ext_expires_in": expires_on - now,
                "access_token": token,
            },
        )

    # ------------------------------------------------------------------ blob data plane (Shared Key)

    async def blob(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        request_id = str(uuid.uuid4())
        headers = {"x-ms-request-id": request_id, "x-ms-version": request.headers.get("x-ms-version", "")}
        try:
            self.store.check_fault("blob", "blob")
        except CloudError as exc:
            return web.Response(status=exc.status, headers={**headers, **exc.headers})
        resource = self.store.storage_account(account)
        if resource is None:
            return self._blob_error(
                404, "ResourceNotFound", "The specified resource does not exist.", headers
            )
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        name, _, signature = credential.partition(":")
        if scheme != "SharedKey" or name != account or not signature:
            return self._blob_error(
                403,
                "NoAuthenticationInformation",
                "Server failed to authenticate the request. Please refer "
                "to the information in the www-authenticate header.",
                headers,
            )
        string_to_sign = self._string_to_sign(request, account)
        with self.store.lock:
            keys = list(resource.keys.values())
        for key in keys:
            expected = base64.b64encode(
                hmac.new(base64.b64decode(key), string_to_sign.encode(), hashlib.sha256).digest()
            ).decode()
            if hmac.compare_digest(expected, signature):
                self.store.record("blob", "authenticated", resource.path.resource_id)
                query = {k.lower(): v.lower() for k, v in request.query.items()}
                if query.get("restype") == "service" and query.get("comp") == "properties":
                    xml = (
                        '<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties>'
                        "<DefaultServiceVersion>2021-08-06</DefaultServiceVersion></StorageServiceProperties>"
                    )
                    return web.Response(
                        status=200, body=xml.encode(), content_type="application/xml", headers=headers
                    )
                return web.Response(status=200, headers=headers)
        self.store.record("blob", "rejected", resource.path.resource_id)
        return self._blob_error(
            403,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization header is "
            "formed correctly including the signature.",
            headers,
        )

    @staticmethod
    def _blob_error(status: int, code: str, message: str, headers: dict[str, str]) -> web.Response:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        xml = (
            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}\n'
            f"RequestId:{headers['x-ms-request-id']}\nTime:{stamp}</Message></Error>"
        )
        return web.Response(
            status=status,
            body=xml.encode(),
            content_type="application/xml",
            headers={**headers, "x-ms-error-code": code},
        )

    @staticmethod
    def _string_to_sign(request: web.Request, account: str) -> str:
        """Shared Key for Blob: verb, the standard headers, canonical x-ms-* headers, then the resource."""
        h = request.headers
        length = h.get("Content-Length", "")
        standard = [
            h.get("Content-Encoding", ""),
            h.get("Content-Language", ""),
            "" if length == "0" else length,
            h.get("Content-MD5", ""),
            h.get("Content-Type", ""),
            h.get("Date", ""),
            h.get("If-Modified-Since", ""),
            h.get("If-Match", ""),
            h.get("If-None-Match", ""),
            h.get("If-Unmodified-Since", ""),
            h.get("Range", ""),
        ]
        canonical_headers = "".join(
            f"{name}:{value.strip()}\n"
            for name, value in sorted((k.lower(), v) for k, v in h.items() if k.lower().startswith("x-ms-"))
        )
        raw_path = request.raw_path.split("?", 1)[0]
        resource = f"/{account}{raw_path}"
        query = sorted(
            (k.lower(), unquote(v)) for k, v in parse_qsl(request.query_string, keep_blank_values=True)
        )
        resource += "".join(f"\n{k}:{v}" for k, v in query)
        return request.method + "\n" + "\n".join(standard) + "\n" + canonical_headers + resource
