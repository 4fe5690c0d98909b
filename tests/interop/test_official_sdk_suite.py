"""Microsoft's own `azure-keyvault-secrets` test suite, run live against the local Key Vault.

The tests ship in the package's sdist on PyPI (`tests/`); this fetches the sdist of the installed version
with pip, unpacks it in a temporary directory (nothing lands in the work tree), and runs its live tests
in a subprocess against a fresh local vault, over verified TLS with the real ManagedIdentityCredential.
Their harness module `devtools_testutils` lives in the Azure SDK repository, not on PyPI: the stand-in in
tests/interop/sdk_suite/ gives them a live-mode harness (see its docstrings for the little it does).

The suite: the five test files that talk to a vault, at the SDK's default API version (the official
preparer runs live tests at that version only). 45 tests, 2 of them playback-only (skipped, as in Azure's
live pipeline): 43 run, and all 43 must pass. By hand:

    .venv/bin/python -m pytest tests/interop/test_official_sdk_suite.py -s

The samples wait 60 s after a purge for the real service; the stand-in cuts waits over 5 s (the local
vault purges at once), so the run takes about 10 s.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from localdev.vault.server import VaultConfig, start_vault_in_thread

HERE = Path(__file__).resolve().parent
STAND_IN = HERE / "sdk_suite"
PACKAGE = "azure-keyvault-secrets"
LIVE_FILES = (
    "test_secrets_client.py",
    "test_secrets_async.py",
    "test_samples_secrets.py",
    "test_samples_secrets_async.py",
    "test_parse_id.py",
)
EXPECTED = {"passed": 43, "skipped": 2}  # skipped: the two playback-only samples
# Variables a developer's shell may carry that would point the official tests somewhere else.
_FOREIGN = ("AZURE_", "KEYVAULT_", "KEY_VAULT_", "IDENTITY_", "MSI_")

pytestmark = pytest.mark.slow


def _sdist(version: str) -> Path:
    """The package's sdist from PyPI through pip, cached outside the work tree."""
    cache = Path(tempfile.gettempdir()) / "localdev-sdk-suite"
    cache.mkdir(exist_ok=True)
    found = sorted(cache.glob(f"azure_keyvault_secrets-{version}.tar.gz"))
    if found:
        return found[0]
    fetched = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"{PACKAGE}=={version}",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--quiet",
            "-d",
            str(cache),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = sorted(cache.glob(f"azure_keyvault_secrets-{version}.tar.gz"))
    if fetched.returncode != 0 or not found:
        reason = f"cannot download the {PACKAGE} {version} sdist from PyPI: {fetched.stderr.strip()[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI reaches PyPI: this must run there
        pytest.skip(reason)
    return found[0]


def _unpack_tests(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/tests/" in m.name]
        archive.extractall(into, members=members, filter="data")
    [tests] = list(into.glob("*/tests"))
    return tests


def test_the_official_sdk_suite_passes_live_against_the_local_vault(tmp_path: Path) -> None:
    version = importlib.metadata.version(PACKAGE)
    tests = _unpack_tests(_sdist(version), tmp_path / "sdist")
    vault = start_vault_in_thread(
        VaultConfig(state_dir=tmp_path / "vault", port=0, identity_port=0, memory=True)
    )
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
        env.update(
            {
                "AZURE_TEST_RUN_LIVE": "true",
                "AZURE_SKIP_LIVE_RECORDING": "true",
                "AZURE_KEYVAULT_URL": vault.vault_url,
                "IDENTITY_ENDPOINT": vault.identity_endpoint,
                "IDENTITY_HEADER": vault.identity_header,
                "LOCALDEV_CA_BUNDLE": vault.ca_bundle,
                "PYTHONPATH": os.pathsep.join([str(STAND_IN), str(tests)]),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        started = time.perf_counter()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "devtools_testutils.plugin",
                "-p",
                "no:cacheprovider",
                "-o",
                "addopts=",
                "-o",
                "asyncio_default_fixture_loop_scope=function",
                "--rootdir",
                str(tests),
                "--default-version-only",
                "-q",
                "-rfEs",
                *LIVE_FILES,
            ],
            cwd=tests,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        elapsed = time.perf_counter() - started
    finally:
        vault.stop()
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    print(f"{PACKAGE} {version} official suite, live against the local vault: {summary} ({elapsed:.1f} s)")
    assert run.returncode == 0 and counts == EXPECTED, run.stdout[-6000:] + run.stderr[-2000:]
