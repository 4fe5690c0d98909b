"""The one retry layer: azure-core's, told to retry what it leaves alone by default.

azure-core retries 408/429/5xx and dropped connections, but only for the methods it deems idempotent:
a 429 on PATCH (update_secret_properties) or POST (recover) without Retry-After fails at once, and a
connection dropped under one is not retried. Key Vault's PATCH and POST are safe to repeat with the
same body, so this policy retries every method. Nothing above it retries again: one failing call costs
at most `retry_total + 1` HTTP requests, and `timeout` (what is left of the caller's budget, passed per
call by `shared.vault.calls`) bounds the whole of it, sleeps included.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.pipeline.policies import AsyncRetryPolicy, SansIOHTTPPolicy

# The counters of whichever VaultCalls made the request in this task (see calls.VaultCalls.call).
current_counters: contextvars.ContextVar[Any] = contextvars.ContextVar("vault_counters", default=None)

RETRY_AFTER_CAP_SECONDS = 60.0


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Key Vault's wait hint: retry-after-ms / x-ms-retry-after-ms (milliseconds) or Retry-After
    (seconds or an HTTP date), capped at a minute; None without one. The only parser in the app."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for header, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = lowered.get(header)
        if raw is None:
            continue
        try:
            seconds = float(raw) * scale
        except ValueError:
            import email.utils  # an HTTP date is rare; not worth its import at cold start

            try:
                parsed = email.utils.parsedate_to_datetime(raw) if header == "retry-after" else None
            except (TypeError, ValueError):
                parsed = None
            if parsed is None:
                continue
            seconds = parsed.timestamp() - time.time()
        return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)
    return None


def retry_after_of(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    return retry_after_seconds(getattr(response, "headers", None))


def build_retry_policy(retry_total: int, backoff_seconds: float) -> AsyncRetryPolicy[Any, Any]:
    """KEY_VAULT_RETRY_TOTAL retries at most, backing off from KEY_VAULT_RETRY_BACKOFF_SECONDS."""
    from azure.core.pipeline.policies import AsyncRetryPolicy

    class VaultRetryPolicy(AsyncRetryPolicy[Any, Any]):
        """azure-core's retry on every method (Key Vault's PATCH and POST are safe to repeat)."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._method_whitelist = frozenset(
                ["HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "POST"]
            )

    return VaultRetryPolicy(
        # azure-core also caps status, connect and read retries separately (3 each by default): one budget
        retry_total=retry_total,
        retry_status=retry_total,
        retry_connect=retry_total,
        retry_read=retry_total,
        retry_backoff_factor=backoff_seconds,
        retry_backoff_max=8,
    )


def build_request_counter() -> SansIOHTTPPolicy[Any, Any]:
    """A per-retry policy that counts each HTTP request and each 429 for the VaultCalls that made it."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class RequestCounter(SansIOHTTPPolicy[Any, Any]):
        def on_request(self, request: Any) -> None:
            counters = current_counters.get()
            if counters is not None:
                counters.requests += 1

        def on_response(self, request: Any, response: Any) -> None:
            counters = current_counters.get()
            if counters is not None and response.http_response.status_code == 429:
                counters.throttled += 1

    return RequestCounter()
