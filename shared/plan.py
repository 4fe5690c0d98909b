"""The plan: what the next rotation and cleanup would do, per managed secret, and the last real runs.

Both are dry runs (no writes), each within ROTATION_PLAN_BUDGET_SECONDS so that together they answer
inside the 230 s Azure gives an HTTP response."""

from __future__ import annotations

from typing import Any

from .cleanup import default_cleanup
from .rotation import default_engine
from .settings import get_settings
from .vault.sweep import last_summaries


async def rotation_plan(vault_url: str | None = None) -> dict[str, Any]:
    """The plan of one vault (default: the first configured one)."""
    settings = get_settings()
    url = vault_url or settings.vault_url
    budget = settings.plan_budget_seconds
    rotation = await (await default_engine(url)).sweep(
        dry_run=True, include_items=True, budget_seconds=budget
    )
    cleanup = await (await default_cleanup(url)).sweep(
        dry_run=True, include_items=True, budget_seconds=budget
    )
    return {
        "vault": url,
        "rotation": rotation.to_dict(with_items=True),
        "cleanup": cleanup.to_dict(with_items=True),
        "lastRuns": last_summaries(),
    }
