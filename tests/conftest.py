"""Fixtures shared by every suite live in tests/fixtures/, one module per concern."""

pytest_plugins = [
    "tests.fixtures.vault",
    "tests.fixtures.app",
    "tests.fixtures.rotation",
    "tests.fixtures.cloud",
    "tests.fixtures.databases",
]
