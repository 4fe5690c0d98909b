"""HTTP triggers through the real host over real HTTP: routing, methods, auth levels, request/response."""

from __future__ import annotations

import json
import logging
import uuid

import aiohttp
import pytest

from .conftest import app_module


@pytest.fixture
async def host(host_factory):
    return await host_factory("http")


def key(running, kind: str = "function") -> dict[str, str]:
    value = running.keys.defaultFunctionKey if kind == "function" else running.keys.masterKey
    return {"x-functions-key": value}


async def test_sync_function_gets_request_fields(host, http: aiohttp.ClientSession) -> None:
    url = f"{host.base_url}/api/echo/Alice?a=1&a=2&b=x"
    async with http.post(url, data=b'{"k": 1}', headers=key(host) | {"X-Test-One": "1"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        got = await resp.json()
    assert got["method"] == "POST"
    assert got["url"] == url
    assert got["route_params"] == {"name": "Alice"}
    assert got["params"] == {"a": "1,2", "b": "x"}  # multi-valued query joined like the host does
    assert got["headers"] == {"x-test-one": "1"}
    assert got["body"] == '{"k": 1}'
    assert got["thread"].startswith("localdev-fn")  # sync functions run in the thread pool


async def test_async_function_runs_on_the_host_loop_with_context(host, http) -> None:
    loops = set()
    for n in (1, 2):
        async with http.put(f"{host.base_url}/api/async/{n}", headers=key(host)) as resp:
            assert resp.status == 200
            got = await resp.json()
        assert got["route_params"] == {"id": str(n)}
        assert got["function_name"] == "async_echo"
        assert uuid.UUID(got["invocation_id"])
        assert got["retry_count"] == 0
        assert got["traceparent"].startswith("00-")
        assert got["thread"] == "MainThread"
        loops.add(got["loop"])
    assert len(loops) == 1  # one shared loop for every invocation


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/api/echo/Bob", 200),
        ("/api/ECHO/Bob", 200),  # literals are case-insensitive
        ("/api/echo/Bob1", 404),  # alpha constraint fails → 404, not 400
        ("/api/echo", 404),
        ("/echo/Bob", 404),  # the route prefix is required
        ("/api/nowhere", 404),
    ],
)
async def test_route_matching(host, http, path: str, expected: int) -> None:
    async with http.get(host.base_url + path, headers=key(host)) as resp:
        assert resp.status == expected


async def test_a_method_no_function_declares_is_404_as_in_azure(host, http) -> None:
    async with http.get(f"{host.base_url}/api/submit", headers=key(host)) as resp:
        assert resp.status == 404  # was 405 with Allow locally; Azure answers 404
        assert "Allow" not in resp.headers
    async with http.head(f"{host.base_url}/api/submit", headers=key(host)) as resp:
        assert resp.status == 404
    async with http.post(f"{host.base_url}/api/submit", headers=key(host)) as resp:
        assert resp.status == 204
    async with http.delete(f"{host.base_url}/api/submit") as resp:  # same route, another function
        assert resp.status == 200
        assert await resp.text() == "deleted"


async def test_default_route_is_the_function_name_and_accepts_every_method(host, http) -> None:
    for method in ("GET", "POST", "PATCH", "DELETE"):
        async with http.request(method, f"{host.base_url}/api/DefaultRoute") as resp:
            assert resp.status == 200
            assert await resp.text() == f"default:{method}"


async def test_literal_segment_wins_over_parameter(host, http) -> None:
    async with http.get(f"{host.base_url}/api/things/new") as resp:
        assert await resp.text() == "literal"
    async with http.get(f"{host.base_url}/api/things/other") as resp:
        assert await resp.text() == "param:other"


@pytest.mark.parametrize("kind", ["none", "wrong", "function", "master", "query"])
async def test_function_auth_level(host, http, kind: str) -> None:
    headers, params = {}, {}
    if kind == "wrong":
        headers = {"x-functions-key": "not-a-key"}
    elif kind == "function":
        headers = key(host)
    elif kind == "master":
        headers = key(host, "master")
    elif kind == "query":
        params = {"code": host.keys.defaultFunctionKey}
    async with http.get(f"{host.base_url}/api/echo/Zed", headers=headers, params=params) as resp:
        assert resp.status == (401 if kind in ("none", "wrong") else 200)


@pytest.mark.parametrize("kind,expected", [("none", 401), ("function", 401), ("master", 200)])
async def test_admin_auth_level_needs_the_master_key(host, http, kind: str, expected: int) -> None:
    headers = {} if kind == "none" else key(host, kind)
    async with http.get(f"{host.base_url}/api/admin-only", headers=headers) as resp:
        assert resp.status == expected


async def test_anonymous_needs_nothing_and_str_becomes_text(host, http) -> None:
    async with http.get(f"{host.base_url}/api/public") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert await resp.text() == "hello, world"


