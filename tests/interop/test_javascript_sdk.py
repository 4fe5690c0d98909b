"""The unmodified JavaScript SDK (@azure/keyvault-secrets + @azure/identity) against the local Key Vault.

Issue #2 promises that SDKs other than Python's work against localdev/vault unchanged, over verified HTTPS with
managed identity. One run of tests/interop/keyvault_js.mjs (Node.js) exercises the secrets surface with
`ManagedIdentityCredential` (App Service source: IDENTITY_ENDPOINT + IDENTITY_HEADER) and the vault's CA in
NODE_EXTRA_CA_CERTS; the tests below assert on its JSON summary field by field, on the vault's own operation
counts (the calls really reached it), and read back with the Python SDK what the JavaScript SDK wrote.
Nothing is mocked.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localdev.vault.client import ControlClient
from localdev.vault.server import RunningVault

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("keyvault_js.mjs")
PACKAGES = ("@azure/keyvault-secrets", "@azure/identity")
BULK = 30  # with the main secret, 31 secrets: more than one service page (25)
SMALL_PAGE = 10
SERVICE_PAGE = 25
OPERATION_LATENCY = 0.2  # seconds a delete or recovery stays "in progress", so the SDK pollers must poll
# Inherited variables that would pick another credential source, relax TLS or route loopback through a proxy.
_UNSAFE_PREFIXES = ("IDENTITY_", "MSI_", "IMDS_", "AZURE_")
_UNSAFE_NAMES = {
    "NODE_TLS_REJECT_UNAUTHORIZED",
    "NODE_EXTRA_CA_CERTS",
    "NODE_OPTIONS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
}


@dataclass
class ScriptRun:
    summary: dict[str, Any]
    output: str  # stdout + stderr, to prove no value leaked


@dataclass
class InteropRun:
    prefix: str
    values: dict[str, str]
    expires_on: int
    js: ScriptRun
    stats: dict[str, Any]


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node is not on PATH: the JavaScript SDK interop test needs Node.js 20+ "
            "(then run `npm ci` at the repository root)"
        )
    wanted = json.loads((REPO_ROOT / "package.json").read_text())["engines"]["node"]  # ">=20"
    have = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(have.lstrip("v").split(".")[0]) < int(wanted.lstrip(">=").split(".")[0]):
        pytest.skip(f"node {have} is older than package.json's engines ({wanted}): install Node.js {wanted}")
    missing = [p for p in PACKAGES if not (REPO_ROOT / "node_modules" / p / "package.json").is_file()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: run npm ci at the repository root "
            f"(`npm ci --no-audit --no-fund` in {REPO_ROOT}; `make test` does it)"
        )
    return node


def _child_env(vault: RunningVault, extra: dict[str, str], *, trust_vault_ca: bool = True) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(_UNSAFE_PREFIXES) and k.upper() not in _UNSAFE_NAMES
    }
    vault_env = vault.env()
    env.update({name: vault_env[name] for name in ("KEY_VAULT_URL", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")})
    if trust_vault_ca:
        env["NODE_EXTRA_CA_CERTS"] = vault.ca_bundle  # verified TLS, against the vault's generated CA
    env.update(extra)
    return env


def _redact(text: str, values: dict[str, str]) -> str:
    for value in values.values():
        text = text.replace(value, "<redacted>")
    return text


def run_script(node: str, env: dict[str, str], values: dict[str, str]) -> ScriptRun:
    """Run the Node script; a failure shows its stderr (step, status, error code) with any value redacted."""
    try:
        done = subprocess.run(
            [node, str(SCRIPT)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the JavaScript SDK script did not finish in 60 s: is the local vault answering?")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"the JavaScript SDK script failed (exit {done.returncode}):\n{_redact(output, values)}")
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON summary line, got:\n{_redact(done.stdout, values)}"
    return ScriptRun(json.loads(lines[0]), output)


@pytest.fixture(scope="module")
def js_run(vault: RunningVault) -> Iterator[InteropRun]:
    """One script run on a freshly reset vault; its summary and the vault's stats right after it."""
    node = _node()
    control = ControlClient(vault.vault_url, vault.ca_bundle, vault.control_key)
    prefix = f"js-{secrets.token_hex(3)}"
    values = {key: secrets.token_urlsafe(24) for key in ("first", "second", "backup", "bulk")}
    expires_on = int(time.time()) + 86400
    try:
        control.reset()
        control.set_operation_latency(delete=OPERATION_LATENCY, recover=OPERATION_LATENCY)
        js = run_script(
            node,
            _child_env(
                vault,
                {
                    "INTEROP_PREFIX": prefix,
                    "INTEROP_VALUES": json.dumps(values),
                    "INTEROP_EXPIRES_ON": str(expires_on),
                    "INTEROP_BULK": str(BULK),
                },
            ),
            values,
        )
        stats = control.stats()
        control.set_operation_latency(delete=0, recover=0)
        yield InteropRun(prefix, values, expires_on, js, stats)
    finally:
        control.reset()
        control.close()


