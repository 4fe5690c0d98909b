"""HTTP API for secrets: parse → typed request (shared.validation) → shared.secrets → JSON.

A thin adapter: no business rules here. Auth level comes from the FunctionApp (function keys).
Names are validated in code, not by a route constraint, so a bad name is a 400 that says why
instead of the host's bare 404.
"""

from __future__ import annotations

import azure.functions as func

from shared import secrets
from shared.scope import ownership_tags
from shared.validation import (
    parse_flag,
    parse_list_query,
    parse_secret_write,
    require_json,
    validate_name,
    vault_param,
)

from .responses import answers_json, caller_of, json_response

bp = func.Blueprint()


@bp.function_name("put_secret")
@bp.route(route="secrets/{name}", methods=["PUT"])
@answers_json
async def put_secret(req: func.HttpRequest) -> func.HttpResponse:
    """201 when the name is new, 200 when a version was added or the write was identical."""
    name = validate_name(req.route_params.get("name", ""))
    recover_param = parse_flag(req.params, "recover")
    body = require_json(req.headers.get("content-type"), req.get_body())
    vault = vault_param(req.params)
    request = parse_secret_write(
        name, body, bookkeeping_tags=ownership_tags(secrets.settings_for(vault)), recover_param=recover_param
    )
    result = await secrets.write(request, caller=caller_of(req), vault=vault)
    return json_response(result.metadata.as_json(), 201 if result.created else 200)


@bp.function_name("get_secret")
@bp.route(route="secrets/{name}", methods=["GET"])
@answers_json
async def get_secret(req: func.HttpRequest) -> func.HttpResponse:
    name = validate_name(req.route_params.get("name", ""))
    details = await secrets.read(
        name, include_versions=parse_flag(req.params, "versions"), vault=vault_param(req.params)
    )
    body = details.current.as_json()
    if details.versions is not None:
        body["versions"] = [version.as_json() for version in details.versions]
    return json_response(body)


@bp.function_name("list_secrets")
@bp.route(route="secrets", methods=["GET"])
@answers_json
async def list_secrets(req: func.HttpRequest) -> func.HttpResponse:
    page = await secrets.list_page(parse_list_query(req.params), vault=vault_param(req.params))
    return json_response(
        {"value": [item.as_json() for item in page.items], "continuationToken": page.continuation_token}
    )


@bp.function_name("delete_secret")
@bp.route(route="secrets/{name}", methods=["DELETE"])
@answers_json
async def delete_secret(req: func.HttpRequest) -> func.HttpResponse:
    name = validate_name(req.route_params.get("name", ""))
    deleted = await secrets.delete(name, caller=caller_of(req), vault=vault_param(req.params))
    return json_response(deleted.as_json())


@bp.function_name("recover_secret")
@bp.route(route="secrets/{name}/recover", methods=["POST"])
@answers_json
async def recover_secret(req: func.HttpRequest) -> func.HttpResponse:
    name = validate_name(req.route_params.get("name", ""))
    recovered = await secrets.recover(name, caller=caller_of(req), vault=vault_param(req.params))
    return json_response(recovered.as_json())
