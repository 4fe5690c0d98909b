"""Every app test runs under the leak guard: no secret value it used may appear in a log or a response."""

from __future__ import annotations

import pytest

from tests.fixtures.app import SecretValues


@pytest.fixture(autouse=True)
def _leak_guard(secret_values: SecretValues) -> SecretValues:
    return secret_values
