"""Pure payload builders per channel: generic (CloudEvents JSON), Teams (adaptive card), Slack (blocks)."""

from __future__ import annotations

from typing import Any

from .events import DIGEST, ROTATION_FAILED, Event

SOURCE = "kvrotator"


def _time(event: Event) -> str:
    return event.time.strftime("%Y-%m-%dT%H:%M:%SZ")


def facts(event: Event) -> list[tuple[str, str]]:
    """The human-readable facts every channel shows, in order; only those that are known."""
    rows: list[tuple[str, str | None]] = [
        ("Vault", event.vault),
        ("Secret", None if event.kind == DIGEST else event.secret),
        ("Version", event.version),
        ("Expires", event.expires_on.strftime("%Y-%m-%d %H:%M UTC") if event.expires_on else None),
        ("Days to expiry", f"{event.days_to_expiry:g}" if event.days_to_expiry is not None else None),
        ("Rotation type", event.rotation_type),
        ("Outcome", event.outcome),
        ("Error", event.error_code),
        ("Reason", event.reason),
        ("Trace", event.trace_id),
    ]
    if event.detail and event.kind == DIGEST:
        for key, value in event.detail.items():
            rows.append((key, str(value)))
    return [(k, v) for k, v in rows if v]


def generic(event: Event) -> dict[str, Any]:
    """CloudEvents 1.0 structured JSON; `id` equals the webhook-id header (the idempotency key)."""
    data: dict[str, Any] = {
        "vault": event.vault,
        "secret": event.secret,
        "version": event.version,
        "expiresOn": event.expires_on.strftime("%Y-%m-%dT%H:%M:%SZ") if event.expires_on else None,
        "daysToExpiry": event.days_to_expiry,
        "outcome": event.outcome,
        "error": {"code": event.error_code, "reason": event.reason}
        if event.error_code or event.reason
        else None,
        "rotationType": event.rotation_type,
        "traceId": event.trace_id,
        "advice": event.advice,
        "detail": event.detail,
    }
    return {
        "specversion": "1.0",
        "id": event.message_id,
        "source": f"{SOURCE}/{event.vault}",
        "type": f"{SOURCE}.{event.kind}",
        "subject": event.secret,
        "time": _time(event),
        "datacontenttype": "application/json",
        "data": {k: v for k, v in data.items() if v is not None},
    }


def teams(event: Event) -> dict[str, Any]:
    """A Teams Workflows ("Send webhook alerts to a channel") message: the adaptive-card envelope."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": event.title,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": "Attention" if event.kind != DIGEST else "Default",
        },
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts(event)]},
        {"type": "TextBlock", "text": event.advice, "wrap": True, "isSubtle": True},
    ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(event: Event) -> dict[str, Any]:
    """A Slack incoming-webhook message: header, fields, advice; `text` is the notification fallback."""
    icon = ":rotating_light:" if event.kind == ROTATION_FAILED else ":calendar:"
    rows = facts(event)
    fields = [{"type": "mrkdwn", "text": f"*{_mrkdwn(k)}*\n{_mrkdwn(v)}"} for k, v in rows[:10]]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": event.title[:150]}},
        {"type": "section", "fields": fields},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(event.advice)}]},
    ]
    subject = "" if event.kind == DIGEST else f" {event.secret}"
    return {"text": f"{icon} {event.title}:{subject} ({event.vault})", "blocks": blocks}
