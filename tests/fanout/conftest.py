"""The fan-out tests' storage: the session's one Azurite (tests/fixtures/rotation.py, started by
localdev.azurite like the fleet's), under the name these tests use."""

from __future__ import annotations

import pytest

from tests.fixtures.rotation import require_azurite

__all__ = ["require_azurite"]


@pytest.fixture(scope="session")
def azurite_queues(azurite: str) -> str:
    """Azurite's connection string (blob + queue, in memory, free ports)."""
    return azurite
