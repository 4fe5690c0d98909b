"""Notifications people act on: rotation failures, expiry without a rotation policy, expired secrets, poison
messages, and an optional daily digest, to a signed generic webhook, Teams Workflows and/or Slack.

Settings name Key Vault SECRETS, never hold a URL or a key:

- ``NOTIFY_WEBHOOK_URL_SECRET`` + ``NOTIFY_WEBHOOK_KEY_SECRET`` (a ``whsec_`` key): generic webhook, signed
  per Standard Webhooks.
- ``NOTIFY_TEAMS_URL_SECRET``: a Teams Workflows webhook URL (adaptive card).
- ``NOTIFY_SLACK_URL_SECRET``: a Slack incoming webhook URL (blocks).
- ``NOTIFY_EXPIRY_DAYS`` (30): how soon an unrotated secret's expiry is announced; ``NOTIFY_DIGEST`` (false);
  ``NOTIFY_DEDUP`` (auto | blob | memory); ``NOTIFY_BUDGET_SECONDS`` (20): the most one batch may take;
  ``NOTIFY_CA_BUNDLE``: an extra CA for a local receiver.

Nothing is imported, read or sent unless a ``*_URL_SECRET`` is set. Delivery never raises: a failed
notification is logged and counted, and the rotation that caused it is unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .events import DIGEST, EXPIRED, KINDS, NEAR_EXPIRY, POISONED, ROTATION_FAILED, Event

_log = logging.getLogger(__name__)

URL_SETTINGS = ("NOTIFY_WEBHOOK_URL_SECRET", "NOTIFY_TEAMS_URL_SECRET", "NOTIFY_SLACK_URL_SECRET")
CHANNEL_CACHE_SECONDS = 300.0


class NotifyConfigError(ValueError):
    """A NOTIFY_* setting is unusable; the message names it and the fix."""


@dataclass(frozen=True)
class NotifySettings:
    webhook_url_secret: str | None = None
    webhook_key_secret: str | None = None
    teams_url_secret: str | None = None
    slack_url_secret: str | None = None
    expiry_days: float = 30.0
    digest: bool = False
    dedup: str = "auto"
    budget_seconds: float = 20.0
    ca_bundle: str | None = None


def _get(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw.strip() if raw and raw.strip() else None


def configured(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return any(_get(env, name) for name in URL_SETTINGS)


def load(env: Mapping[str, str] | None = None) -> NotifySettings:
    env = os.environ if env is None else env

    def number(name: str, default: float, minimum: float) -> float:
        raw = _get(env, name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise NotifyConfigError(f"App setting {name}: expected a number, got {raw!r}") from None
        if not value >= minimum or value == float("inf"):
            raise NotifyConfigError(f"App setting {name}: must be a finite number of at least {minimum:g}")
        return value

    dedup = (_get(env, "NOTIFY_DEDUP") or "auto").lower()
    if dedup not in ("auto", "blob", "memory"):
        raise NotifyConfigError(f"App setting NOTIFY_DEDUP: expected auto, blob or memory, got {dedup!r}")
    webhook, key = _get(env, "NOTIFY_WEBHOOK_URL_SECRET"), _get(env, "NOTIFY_WEBHOOK_KEY_SECRET")
    if webhook and not key:
        raise NotifyConfigError(
            "App setting NOTIFY_WEBHOOK_KEY_SECRET is not set: a generic webhook is always signed; set it "
            "to the name of a Key Vault secret holding a whsec_ key"
        )
    digest_raw = (_get(env, "NOTIFY_DIGEST") or "false").lower()
    if digest_raw not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise NotifyConfigError(f"App setting NOTIFY_DIGEST: expected true or false, got {digest_raw!r}")
    return NotifySettings(
        webhook_url_secret=webhook,
        webhook_key_secret=key,
        teams_url_secret=_get(env, "NOTIFY_TEAMS_URL_SECRET"),
        slack_url_secret=_get(env, "NOTIFY_SLACK_URL_SECRET"),
        expiry_days=number("NOTIFY_EXPIRY_DAYS", 30.0, 0),
        digest=digest_raw in ("true", "1", "yes", "on"),
        dedup=dedup,
        budget_seconds=number("NOTIFY_BUDGET_SECONDS", 20.0, 1),
        ca_bundle=_get(env, "NOTIFY_CA_BUNDLE"),
    )


def settings_or_none() -> NotifySettings | None:
    """The NOTIFY_* settings, or None (logged with the setting's name and the fix) when one is unusable."""
    try:
        return load()
    except NotifyConfigError as exc:
        _log.error("notifications are off: %s", exc)
        return None


# ----------------------------------------------------------------------------- events from a sweep


def expiry_events(listed: Iterable[tuple[Any, Any]], now: datetime, vault: str, settings: Any) -> list[Event]:
    """Secrets in scope with no rotation policy whose current version expires within NOTIFY_EXPIRY_DAYS, or
    has expired. (A managed secret is rotated; if that fails, its failure is what is announced.)"""
    from ..scope import name_in_scope

    config = settings_or_none()
    if config is None:
        return []
    window = config.expiry_days
    events: list[Event] = []
    for info, assessment in listed:
        if assessment is not None or not info.enabled or info.expires_on is None:
            continue
        if settings is not None and not name_in_scope(info.name, settings):
            continue
        days = round((info.expires_on - now).total_seconds() / 86400, 1)
        if days > window:
            continue
        events.append(
            Event(
                kind=EXPIRED if days <= 0 else NEAR_EXPIRY,
                secret=info.name,
                vault=vault,
                version=info.version,
                expires_on=info.expires_on,
                days_to_expiry=days,
                reason="no rotation policy (no ValidityPeriodDays or RotationType tag)",
            )
        )
    return events


def digest_event(summary: Any, vault: str, settings: Any) -> Event | None:
    """Once a day (deduplicated like every event) when NOTIFY_DIGEST=true: the state the first sweep saw."""
    config = settings_or_none()
    if config is None or not config.digest:
        return None
    from ..outcomes import recent_outcomes

    recent = recent_outcomes().values()
    now = time.time()
    failed_24h = sum(1 for r in recent if r.outcome == "Failed" and now - r.at.timestamp() < 86400)
    rotated_24h = sum(
        1 for r in recent if r.outcome in ("Rotated", "Resumed") and now - r.at.timestamp() < 86400
    )
    detail: dict[str, Any] = {"Managed secrets": summary.managed}
    detail.update({f"Status {k}": v for k, v in sorted(summary.statuses.items())})
    detail["Rotated (24 h, this instance)"] = rotated_24h
    detail["Failed (24 h, this instance)"] = failed_24h
    return Event(kind=DIGEST, secret="*", vault=vault, detail=detail)


# ----------------------------------------------------------------------------- the process's notifier

Reader = Callable[[str], Awaitable[str]]
_override: Any = None
_cached: tuple[float, int, Any] | None = None


def use_notifier(notifier: Any) -> None:
    """Deliver through this Notifier (tests); None goes back to the one built from settings."""
    global _override, _cached
    _override, _cached = notifier, None


async def _read_from_vault(name: str) -> str:
    from ..keyvault import get_secret_client

    client = await get_secret_client()
    secret = await client.get_secret(name)
    return str(secret.value or "")


async def channels_from(config: NotifySettings, read: Reader) -> list[Any]:
    """The configured channels, their URLs and key read through `read` (Key Vault); a bad one is skipped."""
    from .delivery import SlackChannel, TeamsChannel, WebhookChannel

    channels: list[Any] = []
    wanted: list[tuple[str, str | None, Callable[..., Any], str | None]] = [
        ("NOTIFY_WEBHOOK_URL_SECRET", config.webhook_url_secret, WebhookChannel, config.webhook_key_secret),
        ("NOTIFY_TEAMS_URL_SECRET", config.teams_url_secret, TeamsChannel, None),
        ("NOTIFY_SLACK_URL_SECRET", config.slack_url_secret, SlackChannel, None),
    ]
    for setting, secret_name, make, key_name in wanted:
        if not secret_name:
            continue
        try:
            url = (await read(secret_name)).strip()
            channels.append(make(url, (await read(key_name)).strip()) if key_name else make(url))
        except ValueError as exc:  # our own messages: they name the problem, never the value
            _log.error("notifications: the secret %s names (%s) is unusable: %s", setting, secret_name, exc)
        except Exception as exc:  # noqa: BLE001 - one unreadable channel must not silence the others
            _log.error(
                "notifications: could not read the Key Vault secret %r that %s names (%s); create it, or "
                "grant the app's identity get on secrets",
                secret_name,
                setting,
                type(exc).__name__,
            )
    return channels


async def default_notifier(settings: Any = None) -> Any:
    """The process's Notifier (channels re-read from Key Vault every 5 minutes); None when none is set."""
    global _cached
    if _override is not None:
        return _override
    if not configured():
        return None
    loop_id = id(asyncio.get_running_loop())
    if (
        _cached is not None
        and _cached[1] == loop_id
        and time.monotonic() - _cached[0] < CHANNEL_CACHE_SECONDS
    ):
        return _cached[2]
    from .dedup import dedup_for
    from .delivery import Notifier, client_ssl_context

    config = settings_or_none()
    if config is None:
        return None
    channels = await channels_from(config, _read_from_vault)
    notifier = Notifier(
        channels, await dedup_for(settings, config.dedup), ssl_context=client_ssl_context(config.ca_bundle)
    )
    _cached = (time.monotonic(), loop_id, notifier)
    return notifier


async def deliver_safely(events: list[Event], *, settings: Any = None) -> list[Any]:
    """Deliver within NOTIFY_BUDGET_SECONDS; never raises (a notification must not fail a rotation)."""
    if not events:
        return []
    try:
        config = settings_or_none()
        notifier = None if config is None else await default_notifier(settings)
        if config is None or notifier is None:
            return []
        budget = config.budget_seconds
        return list(await asyncio.wait_for(notifier.send(events), budget))
    except Exception as exc:  # noqa: BLE001 - a notification must not fail a rotation
        _log.warning(
            "notifications: %d event(s) not delivered (%s); the run's result is unchanged",
            len(events),
            type(exc).__name__,
        )
        return []


__all__ = [
    "DIGEST",
    "EXPIRED",
    "KINDS",
    "NEAR_EXPIRY",
    "POISONED",
    "ROTATION_FAILED",
    "Event",
    "NotifyConfigError",
    "NotifySettings",
    "channels_from",
    "configured",
    "default_notifier",
    "deliver_safely",
    "digest_event",
    "expiry_events",
    "load",
    "use_notifier",
]
