"""JSON answers for the HTTP blueprints: results and DomainErrors become HttpResponses in one way.

`answers_json` wraps an HTTP function so any DomainError becomes its status + {"error": {...}},
a settings problem becomes a ConfigurationError naming the setting, and anything unexpected is logged
(type only, never arguments) and answered with a generic 500: a caller never sees a stack trace.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func

from shared.errors import ConfigurationError, DomainError
from shared.settings import SettingsError

_log = logging.getLogger(__name__)

HttpFunction = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]
_MAX_CALLER = 256


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def error_response(error: DomainError) -> func.HttpResponse:
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return json_response(error.body(), error.status, headers)


def answers_json(handler: HttpFunction) -> HttpFunction:
    """Map what a handler raises to a JSON error response; the handler only deals with success."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return await handler(req)
        except DomainError as error:
            return error_response(error)
        except SettingsError as error:  # shared.settings has logged it with the advice
            return error_response(ConfigurationError.of(error))
        except Exception as error:  # noqa: BLE001 - a bug: log its type and where, never its message (may quote input)
            where = "".join(traceback.format_tb(error.__traceback__))
            _log.error("unexpected %s in %s\n%s", type(error).__name__, handler.__name__, where)
            return json_response(
                {
                    "error": {
                        "code": "InternalError",
                        "message": "Unexpected error; it was logged. Retry, and report it if it persists.",
                    }
                },
                500,
            )

    return wrapper


def caller_of(req: func.HttpRequest) -> str:
    """Who is calling, for the audit line: the App Service Authentication principal when present,
    else whether a function key was presented. The key itself is never recorded."""
    principal = req.headers.get("x-ms-client-principal-name") or req.headers.get("x-ms-client-principal-id")
    if principal:
        printable = "".join(ch for ch in principal if ch.isprintable())[:_MAX_CALLER]
        return f"principal:{printable}"
    if req.headers.get("x-functions-key") or req.params.get("code"):
        return "function-key"
    return "anonymous"
