"""Event Grid triggers: the extension's webhook (runtime/webhooks/eventgrid) and manual runs.

As the Event Grid extension: system key (or master key) required; `aeg-event-type` Notification delivers
an array (Event Grid schema) or one CloudEvent, one invocation per event, all at once; 202 when all
succeed, 500 naming the failed invocation ids otherwise. SubscriptionValidation answers the validation
code; the CloudEvents abuse-protection OPTIONS handshake echoes the origin.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from typing import Any

from aiohttp import web
from azure.functions import meta

from .context import (
    EVENTGRID_BODY_LIMIT,
    FUNCTION,
    INVOCATION,
    FunctionHost,
    ManualInputError,
    error_json,
    failure_response,
)
from .registry import EVENT_GRID_TRIGGER, RegisteredFunction

WEBHOOK_PATH = "runtime/webhooks/eventgrid"


class EventGridTriggers:
    def __init__(self, host: FunctionHost) -> None:
        self.host = host

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":  # CloudEvents abuse-protection handshake
            origin = request.headers.get("WebHook-Request-Origin")
            if not origin:
                return web.Response(status=400)
            return web.Response(
                status=200, headers={"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"}
            )
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST, OPTIONS"})
        if not self.host.authorized(request, "system"):
            return web.Response(status=401)
        name = request.query.get("functionName", "")
        function = self.host.registry.get(name) if name else None
        if function is None or function.disabled or function.trigger_type != EVENT_GRID_TRIGGER:
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        request[FUNCTION] = function.name
        try:
            document = json.loads(await self.host.read_body(request, EVENTGRID_BODY_LIMIT))
        except (ValueError, RecursionError):
            return error_json(
                400, "The body is not valid JSON: send an array of Event Grid events or CloudEvents."
            )
        events = document if isinstance(document, list) else [document]
        kind = request.headers.get("aeg-event-type", "").lower()
        if kind == "subscriptionvalidation":
            first = events[0] if events and isinstance(events[0], dict) else {}
            data = first.get("data")
            code = data.get("validationCode") if isinstance(data, dict) else None
            if not code:
                return error_json(400, "SubscriptionValidation without data.validationCode.")
            return web.json_response({"validationResponse": code})
        if kind == "unsubscribe":
            return web.Response(status=202)
        if kind != "notification":
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
                self.host.invoker.invoke(function, functools.partial(event_grid_event, event), invocation_id)
                for event, invocation_id in zip(events, ids, strict=True)
            )
        )
        failed = [r for r in results if not r.succeeded]
        if failed:
            return failure_response(failed[0], extra=[r.invocation_id for r in failed])
        return web.Response(status=202)

    def describe(self, function: RegisteredFunction, base_url: str) -> dict[str, Any]:
        return {"webhook": f"{base_url}/{WEBHOOK_PATH}?functionName={function.name}"}

    def manual_input(self, function: RegisteredFunction, value: Any) -> Any:
        """One event, as a JSON object or that object as a JSON string."""
        try:
            event = json.loads(value) if isinstance(value, str) else value
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict):
            raise ManualInputError(
                "For an Event Grid function, send one event as input: a JSON object or that object as a "
                "JSON string."
            )
        return event

    async def manual_run(self, function: RegisteredFunction, value: Any, invocation_id: str) -> None:
        await self.host.invoker.invoke(function, functools.partial(event_grid_event, value), invocation_id)


def event_grid_event(event: dict[str, Any]) -> Any:
    """EventGridEvent or CloudEvent, decoded by azure.functions' converter as the worker does."""
    converter = meta.get_binding_registry().get(EVENT_GRID_TRIGGER)
    return converter.decode(meta.Datum(type="json", value=json.dumps(event)), trigger_metadata={})
