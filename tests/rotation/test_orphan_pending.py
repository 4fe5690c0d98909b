"""Key Vault accepted the pending SetSecret but its response was lost (the vault's `drop_response` fault:
the write commits, then the connection is cut). The README's claim: the SDK's retry writes a second pending
version, the newer one is promoted, the orphan stays disabled and tagged pending, and cleanup ignores it.

Checked here end to end through the engine: exactly one promoted version, the one Key Vault serves as the
latest; the orphan disabled and pending; the next run writes nothing; cleanup leaves the orphan alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.fixtures.rotation import seed, versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")


def _promoted(versions: list[Any], original: str) -> list[Any]:
    return [
        v for v in versions if v.version != original and v.enabled and "RotationState" not in (v.tags or {})
    ]


async def test_a_lost_pending_set_response_converges_on_one_promoted_version(
    kv_client: Any, make_engine: Any, make_cleanup: Any, vault_clock: Any, vault_control: Any
) -> None:
    name = "orphan-pending"
    [seeded] = await seed(
        kv_client,
        [
            dict(
                name=name,
                value="before",
                tags={"ValidityPeriodDays": "60"},
                expires_on=vault_clock.now() + timedelta(days=1),
            )
        ],
    )
    original = seeded.properties.version
    vault_control.set_faults("SetSecret", 0, drop_response=True, count=1)
    first = await make_engine().sweep()
    assert vault_control.faults() == []  # the rule fired once: a pending write committed, its answer lost
    assert vault_control.stats()["dropped"] == 1
    assert first.errors == [], first.errors
    assert first.outcomes.get("Rotated") == 1, dict(first.outcomes)

    versions = await versions_of(kv_client, name)
    assert len(versions) == 3, [(v.version, v.enabled, v.tags) for v in versions]  # original, orphan, new
    [promoted] = _promoted(versions, original)
    [orphan] = [v for v in versions if v.version not in (original, promoted.version)]
    assert not orphan.enabled and orphan.tags["RotationState"] == "pending"
    assert orphan.tags["RotationOperationId"] == promoted.tags["RotationOperationId"]  # one rotation
    assert promoted.tags["RotationPreviousVersion"] == original
    latest = await kv_client.get_secret(name)
    assert latest.properties.version == promoted.version and latest.value != "before"
    assert next(v for v in versions if v.version == original).enabled  # the last good value stays

    again = await make_engine().sweep()  # the next run: converged, nothing more to write
    assert again.errors == [] and "Rotated" not in again.outcomes and "Resumed" not in again.outcomes
    await make_cleanup().sweep()
    after = await versions_of(kv_client, name)
    assert len(after) == 3
    assert not next(v for v in after if v.version == orphan.version).enabled
    assert (await kv_client.get_secret(name)).properties.version == promoted.version
