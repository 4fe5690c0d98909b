"""What every request handler shares: the app's functions, keys, invoker and timers, auth and body reading.

`FunctionHost` holds no routes of its own: each trigger kind's handler (http_trigger, timer_trigger,
eventgrid_trigger) and the admin API take it, and app.py mounts them on aiohttp's router.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from .invocation import InvocationResult, Invoker
from .keys import KEY_HEADER, KEY_QUERY, HostKeys
from .registry import FunctionRegistry, RegisteredFunction
from .timers import TimerService

DEFAULT_BODY_LIMIT = 104_857_600  # Azure's default request body limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT)
ADMIN_BODY_LIMIT = 1_048_576  # {"input": ...} for a manual run
EVENTGRID_BODY_LIMIT = 1_048_576  # Event Grid delivers at most 1 MB per batch
AUTH_FAILURE = web.RequestKey("auth_failure", str)
FUNCTION = web.RequestKey("function", str)
INVOCATION = web.RequestKey("invocation_id", str)


class ManualInputError(ValueError):
    """The admin API's `input` does not suit the function's trigger; the message says what to send."""


class TriggerKind(Protocol):
    """One trigger kind's handler, as the admin API uses it."""

    def describe(self, function: RegisteredFunction, base_url: str) -> dict[str, Any]:
        """The trigger's facts for GET /admin/functions."""

    def manual_input(self, function: RegisteredFunction, value: Any) -> Any:
        """The trigger value for POST /admin/functions/<name>; ManualInputError if unusable."""

    async def manual_run(self, function: RegisteredFunction, value: Any, invocation_id: str) -> None:
        """Run the function once for the admin API (in the background)."""


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
            raise _too_large(limit, request.content_length)
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
            raise _too_large(limit, len(body))
        return body

    def spawn(self, work: Awaitable[Any]) -> None:
        """Run `work` in the background; stop() waits for it (with a grace period)."""
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def _too_large(limit: int, size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=size,
        text=f"The body is larger than this endpoint's limit of {limit} bytes.",
    )


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
