"""Fixtures shared by every suite live in tests/fixtures/, one module per concern."""

pytest_plugins = [
    "tests.fixtures.vault",
    "tests.fixtures.app",
    "tests.fixtures.rotation",
    "tests.fixtures.cloud",
    "tests.fixtures.databases",
]


from typing import Any  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _leak_guard(secret_values: Any) -> Any:
    """Every test runs under the leak guard: no secret value it registered (tests.fixtures.app.SecretValues)
    may appear in any captured log record, at any level and from any logger (the Azure SDK's included),
    or in any response the test read through the in-process API."""
    return secret_values
