"""Every property name in every resource body exists in Azure's REST model of that resource type (the
Azure management SDKs' generated models, read offline): a misspelt or misplaced property fails here, not at
deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra import bicep, schema

DECLARED = [r for r in bicep.all_resources() if not r.existing]


def test_every_resource_type_has_a_model_or_a_reason() -> None:
    types = {r.type for r in DECLARED}
    missing = types - set(schema.MODELS) - schema.UNCHECKED
    assert not missing, (
        f"add a model for {sorted(missing)} to tests/infra/schema.py MODELS (or to UNCHECKED, why)"
    )


@pytest.mark.parametrize(
    "resource", [r for r in DECLARED if r.type in schema.MODELS], ids=lambda r: r.where()
)
def test_property_names_match_the_rest_model(resource: bicep.Resource) -> None:
    problems = schema.unknown_properties(
        schema.model_of(resource.type),
        resource.config,
        resource.where(),
        identifiers=bicep.identifiers(resource.file),
    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("resource_type", "body", "wrong"),
    [
        ("Microsoft.KeyVault/vaults", {"properties": {"enablePurgeProtecton": True}}, "enablePurgeProtecton"),
        (
            "Microsoft.Web/sites",
            {"properties": {"functionAppConfig": {"runtime": {"name": "python", "verison": "3.11"}}}},
            "verison",
        ),
        (
            "Microsoft.EventGrid/systemTopics/eventSubscriptions",
            {"properties": {"destination": {"endpointType": "AzureFunction", "properties": {"url": "x"}}}},
            "url",
        ),
        ("Microsoft.Storage/storageAccounts", {"allowSharedKeyAccess": False}, "allowSharedKeyAccess"),
        (
            "Microsoft.Web/sites",
            {"properties": {"functionAppConfig": {"runtime": {"name": "pyhton"}}}},
            "'pyhton' is not one of",
        ),
        (
            "Microsoft.Web/sites",
            {
                "properties": {
                    "functionAppConfig": {
                        "deployment": {"storage": {"authentication": {"type": "UserAssigned"}}}
                    }
                }
            },
            "'UserAssigned' is not one of",
        ),
    ],
)
def test_a_wrong_name_is_caught(resource_type: str, body: dict[str, object], wrong: str) -> None:
    problems = schema.unknown_properties(schema.model_of(resource_type), body, resource_type)
    assert problems and wrong in problems[0], problems


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=bicep.rel)
def test_properties_read_from_resources_exist(path: Path) -> None:
    """`storage.properties.primaryEndpoints.blob` and the like: each read names a property the resource has."""
    problems = []
    for symbol, resource_type, chain, line in bicep.resource_references(path.read_bytes()):
        if chain[0] in schema.ARM_PROPERTIES or resource_type in schema.UNCHECKED:
            continue
        why = schema.missing_property(schema.read_model_of(resource_type), chain)
        if why:
            problems.append(f"{bicep.rel(path)}:{line} {symbol}.{'.'.join(chain)}: {why}")
    assert not problems, "\n".join(problems)


def test_a_wrong_read_is_caught() -> None:
    storage = schema.read_model_of("Microsoft.Storage/storageAccounts")
    assert schema.missing_property(storage, ["properties", "primaryEndpoints", "blob"]) is None
    assert "primaryEndpoint" in (
        schema.missing_property(storage, ["properties", "primaryEndpoint", "blob"]) or ""
    )
    vault = schema.read_model_of("Microsoft.KeyVault/vaults")
    assert "vaultUrl" in (schema.missing_property(vault, ["properties", "vaultUrl"]) or "")
