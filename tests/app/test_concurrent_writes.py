"""Identical writes that arrive together create one version; different values each get theirs.

Before: 50 identical PUTs sent at once to a new name answered 50 × 201 and made 50 versions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fixtures.app import InProcessApi, SecretValues

pytestmark = pytest.mark.usefixtures("app_env")


async def _versions(name: str) -> list[Any]:
    from shared.keyvault import get_secret_client

    client = await get_secret_client()
    return [v async for v in client.list_properties_of_secret_versions(name)]


@pytest.mark.parametrize("existing", [False, True])
async def test_fifty_identical_puts_at_once_make_one_version(
    api: InProcessApi, secret_values: SecretValues, existing: bool
) -> None:
    name = f"app-same-{'old' if existing else 'new'}"
    value = secret_values.new()
    before = 0
    if existing:
        await api.put(name, {"value": secret_values.new()})
        before = 1
    answers = await asyncio.gather(*(api.put(name, {"value": value}) for _ in range(50)))
    statuses = sorted(a.status for a in answers)
    assert statuses == ([200] * 49 + [201] if not existing else [200] * 50), statuses
    assert len({a.json["version"] for a in answers}) == 1  # every answer names the one version
    assert len(await _versions(name)) == before + 1


async def test_different_values_at_once_each_get_their_version(
    api: InProcessApi, secret_values: SecretValues
) -> None:
    answers = await asyncio.gather(*(api.put("app-many", {"value": secret_values.new()}) for _ in range(10)))
    assert sorted(a.status for a in answers) == [200] * 9 + [201], [a.text for a in answers]
    assert len({a.json["version"] for a in answers}) == 10
    assert len(await _versions("app-many")) == 10
