"""Azurite (blob + queue) for the fan-out tests: in memory, free ports, its connection string.

Started by `localdev.fleet.start_azurite` (the end-to-end fleet starts it the same way)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from localdev.fleet import FleetError, azurite_unavailable, start_azurite


def require_azurite() -> None:
    """Skip when Node.js is absent (fail under CI); fail when Node.js is there but Azurite is not."""
    reason = azurite_unavailable()
    if reason is None:
        return
    if reason.startswith("node is not installed"):
        if os.environ.get("CI"):
            pytest.fail("node is required on CI: the queue tests run Azurite")
        pytest.skip(reason)
    pytest.fail(reason)


@pytest.fixture(scope="session")
def azurite_queues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_azurite()
    try:
        azurite = start_azurite(tmp_path_factory.mktemp("azurite-q"))
    except FleetError as exc:
        pytest.fail(str(exc))
    try:
        yield azurite.connection_string
    finally:
        azurite.stop()
