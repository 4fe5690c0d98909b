"""`.funcignore` keeps caches, keys, local state and test leftovers out of a deployment (Core Tools and azd
read it with .gitignore's rules), and keeps what the app needs in it."""

from __future__ import annotations

from pathlib import Path

import pytest

pathspec = pytest.importorskip("pathspec", reason="pathspec (installed with mypy) reads gitignore rules")

REPO = Path(__file__).resolve().parents[2]

NEVER_DEPLOYED = [
    "__pycache__/function_app.cpython-311.pyc",
    "shared/__pycache__/keyvault.cpython-311.pyc",
    "shared/rotation/__pycache__/engine.cpython-313.pyc",
    ".mypy_cache/3.11/shared/keyvault.meta.json",
    ".ruff_cache/0.15.0/123",
    ".pytest_cache/v/cache/lastfailed",
    ".hypothesis/examples/ab/cd",
    ".schemathesis/hypothesis/examples/x",
    ".venv/bin/python",
    ".venv-worker/bin/python",
    ".localdev/vault.env",
    ".localdev/control.key",
    "node_modules/azurite/package.json",
    "__azurite_db_blob__.json",
    "__blobstorage__/x",
    "local.settings.json",
    "server.pem",
    "ca.key",
    "certs/client.pem",
    "keys.json",
    "host.env",
    "vault.env",
    "tests/conftest.py",
    "localdev/vault/server.py",
    "bench/vault_throughput.py",
]
DEPLOYED = [
    "function_app.py",
    "host.json",
    "requirements.txt",
    "shared/keyvault.py",
    "shared/rotation/engine.py",
    "blueprints/__init__.py",
]


def _spec() -> object:
    return pathspec.GitIgnoreSpec.from_lines((REPO / ".funcignore").read_text().splitlines())


@pytest.mark.parametrize("path", NEVER_DEPLOYED)
def test_never_deployed(path: str) -> None:
    assert _spec().match_file(path), f".funcignore would deploy {path}"


@pytest.mark.parametrize("path", DEPLOYED)
def test_deployed(path: str) -> None:
    assert not _spec().match_file(path), f".funcignore would leave {path} out of the deployment"
