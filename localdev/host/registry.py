"""The function registry: load function_app.py the way the Python worker indexes it.

Import the script, find the single top-level `FunctionRegister` (errors worded as the worker's), call
`get_functions()` once, and keep for each function what the host needs: trigger, route, methods, auth
level, schedule, retry policy, the Python callable and the parameters it declares.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func

from .routes import RouteTemplate, compile_route

_log = logging.getLogger("localdev.host")

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, TIMER_TRIGGER, EVENT_GRID_TRIGGER)
ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


class FunctionLoadError(RuntimeError):
    """The app cannot be indexed or one of its functions cannot be loaded (worded like the worker's)."""


@dataclass
class RegisteredFunction:
    """What the host knows about one function of the app."""

    name: str
    trigger_type: str
    trigger_name: str
    user_function: Callable[..., Any]
    is_async: bool
    wants_context: bool
    binding: dict[str, Any]  # the trigger binding as get_function_json() declares it
    function_json: dict[str, Any]
    disabled: bool = False
    # HTTP
    route: str | None = None
    methods: tuple[str, ...] = ()
    auth_level: str | None = None
    template: RouteTemplate | None = None
    # Timer
    schedule: str | None = None
    run_on_startup: bool = False
    retry_policy: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_http(self) -> bool:
        return self.trigger_type == HTTP_TRIGGER


def _import_script(script: Path) -> ModuleType:
    """Import `script` fresh under its own stem, as the worker does (a re-import gives a new FunctionApp)."""
    app_dir = str(script.parent.resolve())
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    name = script.stem
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise FunctionLoadError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def find_function_app(module: ModuleType, script_name: str) -> func.FunctionRegister:
    """The single top-level FunctionRegister of `module` (the worker's rule and messages)."""
    app: func.FunctionRegister | None = None
    for attribute in module.__dir__():
        candidate = getattr(module, attribute, None)
        if isinstance(candidate, func.FunctionRegister):
            if app is None:
                app = candidate
            elif candidate is not app:
                raise FunctionLoadError(
                    f"More than one {app.__class__.__name__} or other top level function app instances are defined."
                )
    if app is None:
        raise FunctionLoadError(f"Could not find top level function app instances in {script_name}.")
    return app


def _parameter_names(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _is_disabled(name: str, environ: Mapping[str, str]) -> bool:
    for key in (f"AzureWebJobs.{name}.Disabled", f"AzureWebJobs_{name}_Disabled"):
        if environ.get(key, "").strip().lower() in ("true", "1"):
            return True
    return False


def _describe(function: Any, environ: Mapping[str, str]) -> RegisteredFunction:
    name = function.get_function_name()
    trigger = function.get_trigger()
    if trigger is None:
        raise FunctionLoadError(f"cannot load the {name} function: it has no trigger")
    user_function = function.get_user_function()
    declared = _parameter_names(user_function)
    function_json = json.loads(function.get_function_json())
    bindings = function_json.get("bindings", [])
    in_names = {b["name"] for b in bindings if b.get("direction") == "IN"}
    out_names = {b["name"] for b in bindings if b.get("direction") == "OUT" and b["name"] != "$return"}
    python_names = set(declared) - {"context"}
    missing = python_names - in_names - out_names
    if missing:
        raise FunctionLoadError(
            f"cannot load the {name} function: the following parameters are declared in Python but not in "
            f"function.json: {missing}"
        )
    absent = (in_names | out_names) - set(declared)
    if absent:
        raise FunctionLoadError(
            f"cannot load the {name} function: the following parameters are declared in function.json but not "
            f"in Python: {absent}"
        )
    trigger_binding = next(
        b for b in bindings if b.get("name") == trigger.name and b.get("direction") == "IN"
    )
    entry = RegisteredFunction(
        name=name,
        trigger_type=trigger.type,
        trigger_name=trigger.name,
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        wants_context="context" in declared and "context" not in in_names,
        binding=trigger_binding,
        function_json=function_json,
        disabled=_is_disabled(name, environ),
        retry_policy=function.get_settings_dict("retry_policy"),
    )
    from .invocation import RetryPolicy  # here, not at the top: invocation imports this module

    try:  # read it now, so a bad policy stops the host at startup instead of failing every run
        RetryPolicy.from_setting(entry.retry_policy)
    except ValueError as exc:
        raise FunctionLoadError(f"cannot load the {name} function: {exc}") from None
    unsupported = [b["type"] for b in bindings if b is not trigger_binding and b.get("name") != "$return"]
    if unsupported:
        raise FunctionLoadError(
            f"cannot load the {name} function: bindings {unsupported} are not supported by the local host "
            "(it serves HTTP, timer and Event Grid triggers with an HTTP $return only)"
        )
    if trigger.type == HTTP_TRIGGER:
        if getattr(function, "http_type", "function") != "function":
            raise FunctionLoadError(
                f"cannot load the {name} function: ASGI/WSGI apps are not supported locally"
            )
        methods = trigger_binding.get("methods") or list(ALL_METHODS)
        entry.route = trigger_binding.get("route") or name
        entry.methods = tuple(str(m).upper() for m in methods)
        entry.auth_level = str(trigger_binding.get("authLevel", "FUNCTION")).lower()
        try:
            entry.template = compile_route(entry.route)
        except ValueError as exc:
            raise FunctionLoadError(
                f"cannot load the {name} function: route {entry.route!r}: {exc}"
            ) from None
    elif trigger.type == TIMER_TRIGGER:
        entry.schedule = trigger_binding.get("schedule")
        entry.run_on_startup = bool(trigger_binding.get("runOnStartup"))
    elif trigger.type not in SUPPORTED_TRIGGERS:
        raise FunctionLoadError(
            f"cannot load the {name} function: trigger {trigger.type!r} is not supported by the local host "
            f"(supported: {', '.join(SUPPORTED_TRIGGERS)})"
        )
    return entry


@dataclass
class FunctionRegistry:
    """The app's functions by name, in declaration order."""

    functions: dict[str, RegisteredFunction]
    script: Path

    @property
    def http_functions(self) -> list[RegisteredFunction]:
        return [f for f in self.functions.values() if f.is_http]

    def get(self, name: str) -> RegisteredFunction | None:
        """Case-insensitive, as function names are in the host."""
        if name in self.functions:
            return self.functions[name]
        lowered = name.lower()
        return next((f for n, f in self.functions.items() if n.lower() == lowered), None)


def load_registry(script: Path, environ: Mapping[str, str] | None = None) -> FunctionRegistry:
    """Import `script` and index its FunctionApp; every problem is a FunctionLoadError naming the fix."""
    env = os.environ if environ is None else environ
    if not script.is_file():
        raise FunctionLoadError(f"{script} not found; run from the project root or pass --app-dir")
    module = _import_script(script)
    app = find_function_app(module, script.name)
    try:
        functions = app.get_functions()
    except ValueError as exc:
        raise FunctionLoadError(f"indexing {script.name} failed: {exc}") from None
    registry: dict[str, RegisteredFunction] = {}
    for function in functions:
        entry = _describe(function, env)
        registry[entry.name] = entry
    return FunctionRegistry(registry, script)
