"""Route templates: ASP.NET Core constraints, optional and catch-all parameters, precedence."""

from __future__ import annotations

import re

import pytest

from localdev.host.routes import RouteTemplateError, compile_route

CASES = [
    # template, path, expected route values (None = no match → 404)
    ("c/int/{v:int}", "c/int/42", {"v": "42"}),
    ("c/int/{v:int}", "c/int/-7", {"v": "-7"}),
    ("c/int/{v:int}", "c/int/2147483648", None),
    ("c/int/{v:int}", "c/int/4x", None),
    ("c/long/{v:long}", "c/long/2147483648", {"v": "2147483648"}),
    ("c/long/{v:long}", "c/long/9223372036854775808", None),
    ("c/bool/{v:bool}", "c/bool/True", {"v": "True"}),
    ("c/bool/{v:bool}", "c/bool/yes", None),
    ("c/alpha/{v:alpha}", "c/alpha/AbC", {"v": "AbC"}),
    ("c/alpha/{v:alpha}", "c/alpha/ab1", None),
    (
        "c/guid/{v:guid}",
        "c/guid/0f8fad5b-d9cb-469f-a165-70867728950e",
        {"v": "0f8fad5b-d9cb-469f-a165-70867728950e"},
    ),
    ("c/guid/{v:guid}", "c/guid/0f8fad5bd9cb469fa16570867728950e", {"v": "0f8fad5bd9cb469fa16570867728950e"}),
    ("c/guid/{v:guid}", "c/guid/not-a-guid", None),
    ("c/double/{v:double}", "c/double/3.5e2", {"v": "3.5e2"}),
    ("c/double/{v:double}", "c/double/abc", None),
    ("c/decimal/{v:decimal}", "c/decimal/-12.50", {"v": "-12.50"}),
    ("c/decimal/{v:decimal}", "c/decimal/1e5", None),
    ("c/datetime/{v:datetime}", "c/datetime/2026-11-28", {"v": "2026-11-28"}),
    ("c/datetime/{v:datetime}", "c/datetime/2026-11-28T10:00:00Z", {"v": "2026-11-28T10:00:00Z"}),
    ("c/datetime/{v:datetime}", "c/datetime/yesterday", None),
    ("c/len/{v:minlength(2):maxlength(4)}", "c/len/abc", {"v": "abc"}),
    ("c/len/{v:minlength(2):maxlength(4)}", "c/len/a", None),
    ("c/len/{v:minlength(2):maxlength(4)}", "c/len/abcde", None),
    ("c/exact/{v:length(3)}", "c/exact/abc", {"v": "abc"}),
    ("c/exact/{v:length(3)}", "c/exact/ab", None),
    ("c/between/{v:length(2,3)}", "c/between/abcd", None),
    ("c/min/{v:min(5)}", "c/min/5", {"v": "5"}),
    ("c/min/{v:min(5)}", "c/min/4", None),
    ("c/max/{v:max(5)}", "c/max/6", None),
    ("c/range/{v:range(1,10)}", "c/range/10", {"v": "10"}),
    ("c/range/{v:range(1,10)}", "c/range/11", None),
    ("c/range/{v:range(1,10)}", "c/range/x", None),
    ("secrets/{name:regex(^[a-z0-9-]+$)}", "secrets/db-password", {"name": "db-password"}),
    ("secrets/{name:regex(^[a-z0-9-]+$)}", "secrets/db_password", None),
    ("x/{v:regex(^\\d{{3}}$)}", "x/123", {"v": "123"}),  # {{ }} escape braces inside the template
    ("x/{v:regex(^\\d{{3}}$)}", "x/1234", None),
    ("c/opt/{v:int?}", "c/opt", {}),
    ("c/opt/{v:int?}", "c/opt/5", {"v": "5"}),
    ("c/opt/{v:int?}", "c/opt/x", None),
    ("c/def/{v=7}", "c/def", {"v": "7"}),
    ("c/files/{*path}", "c/files/a/b/c.txt", {"path": "a/b/c.txt"}),
    ("c/files/{*path}", "c/files", {}),
    ("products/{category:alpha}/{id:int?}", "products/shoes/3", {"category": "shoes", "id": "3"}),
    ("products/{category:alpha}/{id:int?}", "products/shoes", {"category": "shoes"}),
    ("files/{name}.{ext}", "files/report.pdf", {"name": "report", "ext": "pdf"}),
    ("secrets/{name}", "secrets/a%20b", {"name": "a b"}),
    ("Secrets/{name}", "SECRETS/x", {"name": "x"}),
    ("secrets/{name}/versions", "secrets/x/versions/", {"name": "x"}),
]


