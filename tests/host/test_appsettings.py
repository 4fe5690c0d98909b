"""local.settings.json / host.json read the way Core Tools reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localdev.host.appsettings import AppSettingsError, apply_settings, read_host_json, read_local_settings


def write(path: Path, document: object) -> None:
    path.write_text(json.dumps(document))


def test_local_settings_win_over_the_example_and_env_wins_over_both(tmp_path: Path) -> None:
    write(tmp_path / "local.settings.json", {"Values": {"A": "from-file", "B": "file-b", "FLAG": True}})
    write(tmp_path / "local.settings.json.example", {"Values": {"A": "from-example"}})
    values, source = read_local_settings(tmp_path)
    assert source == tmp_path / "local.settings.json"
    assert values == {"A": "from-file", "B": "file-b", "FLAG": "true"}
    environ = {"B": "real-env"}
    assert apply_settings(values, environ) == ["A", "FLAG"]
    assert environ == {"A": "from-file", "B": "real-env", "FLAG": "true"}


def test_example_is_the_fallback_and_no_file_is_fine(tmp_path: Path) -> None:
    assert read_local_settings(tmp_path) == ({}, None)
    write(tmp_path / "local.settings.json.example", {"IsEncrypted": False, "Values": {"X": "1"}})
    assert read_local_settings(tmp_path) == ({"X": "1"}, tmp_path / "local.settings.json.example")


def test_broken_settings_file_names_itself(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text("{ not json")
    with pytest.raises(AppSettingsError, match=r"local\.settings\.json is not valid JSON"):
        read_local_settings(tmp_path)
    write(tmp_path / "local.settings.json", {"Values": ["not", "an", "object"]})
    with pytest.raises(AppSettingsError, match="Values"):
        read_local_settings(tmp_path)


def test_host_json_route_prefix_timeout_and_override(tmp_path: Path) -> None:
    assert read_host_json(tmp_path, {}).route_prefix == "api"  # no host.json: the default
    write(
        tmp_path / "host.json",
        {"version": "2.0", "functionTimeout": "00:10:00", "extensions": {"http": {"routePrefix": "/v1/"}}},
    )
    parsed = read_host_json(tmp_path, {})
    assert parsed.route_prefix == "v1" and parsed.function_timeout_seconds == 600
    assert (
        read_host_json(tmp_path, {"AzureFunctionsJobHost__extensions__http__routePrefix": ""}).route_prefix
        == ""
    )
