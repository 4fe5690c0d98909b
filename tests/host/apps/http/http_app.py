"""Fixture app: HTTP functions covering routing, constraints, auth levels, sync/async and errors."""

import asyncio
import json
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

LOOPS: list[int] = []


def _describe(req: func.HttpRequest) -> dict:
    return {
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "route_params": dict(req.route_params),
        "headers": {k: v for k, v in req.headers.items() if k.startswith("x-test")},
        "body": req.get_body().decode("utf-8", "replace"),
    }


@app.route(route="echo/{name:alpha}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    """Sync: runs in the thread pool."""
    payload = _describe(req) | {"thread": threading.current_thread().name}
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


@app.route(route="async/{id:int}", methods=["GET", "PUT"])
async def async_echo(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Async with context: runs on the host's loop."""
    LOOPS.append(id(asyncio.get_running_loop()))
    await asyncio.sleep(0)
    payload = _describe(req) | {
        "invocation_id": context.invocation_id,
        "function_name": context.function_name,
        "retry_count": context.retry_context.retry_count,
        "traceparent": context.trace_context.trace_parent,
        "thread": threading.current_thread().name,
        "loop": id(asyncio.get_running_loop()),
    }
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


@app.route(route="public", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def public(req: func.HttpRequest) -> str:
    return "hello, world"


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="submit", methods=["POST"])
def submit_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=204)


@app.route(route="submit", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
def submit_delete(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("deleted")


@app.route(route="rich", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def rich(req: func.HttpRequest) -> func.HttpResponse:
    response = func.HttpResponse(
        json.dumps({"ok": True}),
        status_code=201,
        mimetype="application/json",
        headers={"X-Single": "one", "Location": "/api/rich/1"},
    )
    response.headers.add_header("X-Multi", "a")
    response.headers.add_header("X-Multi", "b")
    response.headers.add_header("Set-Cookie", "first=1; Path=/")
    response.headers.add_header("Set-Cookie", "second=2; Path=/")
    return response


@app.route(route="latin", auth_level=func.AuthLevel.ANONYMOUS)
def latin(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("caf\u00e9", charset="latin-1", mimetype="text/html")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("internal detail: password=hunter2 at /srv/secret/path")


@app.route(route="aboom", auth_level=func.AuthLevel.ANONYMOUS)
async def async_boom(req: func.HttpRequest) -> func.HttpResponse:
    raise KeyError("internal-async-detail")


@app.route(route="wrong-type", auth_level=func.AuthLevel.ANONYMOUS)
def wrong_type(req: func.HttpRequest):
    return {"not": "a response"}


@app.route(route="nothing", auth_level=func.AuthLevel.ANONYMOUS)
def nothing(req: func.HttpRequest):  # no annotation: the worker refuses `-> None` on an HTTP function
    return None


@app.route(route="things/new", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def thing_new(req: func.HttpRequest) -> str:
    return "literal"


@app.route(route="things/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def thing_by_id(req: func.HttpRequest) -> str:
    return "param:" + req.route_params["id"]


@app.route(auth_level=func.AuthLevel.ANONYMOUS)
def DefaultRoute(req: func.HttpRequest) -> str:
    """No route: the function name is the route; no methods: every method."""
    return "default:" + req.method


# One anonymous echo function per constraint template.
CONSTRAINT_ROUTES = {
    "c_int": "c/int/{v:int}",
    "c_long": "c/long/{v:long}",
    "c_bool": "c/bool/{v:bool}",
    "c_alpha": "c/alpha/{v:alpha}",
    "c_guid": "c/guid/{v:guid}",
    "c_double": "c/double/{v:double}",
    "c_decimal": "c/decimal/{v:decimal}",
    "c_datetime": "c/datetime/{v:datetime}",
    "c_minmaxlength": "c/len/{v:minlength(2):maxlength(4)}",
    "c_length": "c/exact/{v:length(3)}",
    "c_min": "c/min/{v:min(5)}",
    "c_max": "c/max/{v:max(5)}",
    "c_range": "c/range/{v:range(1,10)}",
    "c_regex": "c/regex/{v:regex(^[a-z0-9-]+$)}",
    "c_optional": "c/opt/{v:int?}",
    "c_catchall": "c/files/{*path}",
    "c_products": "products/{category:alpha}/{id:int?}",
}


def _constraint_echo(name: str, route: str) -> None:
    @app.function_name(name)
    @app.route(route=route, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps(dict(req.route_params)), mimetype="application/json")


for _name, _route in CONSTRAINT_ROUTES.items():
    _constraint_echo(_name, _route)


@app.route(route="slow", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def slow(req: func.HttpRequest) -> str:
    """Outlives host.json's functionTimeout (0.5 s)."""
    await asyncio.sleep(30)
    return "never"
