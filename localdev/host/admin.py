"""The admin API (master key): host status, the functions with their trigger facts, manual runs.

As the Functions host's AdminController: `GET admin/host/status`, `GET admin/functions`,
`GET admin/functions/{name}`, and `POST admin/functions/{name}` with `{"input": ...}` → 202 and the run
in the background (400 for a null body or an input the trigger cannot take, 404 for an unknown name).
Each trigger kind's handler describes its functions and runs them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .context import (
    ADMIN_BODY_LIMIT,
    FUNCTION,
    INVOCATION,
    FunctionHost,
    ManualInputError,
    TriggerKind,
    error_json,
)
from .registry import RegisteredFunction


class AdminApi:
    def __init__(self, host: FunctionHost, kinds: Mapping[str, TriggerKind]) -> None:
        self.host = host
        self.kinds = kinds  # trigger type (httpTrigger, timerTrigger, eventGridTrigger) -> its handler

    def describe(self, function: RegisteredFunction, base_url: str) -> dict[str, Any]:
        """One entry of GET /admin/functions (Azure's fields plus the flattened trigger facts)."""
        entry: dict[str, Any] = {
            "name": function.name,
            "trigger": function.trigger_type,
            "isDisabled": function.disabled,
            "config": function.function_json,
        }
        kind = self.kinds.get(function.trigger_type)
        if kind is not None:
            entry.update(kind.describe(function, base_url))
        return entry

    def _admin(self, request: web.Request) -> web.Response | None:
        return None if self.host.authorized(request, "admin") else web.Response(status=401)

    async def status(self, request: web.Request) -> web.StreamResponse:
        if refused := self._admin(request):
            return refused
        return web.json_response(
            {
                "state": "Running",
                "processUptime": int(time.monotonic() * 1000),
                "version": "localdev",
                "functions": len(self.host.registry.functions),
            }
        )

    async def list_functions(self, request: web.Request) -> web.StreamResponse:
        if refused := self._admin(request):
            return refused
        base_url = f"{request.scheme}://{request.host}"
        return web.json_response([self.describe(f, base_url) for f in self.host.registry.functions.values()])

    async def get_function(self, request: web.Request) -> web.StreamResponse:
        if refused := self._admin(request):
            return refused
        function = self.host.registry.get(request.match_info["name"])
        if function is None:
            return web.Response(status=404)
        return web.json_response(self.describe(function, f"{request.scheme}://{request.host}"))

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        if refused := self._admin(request):
            return refused
        function = self.host.registry.get(request.match_info["name"])
        if function is None:
            return web.Response(status=404)
        try:
            document = json.loads(await self.host.read_body(request, ADMIN_BODY_LIMIT) or b"null")
        except (ValueError, RecursionError):
            return error_json(400, 'The request body is not valid JSON. Send {"input": "..."}.')
        if not isinstance(document, dict):
            return error_json(400, 'Send a JSON object: {"input": "<string, number or boolean>"}.')
        kind = self.kinds.get(function.trigger_type)
        if kind is None:
            return error_json(400, f"{function.name} has a trigger the local host does not run.")
        try:
            value = kind.manual_input(function, document.get("input"))
        except ManualInputError as exc:
            return error_json(400, str(exc))
        invocation_id = str(uuid.uuid4())
        request[INVOCATION] = invocation_id
        request[FUNCTION] = function.name
        self.host.spawn(kind.manual_run(function, value, invocation_id))
        return web.Response(status=202)
