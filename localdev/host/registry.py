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
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.functions import meta

from .retry import RetryPolicy, RetryPolicyError
from .routes import RouteTemplate, compile_route

_log = logging.getLogger("localdev.host")

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
QUEUE_TRIGGER = "queueTrigger"  # run by localdev.host.queues
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, TIMER_TRIGGER, EVENT_GRID_TRIGGER, QUEUE_TRIGGER)
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
    has_return: (
        bool  # a $return binding: without one, a function that returns a value fails (the worker's rule)
    )
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
    retry_policy: dict[str, Any] | None = None  # as declared (shown by the admin API)
    retry: RetryPolicy | None = None  # as read at load
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
                    f"More than one {app.__class__.__name__} or other top level function app instances "
                    "are defined."
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


def _load_error(name: str, message: str) -> FunctionLoadError:
    return FunctionLoadError(f"cannot load the {name} function: {message}")


def _check_annotations(
    name: str,
    user_function: Callable[..., Any],
    bindings: list[dict[str, Any]],
    declared: list[str],
) -> bool:
    """The worker's checks of the Python signature against the bindings; returns whether context is wanted.

    As azure-functions-runtime's Registry.add_indexed_function: `context` (when no binding has that name)
    must be annotated azure.functions.Context if annotated at all; every other parameter must have a
    binding of its name and the reverse; an annotation must be a type that the binding's converter accepts
    (str/bytes are always accepted, as the worker's generic binding); a return annotation must suit $return.
    """
    try:
        annotations = typing.get_type_hints(user_function)
    except (NameError, TypeError, AttributeError) as exc:  # the worker's get_type_hints fails alike
        raise _load_error(name, f"its annotations cannot be resolved ({type(exc).__name__}: {exc})") from None
    by_name = {b["name"]: b for b in bindings}
    params = list(declared)
    wants_context = "context" in params and "context" not in by_name
    if wants_context:
        params.remove("context")
        if "context" in annotations:
            anno = annotations["context"]
            if not isinstance(anno, type) or anno.__name__ != "Context":
                raise _load_error(
                    name,
                    'the "context" parameter is expected to be of type azure.functions.Context, got "'
                    + repr(anno)
                    + '"',
                )
    bound = {n for n in by_name if n != "$return"}
    if set(params) - bound:
        raise _load_error(
            name,
            "the following parameters are declared in Python but not in the function definition "
            f"(function.json or function decorators):  {set(params) - bound!r}",
        )
    if bound - set(params):
        raise _load_error(
            name,
            "Extra parameters in binding definition \u2014 the following parameters are declared as bindings "
            f"but are not present in Python: {bound - set(params)!r}",
        )
    registry = meta.get_binding_registry()
    for param in params:
        if param not in annotations:
            continue
        anno = annotations[param]
        binding_type = by_name[param]["type"]
        if not isinstance(anno, type) and typing.get_origin(anno) is None:
            raise _load_error(name, f"binding {param} has invalid non-type annotation {anno!r}")
        converter = None if anno in (str, bytes) else registry.get(binding_type)
        if converter is None:  # the worker's generic binding
            accepted = isinstance(anno, type) and issubclass(anno, (str, bytes))
        else:
            accepted = isinstance(anno, type) and converter.check_input_type_annotation(anno)
        if not accepted:
            raise _load_error(
                name,
                f'binding type "{param!r}" and dataType "{binding_type}" in the binding decorator do not '
                "match the corresponding function parameter's Python type annotation "
                f"{getattr(anno, '__name__', repr(anno))}",
            )
    output = by_name.get("$return")
    if output is not None and "return" in annotations:
        anno = annotations["return"]
        if not isinstance(anno, type):
            raise _load_error(name, f"has invalid non-type return annotation {anno!r}")
        converter = registry.get(output["type"])
        accepted = (
            converter.check_output_type_annotation(anno)
            if converter is not None
            else issubclass(anno, (str, bytes, bytearray))
        )
        if not accepted:
            raise _load_error(
                name,
                f'Python return annotation "{anno.__name__}" does not match binding type "{output["type"]}"',
            )
    return wants_context


def _describe(function: Any, environ: Mapping[str, str]) -> RegisteredFunction:
    name = function.get_function_name()
    trigger = function.get_trigger()
    if trigger is None:
        raise _load_error(name, "it has no trigger")
    user_function = function.get_user_function()
    declared = _parameter_names(user_function)
    function_json = json.loads(function.get_function_json())
    bindings = function_json.get("bindings", [])
    for binding in bindings:
        if binding.get("direction") == "INOUT":
            raise _load_error(name, '"inout" bindings are not supported')
        if binding.get("name") == "$return" and binding.get("direction") != "OUT":
            raise _load_error(name, '"$return" binding must have direction set to "out"')
    wants_context = _check_annotations(name, user_function, bindings, declared)
    try:  # read once here: a policy the worker refuses stops the host, as it stops indexing in Azure
        retry = RetryPolicy.from_setting(function.get_settings_dict("retry_policy"))
    except RetryPolicyError as exc:
        raise _load_error(name, str(exc)) from None
    trigger_binding = next(
        b for b in bindings if b.get("name") == trigger.name and b.get("direction") == "IN"
    )
    entry = RegisteredFunction(
        name=name,
        trigger_type=trigger.type,
        trigger_name=trigger.name,
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        wants_context=wants_context,
        has_return=any(b.get("name") == "$return" for b in bindings),
        binding=trigger_binding,
        function_json=function_json,
        disabled=_is_disabled(name, environ),
        retry_policy=function.get_settings_dict("retry_policy"),
        retry=retry,
    )
    unsupported = [b["type"] for b in bindings if b is not trigger_binding and b.get("name") != "$return"]
    if unsupported:
        raise _load_error(
            name,
            f"bindings {unsupported} are not supported by the local host "
            "(it serves HTTP, timer and Event Grid triggers with an HTTP $return only)",
        )
    if trigger.type == HTTP_TRIGGER:
        if getattr(function, "http_type", "function") != "function":
            raise _load_error(name, "ASGI/WSGI apps are not supported locally")
        methods = trigger_binding.get("methods") or list(ALL_METHODS)
        entry.route = trigger_binding.get("route") or name
        entry.methods = tuple(str(m).upper() for m in methods)
        entry.auth_level = str(trigger_binding.get("authLevel", "FUNCTION")).lower()
        try:
            entry.template = compile_route(entry.route)
        except ValueError as exc:
            raise _load_error(name, f"route {entry.route!r}: {exc}") from None
    elif trigger.type == TIMER_TRIGGER:
        entry.schedule = trigger_binding.get("schedule")
        entry.run_on_startup = bool(trigger_binding.get("runOnStartup"))
    elif trigger.type not in SUPPORTED_TRIGGERS:
        raise _load_error(
            name,
            f"trigger {trigger.type!r} is not supported by the local host "
            f"(supported: {', '.join(SUPPORTED_TRIGGERS)})",
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
