"""Property names of the templates checked against Azure's own REST models, offline.

Without the Bicep CLI nothing would notice `enablePurgeProtecton` or a property nested one level too deep:
ARM would answer at deployment time. The Azure management SDKs on PyPI are generated from the same REST API
specs as Bicep's types, and each model class knows the wire names of its properties and their types. This
walks every literal object in a resource body against the model of its resource type (polymorphic parts by
their discriminator, e.g. an Event Grid destination's endpointType) and reports each name the model lacks.

The SDKs carry one (recent) API version per package; the templates pin older, stable ones. Properties are only
ever added across versions in these services, so a name the newest model lacks is a real mistake.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import sys
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

# Resource type -> (models module, class) of the body ARM takes on PUT.
MODELS: dict[str, tuple[str, str]] = {
    "Microsoft.Web/sites": ("azure.mgmt.web.models", "Site"),
    "Microsoft.Web/serverfarms": ("azure.mgmt.web.models", "AppServicePlan"),
    "Microsoft.Web/sites/config": ("azure.mgmt.web.models", "StringDictionary"),
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": (
        "azure.mgmt.web.models",
        "CsmPublishingCredentialsPoliciesEntity",
    ),
    "Microsoft.Storage/storageAccounts": ("azure.mgmt.storage.models", "StorageAccountCreateParameters"),
    "Microsoft.Storage/storageAccounts/blobServices": ("azure.mgmt.storage.models", "BlobServiceProperties"),
    "Microsoft.Storage/storageAccounts/blobServices/containers": (
        "azure.mgmt.storage.models",
        "BlobContainer",
    ),
    "Microsoft.Storage/storageAccounts/queueServices": (
        "azure.mgmt.storage.models",
        "QueueServiceProperties",
    ),
    "Microsoft.Storage/storageAccounts/queueServices/queues": ("azure.mgmt.storage.models", "StorageQueue"),
    "Microsoft.KeyVault/vaults": ("azure.mgmt.keyvault.models", "VaultCreateOrUpdateParameters"),
    "Microsoft.EventGrid/systemTopics": ("azure.mgmt.eventgrid.models", "SystemTopic"),
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": (
        "azure.mgmt.eventgrid.models",
        "EventSubscription",
    ),
    "Microsoft.Insights/metricAlerts": ("azure.mgmt.monitor.models", "MetricAlertResource"),
    "Microsoft.Insights/actionGroups": ("azure.mgmt.monitor.models", "ActionGroupResource"),
    "Microsoft.Insights/scheduledQueryRules": ("azure.mgmt.monitor.models", "ScheduledQueryRuleResource"),
    "Microsoft.Insights/components": (
        "azure.mgmt.applicationinsights.v2020_02_02.models",
        "ApplicationInsightsComponent",
    ),
    "Microsoft.OperationalInsights/workspaces": ("azure.mgmt.loganalytics.models", "Workspace"),
    "Microsoft.ManagedIdentity/userAssignedIdentities": ("azure.mgmt.msi.models", "Identity"),
    "Microsoft.Authorization/roleAssignments": (
        "azure.mgmt.authorization.v2022_04_01.models",
        "RoleAssignmentCreateParameters",
    ),
}
# No model on PyPI for these (a resource group has only name/location/tags; diagnostic settings' model left
# azure-mgmt-monitor 7); their bodies are checked by the policy tests instead.
UNCHECKED = {"Microsoft.Resources/resourceGroups", "Microsoft.Insights/diagnosticSettings"}
# Bicep's keywords in a resource body, and the resource name (the URL's last segment): not body properties.
BICEP_KEYWORDS = {"parent", "scope", "dependsOn", "name"}


@dataclass(frozen=True)
class Field:
    model: type | None  # the nested model, None for a scalar or a free-form object
    container: str | None = None  # "list" or "dict" of `model`
    choices: tuple[
        str, ...
    ] = ()  # the values of a string enum (TypeSpec models type them; msrest ones do not)


def model_of(resource_type: str) -> type:
    module, name = MODELS[resource_type]
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _package(cls: type) -> Any:
    return importlib.import_module(cls.__module__.rsplit(".", 1)[0])


def _typespec_field(annotation: Any, module: Any) -> Field:
    """Optional["_models.X"] / list[...] / dict[str, ...] -> Field."""
    namespace = {**vars(module), "_models": _package_of_module(module)}
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, namespace)  # the SDK's own annotation text, resolved in its module
        except Exception:
            return Field(None)
    if isinstance(annotation, typing.ForwardRef):
        return _typespec_field(annotation.__forward_arg__, module)
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _typespec_field(args[0], module)
        for arg in args:  # Union[str, SomeEnum]: an extensible enum; the known values are still the contract
            if isinstance(arg, typing.ForwardRef):
                try:
                    arg = eval(arg.__forward_arg__, namespace)
                except Exception:
                    continue
            if isinstance(arg, type) and issubclass(arg, enum.Enum):
                return Field(None, choices=tuple(str(member.value) for member in arg))
        return Field(None)
    if origin in (list, dict):
        inner = _typespec_field(typing.get_args(annotation)[-1], module)
        return Field(inner.model, "list" if origin is list else "dict")
    if isinstance(annotation, type) and hasattr(annotation, "_is_model"):
        return Field(annotation)
    return Field(None)


def _package_of_module(module: Any) -> Any:
    return importlib.import_module(module.__name__.rsplit(".", 1)[0])


@cache
def fields(cls: type) -> dict[str, Field]:
    """Wire name -> Field. msrest models flatten 'properties.x'; TypeSpec models nest `properties`."""
    out: dict[str, Field] = {}
    if hasattr(cls, "_attribute_map"):  # msrest (autorest) models
        package = _package(cls)
        for spec in cls._attribute_map.values():
            kind, container = spec["type"], None
            if kind.startswith("["):
                kind, container = kind[1:-1], "list"
            elif kind.startswith("{"):
                kind, container = kind[1:-1], "dict"
            nested = getattr(package, kind, None)
            out[spec["key"].replace("\\.", "\x00")] = Field(
                nested if isinstance(nested, type) else None, container
            )
        return out
    with contextlib.suppress(Exception):  # TypeSpec models fill their field table on first instantiation
        cls()
    module = sys.modules[cls.__module__]
    annotations: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        annotations.update(getattr(base, "__annotations__", {}))
    for attr, field in getattr(cls, "_attr_to_rest_field", {}).items():
        out[field._rest_name] = _typespec_field(annotations.get(attr), module)
    return out


def _subtype(cls: type, body: dict[str, Any]) -> type:
    """The concrete model a discriminator value names (msrest _subtype_map, TypeSpec __mapping__)."""
    subtypes = getattr(cls, "_subtype_map", None)
    if subtypes:
        for attr, mapping in subtypes.items():
            key = cls._attribute_map[attr]["key"].replace("\\.", ".")  # type: ignore[attr-defined]
            value = body.get(key)
            if isinstance(value, str) and value in mapping:
                return getattr(_package(cls), mapping[value])  # type: ignore[no-any-return]
    mapping = getattr(cls, "__mapping__", None)
    if mapping:
        for name, field in fields(cls).items():
            del field
            value = body.get(name)
            if isinstance(value, str) and value in mapping:
                return mapping[value]  # type: ignore[no-any-return]
    return cls


def _is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("operator", "function")


def _branches(value: Any) -> list[Any]:
    """A literal, or both branches of a conditional: what a value can be."""
    if _is_expression(value) and "operator" in value and value["operator"].get("type") == "conditional":
        operands = value["operator"]["operands"]
        return [*_branches(operands["true_value"]), *_branches(operands["false_value"])]
    return [value]


def unknown_properties(
    cls: type,
    body: dict[str, Any],
    where: str,
    *,
    top: bool = True,
    identifiers: frozenset[str] = frozenset(),
) -> list[str]:
    """Every key of the literal `body` (and of its nested literals) that `cls` has no property for, and every
    literal string outside an enum's values. `identifiers` are the file's names: pycep returns the identifier
    `location` and the literal 'location' alike, so a value that names one is not a literal."""
    problems: list[str] = []
    cls = _subtype(cls, {k.strip("'"): v for k, v in body.items()})
    table = fields(cls)
    flattened = {name.replace("\x00", "."): field for name, field in table.items()}

    def visit(prefix: str, value: Any) -> None:
        for key, item in value.items():
            name = prefix + key.strip("'")
            if top and not prefix and name in BICEP_KEYWORDS:
                continue
            if name in flattened:
                check(flattened[name], item, f"{where}.{name}")
            elif isinstance(item, dict) and any(f.startswith(name + ".") for f in flattened):
                visit(name + ".", item)
            else:
                known = sorted({f[len(prefix) :].split(".")[0] for f in flattened if f.startswith(prefix)})
                problems.append(
                    f"{where}: {cls.__name__} has no property {name.split('.')[-1]!r} (known: {known})"
                )

    def check(field: Field, value: Any, at: str) -> None:
        if field.choices:
            for candidate in _branches(value):
                literal = (
                    isinstance(candidate, str) and candidate not in identifiers and "${" not in candidate
                )
                if literal and candidate.lower() not in {c.lower() for c in field.choices}:
                    problems.append(f"{at}: {candidate!r} is not one of {list(field.choices)}")
            return
        if field.model is None:
            return
        for candidate in _branches(value):
            if _is_expression(candidate) or not isinstance(candidate, (dict, list)):
                continue
            if field.container == "list" and isinstance(candidate, list):
                for i, element in enumerate(candidate):
                    for option in _branches(element):
                        if isinstance(option, dict) and not _is_expression(option):
                            problems.extend(
                                unknown_properties(
                                    field.model, option, f"{at}[{i}]", top=False, identifiers=identifiers
                                )
                            )
            elif field.container == "dict" and isinstance(candidate, dict):
                for key, element in candidate.items():
                    if isinstance(element, dict) and not _is_expression(element):
                        problems.extend(
                            unknown_properties(
                                field.model, element, f"{at}.{key}", top=False, identifiers=identifiers
                            )
                        )
            elif field.container is None and isinstance(candidate, dict):
                problems.extend(
                    unknown_properties(field.model, candidate, at, top=False, identifiers=identifiers)
                )

    visit("", body)
    return problems


# What a GET returns, where it differs from the PUT body (reads like vault.properties.vaultUri).
READ_MODELS: dict[str, tuple[str, str]] = {
    "Microsoft.KeyVault/vaults": ("azure.mgmt.keyvault.models", "Vault"),
    "Microsoft.Storage/storageAccounts": ("azure.mgmt.storage.models", "StorageAccount"),
    "Microsoft.Authorization/roleAssignments": (
        "azure.mgmt.authorization.v2022_04_01.models",
        "RoleAssignment",
    ),
}
# Every ARM resource has these, whatever its model says.
ARM_PROPERTIES = {"id", "name", "type", "apiVersion"}


def read_model_of(resource_type: str) -> type:
    module, name = READ_MODELS.get(resource_type) or MODELS[resource_type]
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def missing_property(cls: type, path: list[str]) -> str | None:
    """Why `path` (e.g. ['properties', 'primaryEndpoints', 'blob']) is not a property of `cls`, or None."""
    table = {name.replace("\x00", "."): field for name, field in fields(cls).items()}
    prefix = ""
    for i, part in enumerate(path):
        name = prefix + part
        if name in table:
            field, rest = table[name], path[i + 1 :]
            if not rest or field.model is None or field.container:
                return None  # the end, or a scalar/free-form/collection value (not followed further)
            return missing_property(field.model, rest)
        if any(key.startswith(name + ".") for key in table):
            prefix = name + "."
            continue
        known = sorted({key[len(prefix) :].split(".")[0] for key in table if key.startswith(prefix)})
        return f"{cls.__name__} has no property {part!r} (known: {known})"
    return None
