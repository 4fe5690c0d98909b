"""Every app setting the code reads is either set by the deployment (the appsettings resource of
infra/modules/function-app.bicep) or listed, with the reason, in infra/settings-left-to-default.json; and
every setting the deployment sets is one the code (or the Functions host) reads, so a typo such as
KEY_VAULT_URI fails here rather than as a 500 in Azure.

The names come from shared.settings.SETTINGS when the module declares it (each entry has .name, .default,
.doc, .required), else from a scan of shared/settings.py's reader calls; either way plus a scan of the
deployed code for %NAME% binding expressions and direct environment reads."""

from __future__ import annotations

import pytest

from tests.infra import bicep
from tests.infra.test_policy import app_settings

WHERE = bicep.rel(bicep.FUNCTION_APP_BICEP)
DEFAULTS_FILE = bicep.rel(bicep.LEFT_TO_DEFAULT)

# Read by the Functions host or the platform, not by the app's code.
HOST_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__queueServiceUri",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}


def test_the_app_declares_settings() -> None:
    declared, how = bicep.declared_settings()
    names = {d.name for d in declared}
    assert {"KEY_VAULT_URL", "ROTATION_SCHEDULE", "CLEANUP_SCHEDULE", "AZURE_CLIENT_ID"} <= names, how


def coverage_problems(
    declared: list[bicep.Declared], set_here: dict[str, object], defaults: dict[str, str]
) -> list[str]:
    """One line per declared setting that the deployment neither sets nor lists as left to its default."""
    problems = []
    for setting in declared:
        if setting.name in set_here or setting.name in defaults:
            continue
        example = "<value>" if setting.default in (None, "") else repr(str(setting.default))
        problems.append(
            f"- {setting.name} (read by {setting.source}{', required' if setting.required else ''}) "
            f"is not set by the deployment: add `{setting.name}: {example}` to appReadSettings in {WHERE}"
            + (
                ""
                if setting.required
                else f', or add "{setting.name}": "<why the default is right in Azure>" to {DEFAULTS_FILE}'
            )
        )
    return problems


def test_every_setting_the_app_reads_is_set_or_deliberately_left_to_its_default() -> None:
    declared, how = bicep.declared_settings()
    problems = coverage_problems(declared, app_settings(), bicep.left_to_default())
    assert not problems, f"settings found by {how}:\n" + "\n".join(problems)


def test_required_settings_are_set_not_defaulted() -> None:
    declared, _ = bicep.declared_settings()
    defaults = bicep.left_to_default()
    wrong = [d.name for d in declared if d.required and d.name in defaults]
    assert not wrong, f"required settings have no default to leave them to: set {wrong} in {WHERE}"


def test_a_setting_is_either_set_or_defaulted_not_both() -> None:
    both = set(app_settings()) & set(bicep.left_to_default())
    assert not both, (
        f"{sorted(both)} are set in {WHERE} and listed in {DEFAULTS_FILE}: remove them from the list"
    )


def test_no_stale_default_entries() -> None:
    declared, how = bicep.declared_settings()
    stale = set(bicep.left_to_default()) - {d.name for d in declared}
    assert not stale, (
        f"{DEFAULTS_FILE} lists {sorted(stale)}, which the app no longer reads ({how}): remove them"
    )


def test_the_deployment_sets_only_settings_something_reads() -> None:
    declared, how = bicep.declared_settings()
    known = {d.name for d in declared} | HOST_SETTINGS
    unknown = set(app_settings()) - known
    assert not unknown, (
        f"{WHERE} sets {sorted(unknown)}, which neither the app ({how}) nor the Functions host reads: "
        "fix the name to match the code, or remove it"
    )


def test_the_check_reports_a_missing_setting_by_name() -> None:
    """A setting nobody deployed is reported with its name and the two files that could take it."""
    declared, _ = bicep.declared_settings()
    new = [bicep.Declared("EXAMPLE_NEW_SETTING", 42, False, "shared/settings.py")]
    required = [bicep.Declared("EXAMPLE_REQUIRED", None, True, "shared/settings.py")]
    (line,) = [
        line
        for line in coverage_problems([*declared, *new], app_settings(), bicep.left_to_default())
        if "EXAMPLE_" in line
    ]
    assert "EXAMPLE_NEW_SETTING: '42'" in line and WHERE in line and DEFAULTS_FILE in line
    (line,) = [
        line
        for line in coverage_problems([*declared, *required], app_settings(), bicep.left_to_default())
        if "EXAMPLE_" in line
    ]
    assert "required" in line and WHERE in line and DEFAULTS_FILE not in line


def test_the_source_scan_finds_what_settings_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SETTINGS, the scan of the source finds the same names: the check never goes blind."""
    import shared.settings

    with_declarations = {d.name for d in bicep.declared_settings()[0]}
    if not hasattr(shared.settings, "SETTINGS"):
        pytest.skip("shared.settings has no SETTINGS yet: only the scan exists, nothing to compare it with")
    monkeypatch.delattr(shared.settings, "SETTINGS")
    scanned, how = bicep.declared_settings()
    assert how.startswith("a scan of shared/settings.py")
    assert {d.name for d in scanned} == with_declarations
