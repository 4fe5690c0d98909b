"""schemathesis against /api/openapi.json, served by the real function_app.py in the local host over HTTP:
every operation, schema-valid and schema-invalid inputs; no 5xx, and every answer matches the document
(status codes, content types, response schemas and headers)."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.app import LiveHost

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_the_served_document(
    live_host: LiveHost, vault_control, mode: GenerationMode
) -> None:
    session = requests.Session()
    served = session.get(f"{live_host.base_url}/api/openapi.json", timeout=10)
    assert served.status_code == 200  # anonymous: no key sent
    schema = schemathesis.openapi.from_dict(served.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 11  # + GET /api/status and /api/status.json (issue 13)
    headers = {"x-functions-key": live_host.function_key}
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
    calls = 0

    document = served.json()

    def takes_input(operation) -> bool:
        item = document["paths"][operation.path]
        definition = item[operation.method.lower()]
        return bool(item.get("parameters") or definition.get("parameters") or definition.get("requestBody"))

    # An operation without parameters or body (openapi.json, rotation plan) has no invalid input to send.
    exercised = [op for op in operations if mode is GenerationMode.POSITIVE or takes_input(op)]
    assert len(exercised) >= 7
    for operation in exercised:

        @settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def conforms(case) -> None:
            nonlocal calls
            response = case.call(base_url=live_host.base_url, session=session, headers=headers, timeout=30)
            calls += 1
            case.validate_response(response, checks=checks)

        conforms()
    assert calls >= len(exercised) * 5
    assert vault_control.stats()["total"] > 0  # the requests really reached the vault
