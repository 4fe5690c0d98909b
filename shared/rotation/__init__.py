"""Secret rotation: policy from tags (policy), rotators (rotators), the engine and its sweep (engine),
Key Vault events (events), run summaries (results). Triggers in blueprints/ call `default_engine()`."""

from __future__ import annotations

from ..vault.sweep import SweepSummary, last_summaries
from .engine import RotationEngine, RotationRequest
from .policy import RotationPolicy, SecretStatus
from .results import Outcome, RotationResult


async def default_engine(vault_url: str | None = None) -> RotationEngine:
    """An engine on the process's shared client of `vault_url` (default: the first configured vault)."""
    from ..keyvault import get_secret_client
    from ..locks import PROCESS_LOCKS, lease_lock_for
    from ..settings import get_settings
    from ..vault.calls import VaultCalls, process_limiters

    settings = get_settings()
    settings = settings.for_vault(vault_url) if vault_url else settings
    PROCESS_LOCKS.distributed = await lease_lock_for(settings)
    calls = VaultCalls(
        limiters=process_limiters(settings.vault_url), read_timeout=settings.request_timeout_seconds
    )
    return RotationEngine(await get_secret_client(settings.vault_url), settings, calls=calls)


__all__ = [
    "Outcome",
    "RotationEngine",
    "RotationPolicy",
    "RotationRequest",
    "RotationResult",
    "SecretStatus",
    "SweepSummary",
    "default_engine",
    "last_summaries",
]
