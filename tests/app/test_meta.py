"""Health and the OpenAPI document: anonymous; the document matches what the app registers and enforces."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis

from blueprints.openapi import ROTATION_OUTCOMES, ROTATION_STATUSES, openapi_document
from shared import generator, validation
from tests.fixtures.app import InProcessApi


def http_functions() -> list:
    """The HTTP functions as the local host indexes function_app.py (a fresh import, as the worker does)."""
    from localdev.host.registry import load_registry

    return load_registry(Path("function_app.py")).http_functions


def test_document_describes_exactly_the_registered_http_functions() -> None:
    document = openapi_document()
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    registered = {
        (method, f"/api/{function.route}") for function in http_functions() for method in function.methods
    }
    assert described == registered


def test_document_is_valid_openapi_31_and_loads_in_schemathesis() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(document)
    assert len([op.ok() for op in schema.get_all_operations()]) == 11  # + the status page's two routes


def test_document_limits_and_presets_are_the_enforced_ones() -> None:
    schemas = openapi_document()["components"]["schemas"]
    write = schemas["SecretWrite"]["properties"]
    assert write["contentType"]["maxLength"] == validation.MAX_CONTENT_TYPE
    assert write["tags"]["maxProperties"] == validation.MAX_TAGS
    assert str(validation.MAX_VALUE_BYTES) in write["value"]["description"]
    generate = schemas["Generate"]["properties"]
    assert generate["alphabet"]["enum"] == list(generator.ALPHABETS)
    assert (generate["length"]["minimum"], generate["length"]["maximum"]) == (
        generator.MIN_LENGTH,
        generator.MAX_LENGTH,
    )
    for preset in generator.ALPHABETS:
        assert preset in schemas["Generate"]["description"]


def test_rotation_enums_match_shared_rotation() -> None:
    from shared.rotation.policy import SecretStatus
    from shared.rotation.results import Outcome

    assert [s.value for s in SecretStatus] == ROTATION_STATUSES
    assert [o.value for o in Outcome] == ROTATION_OUTCOMES


def test_health_and_openapi_are_anonymous_and_the_rest_need_a_function_key() -> None:
    levels = {function.name: function.auth_level for function in http_functions()}
    assert {name for name, level in levels.items() if level == "anonymous"} == {"health", "openapi"}
    assert {level for name, level in levels.items() if name not in ("health", "openapi")} == {"function"}
    security = {
        (path, method): op.get("security")
        for path, item in openapi_document()["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    }
    assert {key for key, value in security.items() if value == []} == {
        ("/api/health", "get"),
        ("/api/openapi.json", "get"),
    }


async def test_openapi_endpoint_serves_the_document(api: InProcessApi) -> None:
    response = await api.openapi()
    assert response.status == 200 and response.headers["Content-Type"].startswith("application/json")
    assert response.json == openapi_document()


@pytest.mark.usefixtures("app_env")
async def test_health_liveness_and_readiness(api: InProcessApi, vault_control) -> None:
    alive = await api.health()
    assert alive.status == 200 and alive.json == {"status": "alive"}
    assert vault_control.stats()["total"] == 0  # liveness never touches the vault
    ready = await api.health({"ready": "true"})
    assert ready.status == 200 and ready.json["status"] == "ready"
    assert vault_control.stats()["operations"] == {"GetSecrets": 1}
    assert (await api.health({"ready": "soon"})).status == 400
