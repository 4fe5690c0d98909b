"""The aiohttp application: HTTP triggers, admin API and the Event Grid webhook, with Core Tools' paths.

One catch-all route dispatches on the path (case-insensitively, as ASP.NET routing does):
`admin/...` (master key), `runtime/webhooks/eventgrid` (system or master key), and everything under the
route prefix to the HTTP functions (function/admin/anonymous auth levels). A function's exception
becomes a 500 that names the invocation id and nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions import meta
from multidict import CIMultiDict

from .invocation import InvocationResult, Invoker
from .keys import KEY_HEADER, KEY_QUERY, HostKeys
from .registry import EVENT_GRID_TRIGGER, HTTP_TRIGGER, TIMER_TRIGGER, FunctionRegistry, RegisteredFunction
from .timers import TimerService, timer_request

_log = logging.getLogger("localdev.host")
_request_log = logging.getLogger("localdev.host.requests")

_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}
_EVENTGRID_PATH = "runtime/webhooks/eventgrid"
DEFAULT_BODY_LIMIT = 104_857_600  # Azure's default request body limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT)
ADMIN_BODY_LIMIT = 1_048_576  # {"input": ...} for a manual run
EVENTGRID_BODY_LIMIT = 1_048_576  # Event Grid delivers at most 1 MB per batch
AUTH_FAILURE = web.RequestKey("auth_failure", str)
FUNCTION = web.RequestKey("function", str)
INVOCATION = web.RequestKey("invocation_id", str)


@dataclass
class FunctionHost:
    """Everything a request handler needs; built by `localdev.host.server`."""

    registry: FunctionRegistry
    keys: HostKeys
    invoker: Invoker
    timers: TimerService
    route_prefix: str = "api"
    auth_enabled: bool = True
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    body_limit: int = DEFAULT_BODY_LIMIT  # FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, as in Azure
    body_timeout: float = 30.0  # seconds to receive a whole body once the headers are in

    # -- auth ---------------------------------------------------------------------------------------
    def authorized(self, request: web.Request, level: str) -> bool:
        """Whether the request's key satisfies `level`; a refusal is logged as "no key" or "wrong key"."""
        if not self.auth_enabled or level == "anonymous":
            return True
        presented = request.headers.get(KEY_HEADER) or request.query.get(KEY_QUERY)
        if self.keys.allows(level, presented):
            return True
        request[AUTH_FAILURE] = "no key" if not presented else f"wrong key for {level}"
        return False

    async def read_body(self, request: web.Request, limit: int) -> bytes:
        """The body, refused from Content-Length before it is read (413) and within body_timeout (408)."""
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit,
                actual_size=request.content_length,
                text=f"The body is larger than this endpoint's limit of {limit} bytes.",
            )
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.content.read(limit + 1)
                while len(body) <= limit and not request.content.at_eof():
                    chunk = await request.content.read(limit + 1 - len(body))
                    if not chunk:
                        break
                    body += chunk
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text=f"The body was not received within {self.body_timeout:g} s.",
                headers={"Connection": "close"},
            ) from None
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit,
                actual_size=len(body),
                text=f"The body is larger than this endpoint's limit of {limit} bytes.",
            )
        return body

    # -- HTTP triggers ------------------------------------------------------------------------------
    def match(self, path: str, method: str) -> tuple[RegisteredFunction | None, dict[str, str], set[str]]:
        """The most specific function whose route and method match; else the methods the path allows."""
        best: tuple[tuple[int, ...], RegisteredFunction, dict[str, str]] | None = None
        allowed: set[str] = set()
        for function in self.registry.http_functions:
            if function.disabled or function.template is None:
                continue
            values = function.template.match(path)
            if values is None:
                continue
            allowed.update(function.methods)
            if method in function.methods and (best is None or function.template.precedence < best[0]):
                best = (function.template.precedence, function, values)
        if best is None:
            return None, {}, allowed
        return best[1], best[2], allowed

    async def serve_http(self, request: web.Request, path: str) -> web.StreamResponse:
        function, route_params, _allowed = self.match(path, request.method)
        if function is None:
            # Azure answers 404 when the route matches but not the method (no 405, no Allow).
            return web.Response(status=404)
        request[FUNCTION] = function.name
        if not self.authorized(request, function.auth_level or "function"):
            return web.Response(status=401)
        body = await self.read_body(request, self.body_limit)
        invocation_id = str(uuid.uuid4())
        request[INVOCATION] = invocation_id

        def build() -> Any:
            return http_request(request, route_params, body)

        result = await self.invoker.invoke(function, build, invocation_id)
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

    # -- admin API ----------------------------------------------------------------------------------
    def describe(self, function: RegisteredFunction, base_url: str) -> dict[str, Any]:
        """One entry of GET /admin/functions (Azure's fields plus the flattened trigger facts)."""
        entry: dict[str, Any] = {
            "name": function.name,
            "trigger": function.trigger_type,
            "isDisabled": function.disabled,
            "config": function.function_json,
        }
        if function.is_http:
            prefix = f"/{self.route_prefix}" if self.route_prefix else ""
            entry.update(
                route=function.route,
                methods=list(function.methods),
                authLevel=function.auth_level,
                invoke_url_template=f"{base_url}{prefix}/{function.route}",
            )
        elif function.trigger_type == TIMER_TRIGGER:
            entry.update(
                schedule=function.schedule,
                resolvedSchedule=function.extra.get("resolved_schedule"),
                runOnStartup=function.run_on_startup,
                retryPolicy=function.retry_policy,
            )
            upcoming = self.timers.next_occurrence(function.name)
            entry["nextRun"] = upcoming.isoformat() if upcoming else None
            if function.name in self.timers.errors:
                entry["error"] = self.timers.errors[function.name]
        elif function.trigger_type == EVENT_GRID_TRIGGER:
            entry["webhook"] = f"{base_url}/{_EVENTGRID_PATH}?functionName={function.name}"
        return entry

    async def serve_admin(self, request: web.Request, path: str) -> web.StreamResponse:
        if not self.authorized(request, "admin"):
            return web.Response(status=401)
        parts = path.split("/")
        base_url = f"{request.scheme}://{request.host}"
        if parts[1:] == ["host", "status"] and request.method == "GET":
            return web.json_response(
                {
                    "state": "Running",
                    "processUptime": int(time.monotonic() * 1000),
                    "version": "localdev",
                    "functions": len(self.registry.functions),
                }
            )
        if parts[1:2] != ["functions"]:
            return web.Response(status=404)
        if len(parts) == 2 and request.method == "GET":
            return web.json_response([self.describe(f, base_url) for f in self.registry.functions.values()])
        if len(parts) != 3:
            return web.Response(status=404)
        function = self.registry.get(parts[2])
        if request.method == "GET":
            return (
                web.json_response(self.describe(function, base_url)) if function else web.Response(status=404)
            )
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "GET, POST"})
        if function is None:
            return web.Response(status=404)
        try:
            document = json.loads(await self.read_body(request, ADMIN_BODY_LIMIT) or b"null")
        except (ValueError, RecursionError):
            return error_json(400, 'The request body is not valid JSON. Send {"input": "..."}.')
        if not isinstance(document, dict):
            return error_json(400, 'Send a JSON object: {"input": "<string, number or boolean>"}.')
        if function.is_http:
            return error_json(400, f"{function.name} is an HTTP function; call its route instead.")
        value = document.get("input")
        if function.trigger_type == EVENT_GRID_TRIGGER:
            try:
                event = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                event = None
            if not isinstance(event, dict):
                return error_json(
                    400,
                    "For an Event Grid function, send one event as input: a JSON object "
                    "or that object as a JSON string.",
                )
            value = event
        invocation_id = str(uuid.uuid4())
        request[INVOCATION] = invocation_id
        request[FUNCTION] = function.name
        self.spawn(self.run_admin(function, value, invocation_id))
        return web.Response(status=202)

    async def run_admin(self, function: RegisteredFunction, value: Any, invocation_id: str) -> None:
        """A manual run: timers under their singleton lock with their retry policy; Event Grid once."""
        if function.trigger_type == TIMER_TRIGGER:
            async with self.timers.lock_for(function.name):
                await self.invoker.invoke(
                    function, lambda: timer_request(False, None), invocation_id, retry=True
                )
            return
        await self.invoker.invoke(function, lambda: event_grid_event(value), invocation_id)

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- Event Grid webhook -------------------------------------------------------------------------
    async def serve_eventgrid(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":  # CloudEvents abuse-protection handshake
            origin = request.headers.get("WebHook-Request-Origin")
            if not origin:
                return web.Response(status=400)
            return web.Response(
                status=200, headers={"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"}
            )
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST, OPTIONS"})
        if not self.authorized(request, "system"):
            return web.Response(status=401)
        name = request.query.get("functionName", "")
        function = self.registry.get(name) if name else None
        if function is None or function.disabled or function.trigger_type != EVENT_GRID_TRIGGER:
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        request[FUNCTION] = function.name
        try:
            document = json.loads(await self.read_body(request, EVENTGRID_BODY_LIMIT))
        except (ValueError, RecursionError):
            return error_json(
                400, "The body is not valid JSON: send an array of Event Grid events or CloudEvents."
            )
        events = document if isinstance(document, list) else [document]
        kind = request.headers.get("aeg-event-type", "")
        if kind.lower() == "subscriptionvalidation":
            first = events[0] if events and isinstance(events[0], dict) else {}
            code = (
                (first.get("data") or {}).get("validationCode")
                if isinstance(first.get("data"), dict)
                else None
            )
            if not code:
                return error_json(400, "SubscriptionValidation without data.validationCode.")
            return web.json_response({"validationResponse": code})
        if kind.lower() == "unsubscribe":
            return web.Response(status=202)
        if kind.lower() != "notification":
            return error_json(
                400, "Set the aeg-event-type header to Notification (or SubscriptionValidation)."
            )
        if not all(isinstance(e, dict) for e in events):
            return error_json(400, "Every event must be a JSON object.")
        ids = [str(uuid.uuid4()) for _ in events]
        request[INVOCATION] = ",".join(ids)
        # One invocation per event, all at once, as the extension's single dispatch does.
        results = await asyncio.gather(
            *(
                self.invoker.invoke(function, functools.partial(event_grid_event, event), invocation_id)
                for event, invocation_id in zip(events, ids, strict=True)
            )
        )
        failed = [r for r in results if not r.succeeded]
        if failed:
            return failure_response(failed[0], extra=[r.invocation_id for r in failed])
        return web.Response(status=202)


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
    string = lambda v: meta.Datum(type="string", value=v)  # noqa: E731
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


def event_grid_event(event: dict[str, Any]) -> Any:
    """EventGridEvent or CloudEvent, decoded by azure.functions' converter as the worker does."""
    converter = meta.get_binding_registry().get(EVENT_GRID_TRIGGER)
    return converter.decode(meta.Datum(type="json", value=json.dumps(event)), trigger_metadata={})


def error_json(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def failure_response(result: InvocationResult, extra: list[str] | None = None) -> web.Response:
    """500 that says an error occurred and where to look; never the exception's text."""
    body: dict[str, Any] = {
        "error": f"An error occurred while executing function '{result.function_name}'. "
        "See the host log for this invocation id.",
        "invocationId": result.invocation_id,
    }
    if extra and len(extra) > 1:
        body["failedInvocationIds"] = extra
    return web.json_response(body, status=500)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One structured line per request: method, path (never the query: it may carry `code`), status, time."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except (web.HTTPRequestEntityTooLarge, web.HTTPRequestTimeout) as exc:
        # The rest of the body is never read: answer and close the connection instead of draining it.
        status = exc.status
        refused = web.json_response({"error": exc.text or exc.reason}, status=exc.status)
        refused.force_close()
        return refused
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        _request_log.info(
            "request: method=%s path=%s status=%d duration_ms=%.1f function=%s invocation=%s%s",
            request.method,
            request.path,
            status,
            (time.perf_counter() - started) * 1000,
            request.get(FUNCTION, "-"),
            request.get(INVOCATION, "-"),
            f" auth={request[AUTH_FAILURE]!r}" if AUTH_FAILURE in request else "",
        )


def create_app(host: FunctionHost) -> web.Application:
    """The aiohttp application serving `host` (one catch-all route; dispatch below)."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path.lstrip("/")
        lowered = path.lower()
        if lowered == _EVENTGRID_PATH or lowered == _EVENTGRID_PATH + "/":
            return await host.serve_eventgrid(request)
        if lowered.startswith("admin/"):
            return await host.serve_admin(request, path.rstrip("/"))
        prefix = host.route_prefix.lower()
        if prefix:
            if lowered == prefix:
                path = ""
            elif lowered.startswith(prefix + "/"):
                path = path[len(prefix) + 1 :]
            else:
                return web.Response(status=404)
        return await host.serve_http(request, path)

    app = web.Application(middlewares=[request_log], client_max_size=host.body_limit)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
