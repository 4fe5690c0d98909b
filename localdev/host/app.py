"""The aiohttp application: one handler per trigger kind plus the admin API, on aiohttp's router.

Core Tools' paths, matched case-insensitively as ASP.NET routing does:
  /admin/host/status, /admin/functions[/{name}]   AdminApi (master key)
  /runtime/webhooks/eventgrid                     EventGridTriggers.webhook (system or master key)
  /<routePrefix>/...                              HttpTriggers.serve (each function's auth level)
Timer functions have no route of their own: TimerTriggers runs them for the admin API. Every request gets
one structured log line; a function's exception becomes a 500 that names the invocation id and nothing else.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .admin import AdminApi
from .context import AUTH_FAILURE, FUNCTION, INVOCATION, FunctionHost
from .eventgrid_trigger import WEBHOOK_PATH, EventGridTriggers
from .http_trigger import HttpTriggers
from .queues import QueueTriggers
from .registry import EVENT_GRID_TRIGGER, HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER
from .timer_trigger import TimerTriggers

__all__ = ["FunctionHost", "create_app", "request_log"]

_request_log = logging.getLogger("localdev.host.requests")

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


def _path(*segments: str) -> str:
    """A case-insensitive aiohttp path for literal segments (`{name}` segments pass through)."""
    parts = []
    for index, segment in enumerate(segments):
        if segment.startswith("{"):
            parts.append(segment)
        else:
            parts.append(f"{{s{index}:(?i:{re.escape(segment)})}}")
    return "/" + "/".join(parts) + "{slash:/?}"


def create_app(host: FunctionHost) -> web.Application:
    """The aiohttp application serving `host`: each handler mounted on its own routes."""
    http = HttpTriggers(host)
    eventgrid = EventGridTriggers(host)
    admin = AdminApi(
        host,
        {
            HTTP_TRIGGER: http,
            TIMER_TRIGGER: TimerTriggers(host),
            EVENT_GRID_TRIGGER: eventgrid,
            QUEUE_TRIGGER: QueueTriggers(host),
        },
    )
    app = web.Application(middlewares=[request_log], client_max_size=host.body_limit)
    router = app.router
    router.add_route("*", _path(*WEBHOOK_PATH.split("/")), eventgrid.webhook)
    router.add_route("GET", _path("admin", "host", "status"), admin.status)
    router.add_route("GET", _path("admin", "functions"), admin.list_functions)
    one = router.add_resource(_path("admin", "functions", "{name}"))
    one.add_route("GET", admin.get_function)
    one.add_route("POST", admin.invoke)
    router.add_route("*", "/{tail:.*}", http.serve)  # the route prefix (or none) is HttpTriggers' to read
    return app