@pytest.mark.parametrize("template,path,expected", CASES)
def test_constraints(template: str, path: str, expected: dict | None) -> None:
    assert compile_route(template).match(path) == expected


@pytest.mark.parametrize(
    "template",
    [
        "a/{v:nosuch}",
        "a/{v:regex}",
        "a/{v:min(x)}",
        "a/{*rest}/b",
        "a/{v",
        "a/{v}/{v}",
        "a//b",
    ],
)
def test_invalid_templates_are_named(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        compile_route(template)


def test_precedence_orders_literal_constrained_param_catch_all() -> None:
    literal = compile_route("things/new").precedence
    constrained = compile_route("things/{id:int}").precedence
    plain = compile_route("things/{id}").precedence
    catch_all = compile_route("things/{*rest}").precedence
    assert literal < constrained < plain < catch_all


async def test_constraints_through_the_host(host_factory, http) -> None:
    running = await host_factory("http")
    checks = {
        "/api/c/int/12": 200,
        "/api/c/int/x": 404,
        "/api/c/guid/0f8fad5b-d9cb-469f-a165-70867728950e": 200,
        "/api/c/regex/ok-name": 200,
        "/api/c/regex/Bad_Name": 404,
        "/api/c/files/a/b": 200,
        "/api/products/shoes": 200,
        "/api/products/shoes/2": 200,
        "/api/products/shoes/two": 404,
        "/api/c/range/0": 404,
        "/api/c/len/abcd": 200,
    }
    for path, status in checks.items():
        async with http.get(running.base_url + path) as resp:
            assert resp.status == status, path
    async with http.get(running.base_url + "/api/c/files/a/b%20c.txt") as resp:
        assert await resp.json() == {"path": "a/b c.txt"}


def test_regex_with_groups_and_chained_constraints() -> None:
    grouped = compile_route("v/{kind:regex(^(red|blue)$)}")
    assert grouped.match("v/red") == {"kind": "red"} and grouped.match("v/green") is None
    chained = compile_route("w/{code:regex(^[a-z]+$):length(3)?}")
    assert chained.match("w/abc") == {"code": "abc"} and chained.match("w/abcd") is None
    assert chained.match("w") == {}


@pytest.mark.parametrize(
    "template,message",
    [
        ("a/{v:nosuch}", "unknown route constraint 'nosuch'; use one of: int, long"),
        ("a/{v:int(3)}", "constraint int takes no argument"),
        ("a/{v:length(1,2,3)}", "constraint length takes 1 or 2 argument(s), got 3"),
        ("a/{v:range(1)}", "constraint range takes 2 argument(s), got 1"),
        ("a/{v:regex}", "constraint regex needs an argument"),
    ],
)
def test_constraint_registry_names_the_problem(template: str, message: str) -> None:
    with pytest.raises(RouteTemplateError, match=re.escape(message)):
        compile_route(template)


def test_every_documented_constraint_is_registered() -> None:
    from localdev.host.routes import CONSTRAINTS

    documented = (
        "int long bool alpha guid double float decimal datetime "
        "minlength maxlength length min max range regex"
    )
    assert set(documented.split()) <= set(CONSTRAINTS)
