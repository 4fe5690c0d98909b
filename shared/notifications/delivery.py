"""Channels and delivery: POST each event to each channel, retried with backoff, deduplicated, never raising.

A channel's URL (and the webhook's signing key) is a credential: it is read from Key Vault, kept in
memory only, and never logged or put in an exception (a log line names the channel's kind).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import payloads, signing
from .dedup import Dedup
from .events import Event

_log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
TEAMS_THROTTLED = "returned HTTP error 429"  # Teams answers 200/202 with this text instead of a 429


class Channel:
    """One destination. `repr` never shows the URL or the key."""

    kind = "channel"

    def __init__(self, url: str) -> None:
        if not url.lower().startswith("https://"):
            raise ValueError(f"the {self.kind} URL must start with https://")
        self.url = url

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def payload(self, event: Event) -> dict[str, Any]:
        raise NotImplementedError

    def request(self, event: Event, timestamp: int) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(self.payload(event), separators=(",", ":"), ensure_ascii=False).encode()
        return body, {"content-type": "application/json"}

    def throttled(self, status: int, text: str) -> bool:
        return status == 429


class WebhookChannel(Channel):
    """A generic webhook signed per Standard Webhooks (webhook-id / webhook-timestamp / webhook-signature)."""

    kind = "webhook"

    def __init__(self, url: str, key: str) -> None:
        super().__init__(url)
        signing.decode_key(key)  # refuse a bad key now, with advice, rather than at every send
        self.key = key

    def payload(self, event: Event) -> dict[str, Any]:
        return payloads.generic(event)

    def request(self, event: Event, timestamp: int) -> tuple[bytes, dict[str, str]]:
        body, headers = super().request(event, timestamp)
        headers.update(
            {
                "webhook-id": event.message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signing.sign(self.key, event.message_id, timestamp, body),
            }
        )
        return body, headers


class TeamsChannel(Channel):
    kind = "teams"

    def payload(self, event: Event) -> dict[str, Any]:
        return payloads.teams(event)

    def throttled(self, status: int, text: str) -> bool:
        return status == 429 or TEAMS_THROTTLED in text


class SlackChannel(Channel):
    kind = "slack"

    def payload(self, event: Event) -> dict[str, Any]:
        return payloads.slack(event)


@dataclass(frozen=True)
class Delivery:
    kind: str
    channel: str
    secret: str
    outcome: str  # sent | duplicate | failed
    attempts: int = 0
    status: int | None = None


def client_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system store, plus a local CA (NOTIFY_CA_BUNDLE) when one is set: verification is never off."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class Notifier:
    def __init__(
        self,
        channels: list[Channel],
        dedup: Dedup,
        *,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.channels = channels
        self.dedup = dedup
        self.ssl_context = ssl_context or client_ssl_context(None)
        self.sleep = sleep
        self.clock = clock
        self.attempts = max(1, attempts)
        self.backoff = backoff_seconds
        self.max_backoff = max_backoff_seconds
        self.timeout = timeout_seconds

    async def send(self, events: list[Event]) -> list[Delivery]:
        """Deliver each event not yet delivered today to every channel; a claim is released when all fail."""
        import aiohttp

        deliveries: list[Delivery] = []
        if not self.channels or not events:
            return deliveries
        connector = aiohttp.TCPConnector(ssl=self.ssl_context)
        async with aiohttp.ClientSession(connector=connector, trust_env=True) as session:
            for event in events:
                if not await self.dedup.claim(event.dedup_key, event.day):
                    deliveries.append(Delivery(event.kind, "*", event.secret, "duplicate"))
                    _count("*", event.kind, "duplicate")
                    continue
                results = await asyncio.gather(*(self._post(session, c, event) for c in self.channels))
                if all(r.outcome == "failed" for r in results):
                    await self.dedup.release(event.dedup_key, event.day)  # the next run tries again
                deliveries.extend(results)
        return deliveries

    async def _post(self, session: Any, channel: Channel, event: Event) -> Delivery:
        import aiohttp

        status: int | None = None
        problem = ""
        attempt = 0
        for attempt in range(1, self.attempts + 1):
            body, headers = channel.request(event, int(self.clock()))  # re-signed: a fresh timestamp each try
            retry_after: float | None = None
            try:
                async with session.post(
                    channel.url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as response:
                    status = response.status
                    text = (await response.content.read(4096)).decode("utf-8", "replace")
                    retry_after = _seconds(response.headers.get("Retry-After"))
                problem = f"HTTP {status}"
                if 200 <= status < 300 and not channel.throttled(status, text):
                    _log.info(
                        "notification %s for %s sent to %s (attempt %d)",
                        event.kind,
                        event.secret,
                        channel.kind,
                        attempt,
                    )
                    _count(channel.kind, event.kind, "sent")
                    return Delivery(event.kind, channel.kind, event.secret, "sent", attempt, status)
                retryable = status in RETRY_STATUSES or channel.throttled(status, text)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                status, problem, retryable = (
                    None,
                    type(exc).__name__,
                    True,
                )  # the type only: messages quote the URL
            if not retryable or attempt == self.attempts:
                break
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            if retry_after is not None:
                delay = min(self.max_backoff, max(delay, retry_after))
            await self.sleep(delay)
        _log.warning(
            "notification %s for %s not delivered to %s after %d attempt(s): %s; check the channel URL "
            "secret and the receiver (the rotation itself is unaffected)",
            event.kind,
            event.secret,
            channel.kind,
            attempt,
            problem,
        )
        _count(channel.kind, event.kind, "failed")
        return Delivery(event.kind, channel.kind, event.secret, "failed", attempt, status)


def _seconds(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _count(channel: str, kind: str, outcome: str) -> None:
    from ..outcomes import notification_delivered

    notification_delivered(channel, kind, outcome)
