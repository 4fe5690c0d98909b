"""The one pager: a listing's pages, the next one requested while this one is decided.

Key Vault's lists are sequential (each page names the next), so a sweep's wall time approaches
pages × latency; asking for page n+1 as soon as page n arrives hides most of it. Every page is one
transaction through `VaultCalls` (limits, counting, the deadline), and a `nextLink` that points at
another host than the vault's is refused before it is followed with the vault's bearer token.

A listing is a `PageFetch`: given a nextLink (None: the first page) and the call's options, one page's
items and the next link. `version_listing` reads GetSecrets / GetSecretVersions off the wire through the
client's own pipeline (`SecretClient.send_request`: the same challenge auth, retries and transport)
straight into `VersionInfo`. The SDK's generated models cost ~3 ms of CPU per 25-item page, most of a
scan's CPU (bench/fanout.py, profiled); a sweep decides on `VersionInfo` anyway. `sdk_listing` pages
any other SDK list call (deleted secrets) as the SDK models it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import VaultRejectedRequest
from .calls import VaultCalls
from .retry import current_counters
from .versions import SecretHistory, VersionInfo

PAGE_SIZE = 25  # Key Vault's maximum

PageFetch = Callable[[str | None, dict[str, float]], Awaitable[tuple[list[Any], str | None]]]


def _refuse_foreign(link: str | None, vault_url: str, operation: str, what: str) -> None:
    """A link (nextLink or continuation token) on another host than the vault's is never followed."""
    if link and (urlsplit(link).hostname or "").lower() != (urlsplit(vault_url).hostname or "").lower():
        raise VaultRejectedRequest(
            f"{what} of {operation} points at another host ({urlsplit(str(link)).hostname}); "
            "refusing to send the vault's token there."
        )


def sdk_listing(list_call: Callable[..., Any], *args: Any) -> PageFetch:
    """Pages of an SDK list call (`list_deleted_secrets`, ...), its items as the SDK models them."""

    async def fetch(link: str | None, options: dict[str, float]) -> tuple[list[Any], str | None]:
        iterator = list_call(*args, max_page_size=PAGE_SIZE, **options).by_page(continuation_token=link)
        try:
            page = await iterator.__anext__()
        except StopAsyncIteration:
            return [], None
        items = [item async for item in page]
        return items, getattr(iterator, "continuation_token", None) or None

    return fetch


def version_listing(client: Any, name: str | None = None) -> PageFetch:
    """GetSecrets (name None) or GetSecretVersions of `name`, each item read into a `VersionInfo`.

    Errors are raised as the SDK raises them (the same azure-core exception types, the KeyVaultError
    body parsed into `.error`), so `from_vault_error` maps them alike."""
    path = "/secrets" if name is None else f"/secrets/{quote(name, safe='')}/versions"

    async def fetch(link: str | None, options: dict[str, float]) -> tuple[list[Any], str | None]:
        from azure.core.rest import HttpRequest

        request = HttpRequest("GET", link or f"{path}?maxresults={PAGE_SIZE}")
        response = await client.send_request(request, **options)
        if response.status_code != 200:
            _raise_for(response)
        body = response.json()
        items = [VersionInfo.from_wire(item) for item in body.get("value") or ()]
        return items, body.get("nextLink") or None

    return fetch


def _raise_for(response: Any) -> None:
    """What the SDK's generated list operations raise for a non-200 answer."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ResourceNotModifiedError,
        map_error,
    )

    error_map = {
        401: ClientAuthenticationError,
        404: ResourceNotFoundError,
        409: ResourceExistsError,
        304: ResourceNotModifiedError,
    }
    map_error(status_code=response.status_code, response=response, error_map=error_map)
    raise HttpResponseError(response=response)


async def _fetch_under(
    calls: VaultCalls, fetch: PageFetch, link: str | None, options: dict[str, float]
) -> tuple[list[Any], str | None]:
    """One page, counted by the call wrapper's retry counters and bounded by its deadline."""
    token = current_counters.set(calls)
    try:
        remaining = calls.deadline.remaining() if calls.deadline is not None else None
        async with asyncio.timeout(remaining):
            return await fetch(link, options)
    finally:
        current_counters.reset(token)


async def pages(
    calls: VaultCalls, operation: str, fetch: PageFetch, *, vault_url: str
) -> AsyncIterator[list[Any]]:
    """Yield a listing's pages, from the first to the last."""
    options = await calls.admit()
    pending: asyncio.Task[tuple[list[Any], str | None]] | None = asyncio.ensure_future(
        _fetch_under(calls, fetch, None, options)
    )
    try:
        while pending is not None:
            items, next_link = await pending
            _refuse_foreign(next_link, vault_url, operation, "The nextLink")
            if next_link:
                options = await calls.admit()
                pending = asyncio.ensure_future(_fetch_under(calls, fetch, next_link, options))
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
    fetch: PageFetch,
    *,
    vault_url: str,
    continuation_token: str | None = None,
) -> tuple[list[Any], str | None]:
    """One page (one transaction, no read-ahead) from `continuation_token` (None: the first page), and the
    token of the next page (None: the last). A token on another host than the vault's is refused."""
    _refuse_foreign(continuation_token, vault_url, operation, "The continuation token")
    options = await calls.admit()
    items, next_link = await _fetch_under(calls, fetch, continuation_token, options)
    _refuse_foreign(next_link, vault_url, operation, "The nextLink")
    return items, next_link


async def read_history(calls: VaultCalls, client: Any, name: str) -> SecretHistory:
    """All versions' properties (never values), 25 per page; empty when the secret does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    versions: list[VersionInfo] = []
    try:
        async for page in pages(
            calls, "GetSecretVersions", version_listing(client, name), vault_url=client.vault_url
        ):
            versions.extend(page)
    except ResourceNotFoundError:
        pass
    return SecretHistory.from_versions(name, versions)
