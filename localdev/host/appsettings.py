"""App settings and host.json, read the way Core Tools reads them.

Core Tools puts local.settings.json `Values` into the worker's environment; a variable already set in
the real environment wins. When the project has no local.settings.json, the local variant of
local.settings.json.example is used so that a fresh clone runs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .retry import parse_host_timespan

_log = logging.getLogger("localdev.host")


class AppSettingsError(ValueError):
    """local.settings.json or host.json cannot be used; the message names the file and the fix."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise AppSettingsError(f"{path} is not valid JSON: {exc}. Fix the file and start again.") from None


def _values_of(document: Any, path: Path) -> dict[str, str]:
    """`Values` of a local.settings.json document; the example file may nest variants (local first)."""
    if not isinstance(document, dict):
        raise AppSettingsError(f'{path}: expected a JSON object with a "Values" object')
    values = document.get("Values")
    if values is None:
        # local.settings.json.example may hold several variants; the local one is the one we run.
        for key in ("local", "Local", "localVault"):
            variant = document.get(key)
            if isinstance(variant, dict) and isinstance(variant.get("Values"), dict):
                values = variant["Values"]
                break
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise AppSettingsError(f'{path}: "Values" must be an object of string settings')
    return {
        str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in values.items()
    }


def read_local_settings(app_dir: Path) -> tuple[dict[str, str], Path | None]:
    """The `Values` Core Tools would load, and the file they came from (None when there is none)."""
    for name in ("local.settings.json", "local.settings.json.example"):
        path = app_dir / name
        if path.is_file():
            return _values_of(_read_json(path), path), path
    return {}, None


def apply_settings(values: Mapping[str, str], environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put `values` into the environment without overriding real variables; return the names set."""
    env = os.environ if environ is None else environ
    applied = []
    for name, value in values.items():
        if name not in env:
            env[name] = value
            applied.append(name)
    return applied


@dataclass(frozen=True)
class HostJson:
    """The parts of host.json this host honours."""

    route_prefix: str = "api"
    function_timeout_seconds: float | None = None


def _timespan_seconds(text: str) -> float:
    try:
        return parse_host_timespan(text, "host.json functionTimeout")
    except ValueError as exc:
        raise AppSettingsError(str(exc)) from None


def read_host_json(app_dir: Path, environ: Mapping[str, str] | None = None) -> HostJson:
    """host.json's route prefix (app setting AzureFunctionsJobHost__extensions__http__routePrefix wins)."""
    env = os.environ if environ is None else environ
    path = app_dir / "host.json"
    document: dict[str, Any] = _read_json(path) if path.is_file() else {}
    prefix = ((document.get("extensions") or {}).get("http") or {}).get("routePrefix", "api")
    prefix = env.get("AzureFunctionsJobHost__extensions__http__routePrefix", prefix)
    timeout = document.get("functionTimeout")
    return HostJson(
        route_prefix=str(prefix).strip("/"),
        function_timeout_seconds=_timespan_seconds(timeout) if isinstance(timeout, str) else None,
    )