def test_set_and_get_latest_and_by_version(js_run: InteropRun, vault: RunningVault) -> None:
    s = js_run.js.summary
    main = f"{js_run.prefix}-main"
    pinned = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]
    assert s["sdk"] == {p: pinned[p] for p in PACKAGES}, (
        "node_modules is stale: run npm ci at the repository root"
    )
    created = s["set"]
    assert created["name"] == main
    assert created["vaultUrl"] == vault.vault_url
    assert created["tags"] == {"sdk": "javascript", "step": "first"}
    assert created["contentType"] == "text/plain"
    assert created["expiresOn"] == js_run.expires_on
    assert created["enabled"] is True
    assert created["recoveryLevel"] == "Recoverable+Purgeable"
    assert 7 <= created["recoverableDays"] <= 90
    assert created["valueEchoed"] is True
    assert len(created["firstVersion"]) == 32 and created["firstVersion"] != created["secondVersion"]

    got = s["get"]
    assert got["latestVersion"] == created["secondVersion"]
    assert got["latestValueMatches"] is True
    assert got["latestContentType"] == "application/json"
    assert got["byVersionVersion"] == created["firstVersion"]
    assert got["byVersionValueMatches"] is True
    assert got["byVersionTags"] == {"sdk": "javascript", "step": "first"}
    assert got["byVersionExpiresOn"] == js_run.expires_on


def test_update_properties_and_list_versions(js_run: InteropRun) -> None:
    s = js_run.js.summary
    first, second = s["set"]["firstVersion"], s["set"]["secondVersion"]
    assert s["update"] == {
        "version": first,
        "enabled": False,
        "tags": {"sdk": "javascript", "step": "updated"},
        "contentType": "text/csv",
        "expiresOn": js_run.expires_on,
        "getDisabled": {
            "restError": True,
            "statusCode": 403,
            "code": "Forbidden",
            "innerCode": "SecretDisabled",
        },
    }
    main = f"{js_run.prefix}-main"
    assert s["versions"] == sorted(
        [
            {"version": first, "enabled": False, "name": main},
            {"version": second, "enabled": True, "name": main},
        ],
        key=lambda v: v["version"],
    )


def test_list_pages_by_max_page_size_and_by_service_page(js_run: InteropRun) -> None:
    listed = js_run.js.summary["list"]
    expected = sorted([f"{js_run.prefix}-main"] + [f"{js_run.prefix}-bulk-{i:03d}" for i in range(BULK)])
    assert listed["smallNames"] == expected
    assert listed["smallPageSizes"] == [10, 10, 10, 1]
    assert listed["standardPageSizes"] == [25, 6]
    assert listed["itemCount"] == BULK + 1
    assert listed["itemNamesMatch"] is True


def test_delete_poll_get_deleted_list_deleted_and_recover(js_run: InteropRun, vault: RunningVault) -> None:
    s = js_run.js.summary
    main = f"{js_run.prefix}-main"
    deleted = s["delete"]
    assert deleted["name"] == main
    assert deleted["recoveryId"] == f"{vault.vault_url}/deletedsecrets/{main}"
    assert deleted["pollerDone"] is True
    assert abs(deleted["deletedOn"] - time.time()) < 600
    assert deleted["scheduledPurgeDate"] - deleted["deletedOn"] == s["set"]["recoverableDays"] * 86400
    assert deleted["getWhileDeleted"] == {"restError": True, "statusCode": 404, "code": "SecretNotFound"}
    assert deleted["getDeleted"] == {
        "name": main,
        "recoveryId": deleted["recoveryId"],
        "version": s["set"]["secondVersion"],
        "valueAbsent": True,
    }
    assert deleted["listedNames"] == [main]

    recovered = s["recover"]
    assert recovered == {
        "name": main,
        "version": s["set"]["secondVersion"],
        "pollerDone": True,
        "latestVersion": s["set"]["secondVersion"],
        "valueMatches": True,
        "versionCount": 2,
    }


