"""Anonymous endpoints about the app itself: health (liveness/readiness) and its OpenAPI document."""

from __future__ import annotations

import azure.functions as func

from shared.readiness import probe_vault
from shared.validation import parse_flag

from .openapi import openapi_document
from .responses import answers_json, json_response

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@answers_json
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness costs nothing; ?ready=true proves the identity can list the vault (503 says what to fix)."""
    if not parse_flag(req.params, "ready"):
        return json_response({"status": "alive"})
    readiness = await probe_vault()
    body: dict[str, object] = {
        "status": "ready" if readiness.ready else "notReady",
        "vaultUrl": readiness.vault_url,
        "durationMs": readiness.duration_ms,
    }
    if not readiness.ready:
        body["error"] = {"code": readiness.code, "message": readiness.message}
    return json_response(body, 200 if readiness.ready else 503)


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@answers_json
async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi_document())
