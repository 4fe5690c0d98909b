"""Notifications: Standard Webhooks signatures (the published vector), channel payloads, delivery over real
TLS to a local receiver that verifies them, retries with backoff, dedup per (secret, version, kind, day) in
memory and in a blob (Azurite), channel URLs and keys read from the local Key Vault, no secret in payloads."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.notifications import (
    EXPIRED,
    NEAR_EXPIRY,
    ROTATION_FAILED,
    Event,
    NotifyConfigError,
    deliver_safely,
    expiry_events,
    load,
    payloads,
    signing,
)
from shared.notifications.dedup import BlobDedup, MemoryDedup
from shared.notifications.delivery import (
    Notifier,
    SlackChannel,
    TeamsChannel,
    WebhookChannel,
    client_ssl_context,
)
from tests.observe.conftest import Receiver, new_key

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def failed_event(**changes: Any) -> Event:
    fields: dict[str, Any] = dict(
        kind=ROTATION_FAILED,
        secret="app-db-password",
        vault="kv1",
        version="0123abcd",
        time=NOW,
        outcome="Failed",
        error_code="VaultUnavailable",
        reason="Key Vault answered HTTP 500 for a write; retry later.",
        rotation_type="random",
    )
    fields.update(changes)
    return Event(**fields)


# ----------------------------------------------------------------------------- signing


def test_signature_matches_the_standard_webhooks_published_example() -> None:
    # The example from the Standard Webhooks specification / reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_any_of_several_signatures_and_rejects_tampering_and_old_timestamps() -> None:
    key, other = new_key(), new_key()
    body = b'{"a":1}'
    good = signing.sign(key, "msg_1", 1000, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1000", "webhook-signature": good}
    assert signing.verify(key, headers, body, now=1000)
    rotated = {**headers, "webhook-signature": f"{signing.sign(other, 'msg_1', 1000, body)} {good}"}
    assert signing.verify(key, rotated, body, now=1100)
    assert not signing.verify(key, headers, b'{"a":2}', now=1000)
    assert not signing.verify(key, {**headers, "webhook-id": "msg_2"}, body, now=1000)
    assert not signing.verify(key, headers, body, now=1000 + 301)
    assert not signing.verify(other, headers, body, now=1000)


def test_a_bad_signing_key_is_refused_with_advice_and_without_echoing_it() -> None:
    for bad in ("not base64 !!", "whsec_" + "QUJD"):
        with pytest.raises(signing.SigningKeyError) as caught:
            WebhookChannel("https://example.invalid/hook", bad)
        assert bad not in str(caught.value) and "whsec_" in str(caught.value)


# ----------------------------------------------------------------------------- payloads (pure)


def test_generic_payload_is_a_cloudevent_whose_id_is_the_webhook_id() -> None:
    event = failed_event()
    body = payloads.generic(event)
    assert body == {
        "specversion": "1.0",
        "id": event.message_id,
        "source": "kvrotator/kv1",
        "type": "kvrotator.rotation.failed",
        "subject": "app-db-password",
        "time": "2026-12-02T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "vault": "kv1",
            "secret": "app-db-password",
            "version": "0123abcd",
            "outcome": "Failed",
            "error": {
                "code": "VaultUnavailable",
                "reason": "Key Vault answered HTTP 500 for a write; retry later.",
            },
            "rotationType": "random",
            "advice": "Read the reason, fix the target or the tags, then "
            "POST /api/secrets/app-db-password/rotate.",
        },
    }
    assert event.message_id == failed_event().message_id  # stable: the receiver's idempotency key
    assert event.message_id != failed_event(version="other").message_id
    assert event.message_id != failed_event(time=NOW + timedelta(days=1)).message_id


def test_teams_card_and_slack_blocks_have_the_shapes_their_webhooks_accept() -> None:
    event = failed_event()
    card = payloads.teams(event)
    assert card["type"] == "message" and len(card["attachments"]) == 1
    attachment = card["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = attachment["content"]
    assert content["type"] == "AdaptiveCard" and content["$schema"].endswith("adaptive-card.json")
    facts = {f["title"]: f["value"] for f in content["body"][1]["facts"]}
    assert facts["Secret"] == "app-db-password" and facts["Error"] == "VaultUnavailable"
    assert "actions" not in content  # no Action.Submit (Teams refuses it)

    slack = payloads.slack(event.__class__(**{**event.__dict__, "reason": "a <b> & c"}))
    assert slack["text"].startswith(":rotating_light: Rotation failed: app-db-password")
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "context"]
    fields = [f["text"] for f in slack["blocks"][1]["fields"]]
    assert "*Reason*\na &lt;b&gt; &amp; c" in fields  # mrkdwn control characters escaped


# ----------------------------------------------------------------------------- delivery over TLS


def notifier_for(receiver: Receiver, sleeps: list[float], **options: Any) -> Notifier:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    channels = [
        WebhookChannel(receiver.url("webhook"), receiver.key),
        TeamsChannel(receiver.url("teams")),
        SlackChannel(receiver.url("slack")),
    ]
    return Notifier(
        channels, MemoryDedup(), ssl_context=client_ssl_context(receiver.ca_bundle), sleep=sleep, **options
    )


async def test_each_channel_receives_its_payload_and_the_webhook_signature_verifies(
    receiver: Receiver,
) -> None:
    sleeps: list[float] = []
    event = failed_event()
    deliveries = await notifier_for(receiver, sleeps).send([event])
    assert sorted((d.channel, d.outcome, d.attempts) for d in deliveries) == [
        ("slack", "sent", 1),
        ("teams", "sent", 1),
        ("webhook", "sent", 1),
    ]
    [hook] = receiver.on("webhook")
    assert hook.signature_ok is True
    assert hook.headers["webhook-id"] == event.message_id == hook.json["id"]
    assert abs(int(hook.headers["webhook-timestamp"]) - time.time()) < 60
    assert hook.json["type"] == "kvrotator.rotation.failed" and hook.json["subject"] == "app-db-password"
    [teams] = receiver.on("teams")
    assert teams.json["attachments"][0]["content"]["type"] == "AdaptiveCard"
    assert "webhook-signature" not in {k.lower() for k in teams.headers}
    [slack] = receiver.on("slack")
    assert slack.json["blocks"][0]["text"]["text"] == "Rotation failed"
    assert sleeps == []


async def test_the_same_secret_version_kind_and_day_is_sent_once(receiver: Receiver) -> None:
    notifier = notifier_for(receiver, [])
    await notifier.send([failed_event()])
    again = await notifier.send([failed_event(time=NOW + timedelta(hours=5))])
    assert [d.outcome for d in again] == ["duplicate"]
    other = await notifier.send(
        [
            failed_event(version="newer"),
            failed_event(kind=EXPIRED),
            failed_event(time=NOW + timedelta(days=1)),
        ]
    )
    assert [d.outcome for d in other] == ["sent"] * 9
    assert len(receiver.received) == 3 + 9


async def test_transient_answers_are_retried_with_backoff_and_a_fresh_signature(receiver: Receiver) -> None:
    sleeps: list[float] = []
    notifier = Notifier(
        [WebhookChannel(receiver.url("webhook"), receiver.key)],
        MemoryDedup(),
        ssl_context=client_ssl_context(receiver.ca_bundle),
        sleep=lambda s: _record(sleeps, s),
    )
    receiver.script = [503, 429, 500]
    [delivery] = await notifier.send([failed_event()])
    assert (delivery.outcome, delivery.attempts, delivery.status) == ("sent", 4, 202)
    assert sleeps == [1.0, 2.0, 4.0]
    assert [r.signature_ok for r in receiver.received] == [True] * 4


async def _record(sleeps: list[float], seconds: float) -> None:
    sleeps.append(seconds)


async def test_teams_throttling_in_a_200_body_is_retried(receiver: Receiver) -> None:
    sleeps: list[float] = []
    notifier = Notifier(
        [TeamsChannel(receiver.url("teams"))],
        MemoryDedup(),
        ssl_context=client_ssl_context(receiver.ca_bundle),
        sleep=lambda s: _record(sleeps, s),
        attempts=2,
    )
    receiver.script = [200, 200]
    receiver.body_text = "Microsoft Teams endpoint returned HTTP error 429"
    [delivery] = await notifier.send([failed_event()])
    assert (delivery.outcome, delivery.attempts) == ("failed", 2) and sleeps == [1.0]


async def test_a_refused_delivery_is_not_retried_and_its_claim_is_released(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps: list[float] = []
    notifier = Notifier(
        [SlackChannel(receiver.url("slack"))],
        MemoryDedup(),
        ssl_context=client_ssl_context(receiver.ca_bundle),
        sleep=lambda s: _record(sleeps, s),
    )
    receiver.script = [404]
    with caplog.at_level(logging.WARNING):
        [delivery] = await notifier.send([failed_event()])
    assert (delivery.outcome, delivery.attempts, delivery.status) == ("failed", 1, 404) and sleeps == []
    assert receiver.base_url not in caplog.text  # the URL is a credential: never logged
    assert "not delivered to slack" in caplog.text
    [retried] = await notifier.send([failed_event()])  # released: the next run tries again
    assert retried.outcome == "sent"


async def test_an_unreachable_receiver_never_raises(receiver: Receiver) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    notifier = Notifier(
        [SlackChannel(f"https://localhost:{port}/x")],
        MemoryDedup(),
        ssl_context=client_ssl_context(receiver.ca_bundle),
        sleep=lambda s: _record(sleeps, s),
    )
    [delivery] = await notifier.send([failed_event()])
    assert (delivery.outcome, delivery.attempts, delivery.status) == ("failed", 4, None)
    assert sleeps == [1.0, 2.0, 4.0]


async def test_tls_is_verified_a_receiver_with_an_unknown_ca_gets_nothing(receiver: Receiver) -> None:
    notifier = Notifier([SlackChannel(receiver.url("slack"))], MemoryDedup(), attempts=1)  # system store only
    [delivery] = await notifier.send([failed_event()])
    assert delivery.outcome == "failed" and receiver.received == []


def test_plain_http_channel_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="https://"):
        SlackChannel("http://hooks.example/x")


# ----------------------------------------------------------------------------- settings and Key Vault


def test_settings_name_secrets_and_bad_ones_name_the_setting() -> None:
    assert load({}).webhook_url_secret is None
    with pytest.raises(NotifyConfigError, match="NOTIFY_WEBHOOK_KEY_SECRET"):
        load({"NOTIFY_WEBHOOK_URL_SECRET": "hook"})
    with pytest.raises(NotifyConfigError, match="NOTIFY_EXPIRY_DAYS"):
        load({"NOTIFY_EXPIRY_DAYS": "soon"})
    with pytest.raises(NotifyConfigError, match="NOTIFY_DEDUP"):
        load({"NOTIFY_DEDUP": "redis"})
    assert load({"NOTIFY_DIGEST": "true", "NOTIFY_EXPIRY_DAYS": "14"}).expiry_days == 14


async def test_channels_come_from_key_vault_and_no_secret_value_reaches_a_receiver(
    notify_env: Receiver, kv_client: Any, secret_values: Any, caplog: pytest.LogCaptureFixture
) -> None:
    value = secret_values.new()
    await kv_client.set_secret("app-watched", value, expires_on=datetime.now(UTC) + timedelta(days=3))
    props = [p async for p in kv_client.list_properties_of_secrets() if p.name == "app-watched"]
    from shared.vault.versions import VersionInfo

    [info] = [VersionInfo.from_properties(p) for p in props]
    events = expiry_events([(info, None)], datetime.now(UTC), "kv1", None)
    assert [e.kind for e in events] == [NEAR_EXPIRY]
    deliveries = await deliver_safely(events)
    assert sorted(d.channel for d in deliveries if d.outcome == "sent") == ["slack", "teams", "webhook"]
    bodies = [r.body.decode() for r in notify_env.received]
    assert all("app-watched" in b for b in bodies)
    assert not any(value in b for b in bodies)
    for stored in (notify_env.key, notify_env.url("webhook")):  # channel credentials never logged
        assert stored not in caplog.text
    assert notify_env.on("webhook")[0].json["data"]["daysToExpiry"] <= 3


async def test_a_missing_channel_secret_is_logged_with_advice_and_the_others_still_deliver(
    notify_env: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_TEAMS_URL_SECRET", "notify-missing")
    deliveries = await deliver_safely([failed_event(time=datetime.now(UTC))])
    assert sorted(d.channel for d in deliveries) == ["slack", "webhook"]
    assert "'notify-missing' that NOTIFY_TEAMS_URL_SECRET names" in caplog.text


async def test_delivery_within_the_budget_never_raises(
    notify_env: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_BUDGET_SECONDS", "1")
    from shared import notifications

    class Stuck:
        async def send(self, events: list[Event]) -> list[Any]:
            await asyncio.sleep(30)
            return []

    notifications.use_notifier(Stuck())
    started = time.monotonic()
    assert await deliver_safely([failed_event()]) == []
    assert time.monotonic() - started < 5


def test_expiry_events_cover_unrotated_secrets_only() -> None:
    from shared.vault.versions import VersionInfo

    soon = VersionInfo("app-soon", "v1", expires_on=NOW + timedelta(days=10))
    later = VersionInfo("app-later", "v1", expires_on=NOW + timedelta(days=45))
    gone = VersionInfo("app-gone", "v1", expires_on=NOW - timedelta(days=1))
    off = VersionInfo("app-off", "v1", enabled=False, expires_on=NOW - timedelta(days=1))
    managed = VersionInfo("app-managed", "v1", expires_on=NOW + timedelta(days=1))
    events = expiry_events(
        [(soon, None), (later, None), (gone, None), (off, None), (managed, object())], NOW, "kv1", None
    )
    assert [(e.secret, e.kind, e.days_to_expiry) for e in events] == [
        ("app-soon", NEAR_EXPIRY, 10.0),
        ("app-gone", EXPIRED, -1.0),
    ]


# ----------------------------------------------------------------------------- dedup across instances


async def test_blob_claims_hold_across_instances_and_a_release_frees_the_key(azurite: str) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    services = [BlobServiceClient.from_connection_string(azurite) for _ in range(2)]
    try:
        one, two = (BlobDedup(s.get_container_client("kvrotator-notify")) for s in services)
        key = failed_event().dedup_key
        first = await asyncio.gather(one.claim(key, "2026-12-02"), two.claim(key, "2026-12-02"))
        assert sorted(first) == [False, True]  # exactly one instance sends
        assert await two.claim(key, "2026-12-03")  # another day
        await one.release(key, "2026-12-02")
        assert await two.claim(key, "2026-12-02")
    finally:
        for service in services:
            await service.close()


async def test_an_unusable_notify_setting_is_logged_by_name_and_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL_SECRET", "notify-webhook-url")  # and no key secret
    assert await deliver_safely([failed_event()]) == []
    assert "notifications are off: App setting NOTIFY_WEBHOOK_KEY_SECRET is not set" in caplog.text