def test_backup_delete_purge_restore(js_run: InteropRun) -> None:
    backup = js_run.js.summary["backup"]
    assert backup["blobIsBytes"] is True and backup["blobBytes"] > 0
    assert backup["afterPurge"] == {"restError": True, "statusCode": 404, "code": "SecretNotFound"}
    assert backup["restoredName"] == f"{js_run.prefix}-backup"
    assert backup["restoredVersion"] == backup["originalVersion"] == backup["afterRestoreVersion"]
    assert backup["restoredTags"] == {"sdk": "javascript", "step": "backup"}
    assert backup["valueMatches"] is True


def test_missing_secret_is_a_rest_error_404_secret_not_found(js_run: InteropRun) -> None:
    assert js_run.js.summary["missing"] == {"restError": True, "statusCode": 404, "code": "SecretNotFound"}


def test_every_call_reached_the_vault(js_run: InteropRun) -> None:
    """The vault's own counters: each SDK call is one transaction, pollers poll, and auth was the real flow."""
    ops = js_run.stats["operations"]
    secrets_listed = BULK + 1
    list_pages = math.ceil(secrets_listed / SMALL_PAGE) + 2 * math.ceil(secrets_listed / SERVICE_PAGE)
    assert {
        name: ops.get(name, 0)
        for name in (
            "SetSecret",
            "UpdateSecret",
            "GetSecretVersions",
            "GetSecrets",
            "DeleteSecret",
            "GetDeletedSecrets",
            "RecoverDeletedSecret",
            "BackupSecret",
            "PurgeDeletedSecret",
            "RestoreSecret",
        )
    } == {
        "SetSecret": 2 + BULK + 1,
        "UpdateSecret": 1,
        "GetSecretVersions": 2,
        "GetSecrets": list_pages,
        "DeleteSecret": 2,
        "GetDeletedSecrets": 1,
        "RecoverDeletedSecret": 1,
        "BackupSecret": 1,
        "PurgeDeletedSecret": 1,
        "RestoreSecret": 1,
    }
    # The pollers poll: a delete or recovery stays "in progress" for OPERATION_LATENCY, far longer than the one
    # loopback round trip between the SDK's call and its first poll, so each poller sees one 404 before its 200.
    # GetSecret: 7 direct (latest, by version, disabled, while deleted, after recovery, after restore, missing)
    # + the recovery poller's pre-check, in-progress and final polls. GetDeletedSecret: 2 delete pollers x 2
    # + 1 direct + 1 after purge.
    assert ops["GetSecret"] >= 7 + 3
    assert ops["GetDeletedSecret"] >= 6
    statuses = js_run.stats["statuses"]
    assert js_run.stats["challenges"] >= 1  # the SDK's bodiless challenge request, then bearer tokens
    assert (
        statuses.get("401", 0) == js_run.stats["challenges"]
    )  # every token from the identity endpoint accepted
    assert statuses.get("403") == 1  # the disabled version, nothing else
    assert set(statuses) <= {"200", "204", "401", "403", "404"}
    assert js_run.stats["dropped"] == 0


def test_python_sdk_reads_what_javascript_wrote(js_run: InteropRun, sync_client: Any) -> None:
    main = f"{js_run.prefix}-main"
    summary = js_run.js.summary
    latest = sync_client.get_secret(main)
    assert latest.value == js_run.values["second"]
    assert latest.properties.version == summary["set"]["secondVersion"]
    assert latest.properties.content_type == "application/json"
    versions = {p.version: p for p in sync_client.list_properties_of_secret_versions(main)}
    first = versions[summary["set"]["firstVersion"]]
    assert first.enabled is False
    assert first.tags == {"sdk": "javascript", "step": "updated"}
    assert first.content_type == "text/csv"
    assert int(first.expires_on.timestamp()) == js_run.expires_on
    assert sync_client.get_secret(f"{js_run.prefix}-backup").value == js_run.values["backup"]


def test_no_secret_value_in_the_script_output(js_run: InteropRun) -> None:
    for value in js_run.values.values():
        assert value not in js_run.js.output


def test_tls_is_verified_against_the_vault_ca(vault: RunningVault) -> None:
    """Without NODE_EXTRA_CA_CERTS the same client refuses the vault's certificate: verification is real."""
    node = _node()
    probe = run_script(
        node,
        _child_env(vault, {"INTEROP_MODE": "tls-probe", "INTEROP_PREFIX": "js-tls"}, trust_vault_ca=False),
        {},
    )
    assert probe.summary["connected"] is False
    assert probe.summary["errorCode"] in {
        "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
        "SELF_SIGNED_CERT_IN_CHAIN",
        "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
        "DEPTH_ZERO_SELF_SIGNED_CERT",
    }