async def test_no_auth_bypasses_keys(host_factory, http) -> None:
    running = await host_factory("http", auth=False)
    async with http.get(f"{running.base_url}/api/echo/Zed") as resp:
        assert resp.status == 200
    async with http.get(f"{running.base_url}/api/admin-only") as resp:
        assert resp.status == 200
    async with http.get(f"{running.base_url}/admin/functions") as resp:
        assert resp.status == 200


async def test_keys_are_generated_once_and_kept(host_factory, tmp_path) -> None:
    first = await host_factory("http")
    stored = json.loads((tmp_path / "state" / "keys.json").read_text())
    assert stored["masterKey"] == first.keys.masterKey
    assert stored["defaultFunctionKey"] == first.keys.defaultFunctionKey
    assert len({first.keys.masterKey, first.keys.defaultFunctionKey, first.keys.eventGridSystemKey}) == 3
    assert (tmp_path / "state" / "keys.json").stat().st_mode & 0o077 == 0
    second = await host_factory("http")
    assert second.keys == first.keys


@pytest.mark.parametrize("content", ["[]", '"key"', '{"masterKey": 5}'])
def test_a_keys_file_of_the_wrong_shape_says_to_delete_it(tmp_path, content: str) -> None:
    from localdev.host.keys import HostKeys

    (tmp_path / "keys.json").write_text(content)
    with pytest.raises(RuntimeError, match="delete it to generate new keys"):
        HostKeys.load_or_create(tmp_path)


async def test_response_written_faithfully(host, http) -> None:
    async with http.get(f"{host.base_url}/api/rich") as resp:
        assert resp.status == 201
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Location"] == "/api/rich/1"
        assert resp.headers.getall("X-Multi") == ["a", "b"]
        assert resp.headers.getall("Set-Cookie") == ["first=1; Path=/", "second=2; Path=/"]
        assert await resp.json() == {"ok": True}
    async with http.get(f"{host.base_url}/api/latin") as resp:
        assert resp.headers["Content-Type"] == "text/html; charset=latin-1"
        assert await resp.read() == "caf\u00e9".encode("latin-1")
    async with http.get(f"{host.base_url}/api/nothing") as resp:
        assert resp.status == 204


@pytest.mark.parametrize("path", ["/api/boom", "/api/aboom", "/api/wrong-type"])
async def test_function_that_raises_is_a_500_without_internals(host, http, caplog, path: str) -> None:
    caplog.set_level(logging.INFO, logger="localdev.host")
    async with http.get(host.base_url + path) as resp:
        assert resp.status == 500
        text = await resp.text()
    body = json.loads(text)
    assert "error occurred" in body["error"]
    invocation_id = body["invocationId"]
    for leak in ("hunter2", "password", "/srv/secret", "internal", "Traceback", "RuntimeError", "KeyError"):
        assert leak not in text
    logged = caplog.text
    assert invocation_id in logged
    assert "hunter2" not in logged and "internal-async-detail" not in logged
    if path != "/api/wrong-type":
        assert ("RuntimeError" if path == "/api/boom" else "KeyError") in logged


async def test_request_log_is_structured_and_never_shows_code(host, http, caplog) -> None:
    caplog.set_level(logging.INFO, logger="localdev.host.requests")
    secret_body = f"body-{uuid.uuid4()}"
    async with http.post(
        f"{host.base_url}/api/echo/Ann", params={"code": host.keys.defaultFunctionKey}, data=secret_body
    ) as resp:
        assert resp.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "localdev.host.requests"]
    assert any(
        "method=POST path=/api/echo/Ann status=200" in line
        and "function=echo" in line
        and "invocation=" in line
        and "duration_ms=" in line
        for line in lines
    )
    assert host.keys.defaultFunctionKey not in caplog.text
    assert secret_body not in caplog.text


async def test_disabled_http_function_is_404(host_factory, http, clean_environ) -> None:
    clean_environ["AzureWebJobs.public.Disabled"] = "true"
    running = await host_factory("http")
    async with http.get(f"{running.base_url}/api/public") as resp:
        assert resp.status == 404


async def test_route_prefix_from_host_json_and_app_setting(host_factory, http, clean_environ) -> None:
    clean_environ["AzureFunctionsJobHost__extensions__http__routePrefix"] = ""
    running = await host_factory("http")
    async with http.get(f"{running.base_url}/public") as resp:
        assert resp.status == 200
    async with http.get(f"{running.base_url}/api/public") as resp:
        assert resp.status == 404


async def test_module_state_is_the_apps(host) -> None:
    module = app_module(host)
    assert hasattr(module, "CONSTRAINT_ROUTES")


async def test_function_timeout_from_host_json(host, http, caplog) -> None:
    caplog.set_level(logging.INFO, logger="localdev.host")
    async with http.get(f"{host.base_url}/api/slow") as resp:
        assert resp.status == 500
    assert "function=slow" in caplog.text and "error=FunctionTimeout" in caplog.text
