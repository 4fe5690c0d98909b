"""The one pager: the SDK's `by_page()`, with the next page requested while this one is decided.

Key Vault's lists are sequential (each page names the next), so a sweep's wall time approaches
pages × latency; asking for page n+1 as soon as page n arrives hides most of it. Every page is one
transaction through `VaultCalls` (limits, counting, the deadline), and a `nextLink` that points at
another host than the vault's is refused before the SDK follows it with the vault's bearer token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

from ..errors import VaultRejectedRequest
from .calls import VaultCalls
from .retry import current_counters
from .versions import SecretHistory, VersionInfo

PAGE_SIZE = 25  # Key Vault's maximum


def _same_host(next_link: str | None, vault_url: str) -> bool:
    if not next_link:
        return True
    return (urlsplit(next_link).hostname or "").lower() == (urlsplit(vault_url).hostname or "").lower()


async def pages(
    calls: VaultCalls, operation: str, list_call: Callable[..., Any], *args: Any, vault_url: str
) -> AsyncIterator[list[Any]]:
    """Yield the pages of `list_call(*args, max_page_size=25, ...)` as lists of SDK items."""
    options = await calls.admit()
    iterator = list_call(*args, max_page_size=PAGE_SIZE, **options).by_page()

    async def fetch() -> list[Any] | None:
        token = current_counters.set(calls)
        try:
            remaining = calls.deadline.remaining() if calls.deadline is not None else None
            async with asyncio.timeout(remaining):
                page = await iterator.__anext__()
                return [item async for item in page]
        except StopAsyncIteration:
            return None
        finally:
            current_counters.reset(token)

    pending: asyncio.Task[list[Any] | None] | None = asyncio.ensure_future(fetch())
    try:
        while pending is not None:
            items = await pending
            if items is None:
                return
            next_link = getattr(iterator, "continuation_token", None)
            if not _same_host(next_link, vault_url):
                raise VaultRejectedRequest(
                    f"Key Vault's {operation} answered a nextLink on another host "
                    f"({urlsplit(str(next_link)).hostname}); refusing to send the vault's token there."
                )
            if next_link:
                await calls.admit()
                pending = asyncio.ensure_future(fetch())
                await asyncio.sleep(0)  # let that request reach the wire before the caller decides this page
            else:
                pending = None
            yield items
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


async def one_page(
    calls: VaultCalls,
    operation: str,
    list_call: Callable[..., Any],
    *args: Any,
    vault_url: str,
    continuation_token: str | None = None,
) -> tuple[list[Any], str | None]:
    """One page (one transaction, no read-ahead) from `continuation_token` (None: the first page), and the
    token of the next page (None: the last). A token on another host than the vault's is refused."""
    for link in (continuation_token, None):
        if not _same_host(link, vault_url):
            raise VaultRejectedRequest(
                f"The continuation token of {operation} points at another host "
                f"({urlsplit(str(link)).hostname}); refusing to send the vault's token there."
            )
    options = await calls.admit()
    iterator = list_call(*args, max_page_size=PAGE_SIZE, **options).by_page(
        continuation_token=continuation_token
    )
    token = current_counters.set(calls)
    try:
        remaining = calls.deadline.remaining() if calls.deadline is not None else None
        async with asyncio.timeout(remaining):
            try:
                page = await iterator.__anext__()
                items = [item async for item in page]
            except StopAsyncIteration:
                return [], None
    finally:
        current_counters.reset(token)
    next_link = getattr(iterator, "continuation_token", None) or None
    if not _same_host(next_link, vault_url):
        raise VaultRejectedRequest(
            f"Key Vault's {operation} answered a nextLink on another host "
            f"({urlsplit(str(next_link)).hostname}); refusing to send the vault's token there."
        )
    return items, next_link


async def read_history(calls: VaultCalls, client: Any, name: str) -> SecretHistory:
    """All versions' properties (never values), 25 per page; empty when the secret does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    versions: list[VersionInfo] = []
    try:
        async for page in pages(
            calls,
            "GetSecretVersions",
            client.list_properties_of_secret_versions,
            name,
            vault_url=client.vault_url,
        ):
            versions.extend(VersionInfo.from_properties(p) for p in page)
    except ResourceNotFoundError:
        pass
    return SecretHistory.from_versions(name, versions)
