"""A timer's sweep over every configured vault: each vault has its own budget of Key Vault's limits, so
they are swept at once; one vault's failure does not stop the others, and the run fails (so the timer's
retry policy fires) if any vault could not be swept."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .settings import get_settings

_log = logging.getLogger(__name__)


async def every_vault(sweep: Callable[[str], Awaitable[None]]) -> None:
    urls = get_settings().vault_urls
    results = await asyncio.gather(*(sweep(url) for url in urls), return_exceptions=True)
    failed = [(url, r) for url, r in zip(urls, results, strict=True) if isinstance(r, BaseException)]
    for url, error in failed:
        _log.error("sweep of %s failed: %s", url, getattr(error, "message", type(error).__name__))
    if failed:
        raise failed[0][1]
