"""HTTP triggers: route matching under the route prefix, auth level, the request and response converters.

A path is matched against every enabled HTTP function's template (routes.py); the most specific match
for the request's method wins. No function for the path and method is 404, as in Azure (no 405). The
function gets a func.HttpRequest from azure.functions' own converter; what it returns is written back.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions import meta
from multidict import CIMultiDict

from .context import FUNCTION, INVOCATION, FunctionHost, ManualInputError, failure_response
from .registry import HTTP_TRIGGER, RegisteredFunction

_log = logging.getLogger("localdev.host")

_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


class HttpTriggers:
    def __init__(self, host: FunctionHost) -> None:
        self.host = host

    def match(self, path: str, method: str) -> tuple[RegisteredFunction | None, dict[str, str]]:
        """The most specific enabled function whose route and method match `path` (raw, no prefix)."""
        best: tuple[tuple[int, ...], RegisteredFunction, dict[str, str]] | None = None
        for function in self.host.registry.http_functions:
            if function.disabled or function.template is None or method not in function.methods:
                continue
            values = function.template.match(path)
            if values is not None and (best is None or function.template.precedence < best[0]):
                best = (function.template.precedence, function, values)
        return (best[1], best[2]) if best else (None, {})

    def path_under_prefix(self, request: web.Request) -> str | None:
        """The raw (still percent-encoded) path after the route prefix, or None if it is not under it."""
        path = request.rel_url.raw_path.lstrip("/")
        prefix = self.host.route_prefix.lower()
        if not prefix:
            return path
        lowered = path.lower()
        if lowered == prefix:
            return ""
        if lowered.startswith(prefix + "/"):
            return path[len(prefix) + 1 :]
        return None

    async def serve(self, request: web.Request) -> web.StreamResponse:
        path = self.path_under_prefix(request)
        function, route_params = self.match(path, request.method) if path is not None else (None, {})
        if function is None:
            return web.Response(status=404)
        request[FUNCTION] = function.name
        if not self.host.authorized(request, function.auth_level or "function"):
            return web.Response(status=401)
        body = await self.host.read_body(request, self.host.body_limit)
        invocation_id = str(uuid.uuid4())
        request[INVOCATION] = invocation_id

        def build() -> Any:
            return http_request(request, route_params, body)

        result = await self.host.invoker.invoke(function, build, invocation_id)
        if not result.succeeded:
            return failure_response(result)
        try:
            return http_response(result.value)
        except (TypeError, ValueError) as exc:
            _log.error(
                "function returned an unusable HTTP result: function=%s invocation=%s type=%s (%s)",
                function.name,
                invocation_id,
                type(result.value).__name__,
                type(exc).__name__,
            )
            return failure_response(result)

    def describe(self, function: RegisteredFunction, base_url: str) -> dict[str, Any]:
        prefix = f"/{self.host.route_prefix}" if self.host.route_prefix else ""
        return {
            "route": function.route,
            "methods": list(function.methods),
            "authLevel": function.auth_level,
            "invoke_url_template": f"{base_url}{prefix}/{function.route}",
        }

    def manual_input(self, function: RegisteredFunction, value: Any) -> Any:
        raise ManualInputError(f"{function.name} is an HTTP function; call its route instead.")

    async def manual_run(self, function: RegisteredFunction, value: Any, invocation_id: str) -> None:
        raise AssertionError("HTTP functions are not run through the admin API")  # manual_input refuses


def http_request(request: web.Request, route_params: dict[str, str], body: bytes) -> func.HttpRequest:
    """func.HttpRequest through azure.functions' converter, from the fields the host sends the worker."""
    joined_headers: dict[str, str] = {}
    for name in request.headers:
        key = name.lower()
        if key not in joined_headers:
            joined_headers[key] = ",".join(request.headers.getall(name))
    query: dict[str, str] = {}
    for name in request.query:
        if name not in query:
            query[name] = ",".join(request.query.getall(name))

    def string(value: str) -> meta.Datum:
        return meta.Datum(type="string", value=value)

    datum = meta.Datum(
        type="http",
        value={
            "method": string(request.method),
            "url": string(str(request.url)),
            "headers": {k: string(v) for k, v in joined_headers.items()},
            "query": {k: string(v) for k, v in query.items()},
            "params": {k: string(v) for k, v in route_params.items()},
            "body": meta.Datum(type="bytes", value=body),
        },
    )
    return meta.get_binding_registry().get(HTTP_TRIGGER).decode(datum, trigger_metadata={})


def http_response(value: Any) -> web.Response:
    """Write back what the function returned: HttpResponse (all headers, multi-value too) or str."""
    if value is None:
        return web.Response(status=204)
    if isinstance(value, str):
        return web.Response(
            status=200, body=value.encode("utf-8"), headers={"Content-Type": "text/plain; charset=utf-8"}
        )
    if not isinstance(value, func.HttpResponse):
        raise TypeError(f"HTTP functions return func.HttpResponse or str, not {type(value).__name__}")
    headers: CIMultiDict[str] = CIMultiDict()
    for name, header_value in value.headers.items():
        if name.lower() not in _HOP_BY_HOP:
            headers.add(name, header_value)
    if "Content-Type" not in headers:
        mimetype = value.mimetype
        headers["Content-Type"] = (
            f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
        )
    return web.Response(status=int(value.status_code), body=value.get_body(), headers=headers)
