"""The fan-out's steps (shared.fanout) against the local Key Vault (real SDK, managed identity, verified TLS)
and Azurite's queues (real azure-storage-queue): the timer's scan messages, paged scans with paced rotate
messages, idempotent rotations within the inline sweep's transaction budget, 429 re-enqueues, poison, Key
Vault events through a queue, cleanup, a rejected continuation token, and the timers in SWEEP_MODE=queue.

Each test drives a `Fanout` with an injected clock and jitter. Its outbox is either the real StorageOutbox
on Azurite wrapped by a recorder ("Azurite" below), or the recorder alone ("recording") where the test is
about a step's own logic; every test's docstring says which. Every body sent anywhere is checked to carry
no seeded or rotated value; the autouse leak guard (tests/conftest.py) checks every log record.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from shared.fanout import POISONED, Fanout, MessageError, RotateMessage, ScanMessage, decode, encode
from shared.fanout.messages import listed_version, operation_id
from shared.fanout.steps import MAX_REQUEUE_DELAY, MAX_REQUEUES
from tests.fixtures.app import SecretValues
from tests.fixtures.rotation import seed, versions_of

DUE = {"ValidityPeriodDays": "60"}  # due within min(30, 60/2) = 30 days of expiry
OWNED = {"ManagedBy": "keyvault-secrets-functions"}
T0 = 1_800_000_000.0  # the fan-out's injected unix clock: delays are exact


@dataclass(frozen=True)
class Sent:
    queue: str
    body: str
    delay: float


class RecordingOutbox:
    """Records every send; forwards it to `inner` (the real StorageOutbox on Azurite) when given."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.sent: list[Sent] = []

    async def send(self, queue: str, body: str, *, delay: float = 0.0) -> None:
        self.sent.append(Sent(queue, body, delay))
        if self.inner is not None:
            await self.inner.send(queue, body, delay=delay)

    def on(self, queue: str) -> list[Sent]:
        return [s for s in self.sent if s.queue == queue]

    def messages(self, queue: str) -> list[Any]:
        return [decode(s.body) for s in self.on(queue)]


def assert_value_free(bodies: list[str], values: SecretValues) -> None:
    """No seeded or rotated value in any body (never print the value: say which body)."""
    assert values.values, "the test registered no value to look for"
    leaked = [i for i, body in enumerate(bodies) if values.leaked_into(body)]
    assert not leaked, f"a secret value is in message body #{leaked}"


def skip_marker(next_link: str) -> Any:
    """The NextMarker inside the local vault's $skiptoken (base64 of JSON, localdev/vault/store.py)."""
    token = dict(parse_qsl(urlsplit(next_link).query))["$skiptoken"]
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["NextMarker"]


def op_diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


@pytest.fixture
async def fan_env(
    rotation_env: dict[str, str],
    vault_control: Any,
    azurite_queues: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[dict[str, str]]:
    """The app's settings for queue mode on Azurite (fresh queue names per test, so no test sees another's
    messages); the shared vault client, the lease and the process outbox are closed at teardown."""
    from shared import keyvault
    from shared.fanout.queues import close_outbox
    from shared.locks import close_lease_lock
    from shared.settings import get_settings

    prefix = f"t{uuid.uuid4().hex[:12]}"
    env = {
        "AzureWebJobsStorage": azurite_queues,
        "SWEEP_MODE": "queue",
        "FANOUT_SCAN_QUEUE": f"{prefix}-scan",
        "FANOUT_ROTATE_QUEUE": f"{prefix}-rotate",
        "FANOUT_CLEANUP_QUEUE": f"{prefix}-cleanup",
        "FANOUT_EVENTS_QUEUE": f"{prefix}-events",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    await keyvault.close_secret_client()
    try:
        yield {**rotation_env, **env}
    finally:
        await close_outbox()
        await close_lease_lock()
        await keyvault.close_secret_client()
        get_settings.cache_clear()


@pytest.fixture
async def client(fan_env: dict[str, str]) -> Any:
    """The app's shared aio client of the first vault (closed by fan_env)."""
    from shared.keyvault import get_secret_client

    return await get_secret_client()


@pytest.fixture
def settings(fan_env: dict[str, str]) -> Any:
    from shared.settings import get_settings

    return get_settings()


@pytest.fixture
async def storage(fan_env: dict[str, str]) -> AsyncIterator[Any]:
    """A QueueServiceClient of our own on Azurite, for reading what the steps sent."""
    from azure.storage.queue.aio import QueueServiceClient

    service = QueueServiceClient.from_connection_string(fan_env["AzureWebJobsStorage"])
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture
async def azurite_outbox(storage: Any, fan_env: dict[str, str]) -> AsyncIterator[RecordingOutbox]:
    """The real StorageOutbox on Azurite, recorded."""
    from azure.storage.queue.aio import QueueServiceClient

    from shared.fanout.queues import StorageOutbox

    inner = StorageOutbox(QueueServiceClient.from_connection_string(fan_env["AzureWebJobsStorage"]))
    try:
        yield RecordingOutbox(inner)
    finally:
        await inner.close()


def make_fanout(settings: Any, outbox: Any, now: Callable[[], datetime] | None = None) -> Fanout:
    return Fanout(
        settings,
        outbox,
        now=now or (lambda: datetime.now(UTC)),
        unix=lambda: T0,
        rng=random.Random(20261203),
    )


async def drain(storage: Any, queue: str) -> list[str]:
    """Every visible message of `queue`, base64-decoded as the host does, deleted once read."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import TextBase64DecodePolicy

    queue_client = storage.get_queue_client(queue, message_decode_policy=TextBase64DecodePolicy())
    bodies: list[str] = []
    try:
        while True:
            batch = [m async for m in queue_client.receive_messages(max_messages=32, visibility_timeout=60)]
            if not batch:
                return bodies
            for message in batch:
                bodies.append(message.content)
                await queue_client.delete_message(message)
    except ResourceNotFoundError:
        return bodies  # never created: nothing was sent to it


async def seed_sixty(client: Any, values: SecretValues, now: datetime) -> list[str]:
    """60 secrets (three pages of 25), every third due; returns the due names in listing order."""
    specs = []
    for i in range(60):
        expires = now + timedelta(days=5 if i % 3 == 0 else 50)
        specs.append(dict(name=f"fan-{i:03d}", value=values.new(), tags=DUE, expires_on=expires))
    await seed(client, specs)
    return [f"fan-{i:03d}" for i in range(0, 60, 3)]


async def run_scans(fanout: Fanout, outbox: RecordingOutbox, queue: str, first: str) -> list[Any]:
    """Hand each scan message the steps send to the scan step, as the queue would, until none follows."""
    results, pending, seen = [], [first], len(outbox.on(queue))
    while pending:
        results.append(await fanout.handle("scan", pending.pop(0)))
        fresh = outbox.on(queue)[seen:]
        seen += len(fresh)
        pending.extend(s.body for s in fresh)
        assert len(results) < 50, "the scan chain does not end"
    return results


# ---------------------------------------------------------------------------------------------- 1


async def test_start_sweeps_sends_one_base64_scan_message_per_vault(
    fan_env: dict[str, str], storage: Any, azurite_outbox: RecordingOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Azurite. Two names of the local vault (as test_many_vaults): one scan message each, one sweep id,
    and on the wire (read without a decode policy) the base64 of the message's JSON, as the host expects."""
    from shared.settings import get_settings

    second = fan_env["KEY_VAULT_URL"].replace("localhost", "127.0.0.1")
    monkeypatch.setenv("KEY_VAULT_URLS", second)
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.vault_urls == (fan_env["KEY_VAULT_URL"], second)

    sent = await make_fanout(settings, azurite_outbox).start_sweeps("rotation")

    assert [m.vault for m in sent] == list(settings.vault_urls)
    raw = storage.get_queue_client(settings.scan_queue)  # no decode policy: the bytes as stored
    stored = [m.content for m in await raw.peek_messages(max_messages=32)]
    assert len(stored) == 2
    documents = []
    for content in stored:
        assert not content.lstrip().startswith("{"), "plain JSON on the wire: the host would poison it"
        text = base64.b64decode(content, validate=True).decode("utf-8")
        assert text in {encode(m) for m in sent}
        documents.append(json.loads(text))
    assert {d["vault"] for d in documents} == set(settings.vault_urls)
    assert {d["sweep_id"] for d in documents} == {sent[0].sweep_id}
    assert all(d["schema"] == 1 and d["type"] == "scan" and d["page"] == 0 for d in documents)
    assert all("token" not in d and d["kind"] == "rotation" for d in documents)
    from shared.settings import load_settings

    default = load_settings({"KEY_VAULT_URL": "https://a.vault.azure.net"}).fanout_creates_per_second
    assert default == 20.0  # under Key Vault's 30 creates/s; the benchmark sets its own


# ---------------------------------------------------------------------------------------------- 2


async def test_a_scan_lists_one_page_per_message_and_paces_the_due_rotations_across_pages(
    client: Any, settings: Any, vault_control: Any, secret_values: SecretValues
) -> None:
    """Recording (the step's logic): 60 secrets are three pages; each scan message is one GetSecrets; only
    the due secrets get rotate messages; the token chains to the next scan; the i-th due secret waits
    i / FANOUT_CREATES_PER_SECOND seconds whichever page it is on; the last page sends no follow-up."""
    due = await seed_sixty(client, secret_values, datetime.now(UTC))
    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox)
    before = vault_control.stats()["operations"]

    [start] = await fanout.start_sweeps("rotation")
    results = await run_scans(fanout, outbox, settings.scan_queue, outbox.on(settings.scan_queue)[0].body)

    assert op_diff(before, vault_control.stats()["operations"]) == {"GetSecrets": 3}
    assert [r.outcome for r in results] == ["Scanned"] * 3
    assert [(r.details["page"], r.details["listed"]) for r in results] == [(0, 25), (1, 25), (2, 10)]
    assert [r.details["more"] for r in results] == [True, True, False]
    scans = outbox.messages(settings.scan_queue)
    assert [s.page for s in scans] == [0, 1, 2] and scans[0].token is None
    assert all(s.token and urlsplit(s.token).hostname == "localhost" for s in scans[1:])
    # the vault's own nextLink, whose $skiptoken (the local vault's format) resumes after the page's last name
    assert [skip_marker(s.token) for s in scans[1:]] == ["fan-024", "fan-049"]
    assert scans[1].token != scans[2].token and {s.sweep_id for s in scans} == {start.sweep_id}
    rate = settings.fanout_creates_per_second
    assert scans[1].next_slot == pytest.approx(T0 + 9 / rate)  # page 0 held fan-000..fan-024: 9 due
    assert scans[2].next_slot == pytest.approx(T0 + 17 / rate)

    rotations = sorted(outbox.on(settings.rotate_queue), key=lambda s: s.delay)
    messages = [decode(s.body) for s in rotations]
    assert [m.name for m in messages] == due  # listing order, each once, nothing that is not due
    assert [s.delay for s in rotations] == pytest.approx([i / rate for i in range(len(due))])
    current = {p.name: p async for p in client.list_properties_of_secrets()}
    for message in messages:
        assert isinstance(message, RotateMessage) and message.source == "sweep"
        listed = current[message.name]
        assert message.version == listed.version
        # the version it replaces, as the listing names it (Key Vault lists no version: `updated` stands in)
        replaced = listed_version(listed.version, listed.updated_on)
        assert replaced and message.op_id == operation_id(
            settings.vault_url, message.name, replaced, "rotate"
        )
    assert_value_free([s.body for s in outbox.sent], secret_values)


# ---------------------------------------------------------------------------------------------- 3


async def test_scan_then_rotate_over_azurite_rotates_each_due_secret_once_within_the_budget(
    caplog: pytest.LogCaptureFixture,
    client: Any,
    settings: Any,
    storage: Any,
    azurite_outbox: RecordingOutbox,
    vault_control: Any,
    secret_values: SecretValues,
) -> None:
    """Azurite, the whole chain: timer → scan messages → rotate messages, each read back from its queue and
    handed to its step. Transactions = ⌈N/25⌉ + 3 × due (the inline sweep's budget); every due secret has
    exactly one new version; a rotate message delivered again (twice at once, then once more) is a no-op;
    an event-source message about a version that is no longer current is a no-op."""
    due = await seed_sixty(client, secret_values, datetime.now(UTC))
    fanout = make_fanout(settings, azurite_outbox)
    before = vault_control.stats()["operations"]

    await fanout.start_sweeps("rotation")
    scanned = 0
    while bodies := await drain(storage, settings.scan_queue):
        for body in bodies:
            assert (await fanout.handle("scan", body)).outcome == "Scanned"
            scanned += 1
    assert scanned == 3
    rotate_bodies = await drain(storage, settings.rotate_queue)  # at 20/s, 20 rotations wait < 1 s
    assert len(rotate_bodies) == len(due)
    results = await asyncio.gather(*(fanout.handle("rotate", b) for b in rotate_bodies))

    assert sorted(r.name for r in results) == due and {r.outcome for r in results} == {"Rotated"}
    count = len(due)
    assert op_diff(before, vault_control.stats()["operations"]) == {
        "GetSecrets": 3,  # ⌈60/25⌉
        "GetSecretVersions": count,
        "SetSecret": count,
        "UpdateSecret": count,
    }
    assert vault_control.stats()["total"] - sum(before.values()) == 3 + 3 * count

    duplicate = rotate_bodies[0]
    name = decode(duplicate).name  # type: ignore[union-attr]
    again = await asyncio.gather(fanout.handle("rotate", duplicate), fanout.handle("rotate", duplicate))
    again.append(await fanout.handle("rotate", duplicate))
    assert [r.outcome for r in again] == ["NotDue"] * 3
    [old] = [v for v in await versions_of(client, name) if "RotationOperationId" not in (v.tags or {})]
    stale = RotateMessage(
        vault=settings.vault_url,
        name=name,
        op_id=operation_id(settings.vault_url, name, old.version, "rotate"),
        version=old.version,
        source="event",
    )
    ops = vault_control.stats()["operations"]
    assert (await fanout.handle("rotate", encode(stale))).outcome == "Stale"
    assert op_diff(ops, vault_control.stats()["operations"]) == {"GetSecretVersions": 1}  # no write

    for i in range(60):
        versions = await versions_of(client, f"fan-{i:03d}")
        assert len(versions) == (2 if f"fan-{i:03d}" in due else 1), f"fan-{i:03d}"
    for name in due:  # the rotated values, so no body and no log record may hold them either
        secret_values.register((await client.get_secret(name)).value)
    assert_value_free([s.body for s in azurite_outbox.sent], secret_values)
    assert await drain(storage, settings.rotate_queue) == []  # nothing was re-enqueued
    step_logs = [r for r in caplog.records if r.name == "shared.fanout" and hasattr(r, "fanout")]
    assert len(step_logs) >= 3 + count  # every scan and rotation wrote its StepResult line
    assert_value_free([r.getMessage() + json.dumps(r.fanout, default=str) for r in step_logs], secret_values)


async def test_a_duplicate_rotate_message_delivered_concurrently_makes_one_version(
    client: Any,
    settings: Any,
    azurite_outbox: RecordingOutbox,
    secret_values: SecretValues,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Azurite (blob lease on). Two deliveries of one message at once, as two instances would run them: the
    in-process coalescer is bypassed, so the per-name lock, the lease and the engine's re-check decide."""
    from shared.locks import PROCESS_LOCKS
    from shared.rotation import engine as engine_module

    class NoCoalescing:
        async def run(self, key: str, start: Callable[[], Any]) -> Any:
            return await start()

    monkeypatch.setattr(engine_module, "PROCESS_COALESCER", NoCoalescing())
    [old] = await seed(
        client,
        [
            dict(
                name="dup",
                value=secret_values.new(),
                tags=DUE,
                expires_on=datetime.now(UTC) + timedelta(days=3),
            )
        ],
    )
    version = old.properties.version
    message = RotateMessage(
        vault=settings.vault_url,
        name="dup",
        op_id=operation_id(settings.vault_url, "dup", version, "rotate"),
        version=version,
        sweep_id="s1",
    )
    fanout = make_fanout(settings, azurite_outbox)
    results = await asyncio.gather(*(fanout.handle("rotate", encode(message)) for _ in range(3)))
    assert PROCESS_LOCKS.distributed is not None  # the blob lease on Azurite was in force
    assert sorted(r.outcome for r in results) == ["NotDue", "NotDue", "Rotated"]
    versions = await versions_of(client, "dup")
    assert len(versions) == 2
    [newest] = [v for v in versions if v.version != version]
    assert newest.tags["RotationOperationId"] == message.op_id  # the message's op id tags the version
    secret_values.register((await client.get_secret("dup")).value)
    assert_value_free([s.body for s in azurite_outbox.sent], secret_values)


# ---------------------------------------------------------------------------------------------- 4


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every asyncio.sleep the work itself awaits (azure-core's retry backoff included), recorded and then
    slept. The blob lease's renewal timer (`_renew`, a background task cancelled on release) is left out:
    it waits for the lease's next renewal, not for the vault."""
    recorded: list[float] = []
    original = asyncio.sleep

    async def sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if caller.f_code.co_name != "_renew":
            recorded.append(float(delay))
        return await original(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return recorded


@pytest.fixture
def one_retry(fan_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """azure-core retries each call once (KEY_VAULT_RETRY_TOTAL=1): its retries still run, just fewer.
    Request it before `client` and `settings`, which read the settings."""
    from shared.settings import get_settings

    monkeypatch.setenv("KEY_VAULT_RETRY_TOTAL", "1")
    get_settings.cache_clear()


def expected_delay(attempt: int) -> tuple[float, float]:
    base = min(MAX_REQUEUE_DELAY, 5.0 * 2.0**attempt)
    return base, base * 1.2


async def test_a_throttled_rotation_is_requeued_with_a_growing_delay_and_then_raised(
    one_retry: None,
    client: Any,
    settings: Any,
    vault_control: Any,
    secret_values: SecretValues,
    sleeps: list[float],
) -> None:
    """Recording. GetSecretVersions answers 429 past azure-core's retries: the step acknowledges the
    delivery (no exception), sends the same operation with attempt+1 and a growing delay, and sleeps no
    more than azure-core's own backoff; at MAX_REQUEUES it raises, so the host's poison path applies."""
    from shared.errors import VaultThrottled

    now = datetime.now(UTC)
    [old] = await seed(
        client, [dict(name="hot", value=secret_values.new(), tags=DUE, expires_on=now + timedelta(days=3))]
    )
    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox)
    message = RotateMessage(
        vault=settings.vault_url,
        name="hot",
        op_id=operation_id(settings.vault_url, "hot", old.properties.version, "rotate"),
        version=old.properties.version,
    )
    vault_control.set_faults("GetSecretVersions", 429, rate=1.0, retry_after=0.05)
    body = encode(message)
    for attempt in range(MAX_REQUEUES):
        result = await fanout.handle("rotate", body)
        assert result.outcome == "Requeued" and result.details["code"] == "VaultThrottled"
        sent = outbox.on(settings.rotate_queue)[-1]
        requeued = decode(sent.body)
        assert requeued == RotateMessage(**{**message.__dict__, "attempt": attempt + 1})
        low, high = expected_delay(attempt)
        assert low <= sent.delay <= high, (attempt, sent.delay)
        body = sent.body
    assert len(outbox.sent) == MAX_REQUEUES
    with pytest.raises(VaultThrottled):
        await fanout.handle("rotate", body)
    assert len(outbox.sent) == MAX_REQUEUES  # not re-enqueued again: the host's retries take over
    # each delivery: the call and azure-core's one retry, both 429
    assert vault_control.stats()["statuses"].get("429", 0) == 2 * (MAX_REQUEUES + 1)
    assert settings.retry_total == 1
    assert sleeps and max(sleeps) < 1.0, max(sleeps)  # the delay is the queue's, never the worker's
    vault_control.clear_faults()
    assert len(await versions_of(client, "hot")) == 1
    assert_value_free([s.body for s in outbox.sent], secret_values)


async def test_a_throttled_create_is_requeued_and_the_requeued_message_rotates(
    one_retry: None,
    client: Any,
    settings: Any,
    vault_control: Any,
    secret_values: SecretValues,
    sleeps: list[float],
) -> None:
    """Recording. SetSecret answers 429: no pending version is stored, the message comes back with
    attempt 1; once the vault recovers, that message rotates the secret (one new version)."""
    [old] = await seed(
        client,
        [
            dict(
                name="hot-set",
                value=secret_values.new(),
                tags=DUE,
                expires_on=datetime.now(UTC) + timedelta(days=3),
            )
        ],
    )
    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox)
    op = operation_id(settings.vault_url, "hot-set", old.properties.version, "rotate")
    message = RotateMessage(
        vault=settings.vault_url, name="hot-set", op_id=op, version=old.properties.version
    )
    vault_control.set_faults("SetSecret", 429, rate=1.0, retry_after=0.05)
    result = await fanout.handle("rotate", encode(message))
    assert result.outcome == "Requeued" and result.details["attempt"] == 1
    assert len(await versions_of(client, "hot-set")) == 1
    vault_control.clear_faults()
    [requeued] = outbox.on(settings.rotate_queue)
    assert decode(requeued.body).attempt == 1  # type: ignore[union-attr]
    assert (await fanout.handle("rotate", requeued.body)).outcome == "Rotated"
    assert len(await versions_of(client, "hot-set")) == 2
    assert max(sleeps) < 1.0
    secret_values.register((await client.get_secret("hot-set")).value)
    assert_value_free([s.body for s in outbox.sent], secret_values)


async def test_a_throttled_scan_is_requeued_with_its_token_and_then_raised(
    one_retry: None,
    client: Any,
    settings: Any,
    vault_control: Any,
    secret_values: SecretValues,
    sleeps: list[float],
) -> None:
    """Recording. GetSecrets answers 429 on page 1: the same page (same token) comes back with attempt+1
    and a growing delay, no rotation is enqueued; at MAX_REQUEUES it raises; the next page starts at 0."""
    from shared.errors import VaultThrottled

    await seed_sixty(client, secret_values, datetime.now(UTC))
    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox)
    [start] = await fanout.start_sweeps("rotation")
    await fanout.handle("scan", encode(start))
    page1 = outbox.messages(settings.scan_queue)[-1]
    assert page1.page == 1 and page1.token
    rotations = len(outbox.on(settings.rotate_queue))

    vault_control.set_faults("GetSecrets", 429, rate=1.0, retry_after=0.05)
    body = encode(page1)
    for attempt in range(MAX_REQUEUES):
        result = await fanout.handle("scan", body)
        assert result.outcome == "Requeued", result
        sent = outbox.on(settings.scan_queue)[-1]
        again = decode(sent.body)
        assert isinstance(again, ScanMessage) and again.attempt == attempt + 1
        assert (again.token, again.page, again.next_slot) == (page1.token, 1, page1.next_slot)
        low, high = expected_delay(attempt)
        assert low <= sent.delay <= high, (attempt, sent.delay)
        body = sent.body
    with pytest.raises(VaultThrottled):
        await fanout.handle("scan", body)
    assert len(outbox.on(settings.rotate_queue)) == rotations
    vault_control.clear_faults()
    assert (await fanout.handle("scan", body)).outcome == "Scanned"
    following = outbox.messages(settings.scan_queue)[-1]
    assert following.page == 2 and following.attempt == 0  # a new page starts with a fresh budget
    assert max(sleeps) < 1.0
    assert_value_free([s.body for s in outbox.sent], secret_values)


async def test_a_throttled_cleanup_is_requeued_and_then_raised(
    one_retry: None,
    client: Any,
    settings: Any,
    vault_control: Any,
    vault_clock: Any,
    secret_values: SecretValues,
    sleeps: list[float],
) -> None:
    """Recording. A tidy's history read, an expire's re-check and its delete answer 429: each message comes
    back with attempt+1 (no exception, no sleep); at MAX_REQUEUES it raises; once the vault recovers, the
    requeued expire message soft-deletes the secret."""
    from shared.errors import VaultThrottled
    from shared.fanout import CleanupMessage

    long_ago = vault_clock.now() - timedelta(days=40)
    tags = {**OWNED, "CleanupDeleteExpired": "true"}
    await seed(
        client,
        [
            dict(name="exp-hot", value=secret_values.new(), tags=tags, expires_on=long_ago),
            dict(name="tidy-hot", value=secret_values.new(), tags=DUE),
        ],
    )
    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox, now=vault_clock.now)

    def message(name: str, action: str, attempt: int = 0) -> Any:
        op = operation_id(settings.vault_url, name, None, f"cleanup-{action}")
        return CleanupMessage(vault=settings.vault_url, name=name, action=action, op_id=op, attempt=attempt)  # type: ignore[arg-type]

    vault_control.set_faults("GetSecretVersions", 429, rate=1.0, retry_after=0.05)
    for name, action in (("tidy-hot", "tidy"), ("exp-hot", "expire")):
        result = await fanout.handle("cleanup", encode(message(name, action)))
        assert (result.outcome, result.name, result.details["attempt"]) == ("Requeued", name, 1)
    with pytest.raises(VaultThrottled):
        await fanout.handle("cleanup", encode(message("exp-hot", "expire", MAX_REQUEUES)))
    vault_control.clear_faults()
    vault_control.set_faults("DeleteSecret", 429, rate=1.0, retry_after=0.05)
    result = await fanout.handle("cleanup", encode(message("exp-hot", "expire", 1)))
    assert (result.outcome, result.details["attempt"]) == ("Requeued", 2)
    vault_control.clear_faults()

    sent = outbox.on(settings.cleanup_queue)
    assert [(m.name, m.attempt) for m in map(decode, (s.body for s in sent))] == [  # type: ignore[attr-defined]
        ("tidy-hot", 1),
        ("exp-hot", 1),
        ("exp-hot", 2),
    ]
    for entry, attempt in zip(sent, (0, 0, 1), strict=True):
        low, high = expected_delay(attempt)
        assert low <= entry.delay <= high, entry
    assert [d.name async for d in client.list_deleted_secrets()] == []
    done = await fanout.handle("cleanup", sent[-1].body)
    assert done.outcome == "Done" and done.details["steps"] == {"DeleteExpired:Done": 1}
    assert [d.name async for d in client.list_deleted_secrets()] == ["exp-hot"]
    assert max(sleeps) < 1.0
    assert_value_free([s.body for s in outbox.sent], secret_values)


async def test_a_secret_another_instance_holds_is_requeued_not_waited_for(
    fan_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, secret_values: SecretValues
) -> None:
    """Recording, the blob lease on Azurite. Another instance holds the secret's lease past
    ROTATION_LOCK_WAIT_SECONDS: the rotate and the tidy message come back later (SecretBusy, the lease's
    length as the delay hint for the rotation), nothing is written, the delivery is acknowledged."""
    from azure.storage.blob.aio import BlobServiceClient

    from shared.fanout import CleanupMessage
    from shared.keyvault import get_secret_client
    from shared.locks import LOCK_CONTAINER, BlobLeaseLock
    from shared.settings import get_settings

    monkeypatch.setenv("ROTATION_LOCK_WAIT_SECONDS", "0.2")
    get_settings.cache_clear()
    settings = get_settings()
    client = await get_secret_client()
    [old] = await seed(
        client,
        [
            dict(
                name="held",
                value=secret_values.new(),
                tags=DUE,
                expires_on=datetime.now(UTC) + timedelta(days=3),
            )
        ],
    )
    version = old.properties.version
    rotate = RotateMessage(
        vault=settings.vault_url,
        name="held",
        op_id=operation_id(settings.vault_url, "held", version, "rotate"),
        version=version,
    )
    tidy = CleanupMessage(
        vault=settings.vault_url,
        name="held",
        action="tidy",
        op_id=operation_id(settings.vault_url, "held", version, "cleanup-tidy"),
        version=version,
    )
    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox)
    service = BlobServiceClient.from_connection_string(fan_env["AzureWebJobsStorage"])
    try:
        other = BlobLeaseLock(service.get_container_client(LOCK_CONTAINER), wait_seconds=0.2)
        async with other.hold("held"):
            rotated = await fanout.handle("rotate", encode(rotate))
            tidied = await fanout.handle("cleanup", encode(tidy))
    finally:
        await service.close()
    assert (rotated.outcome, rotated.details["code"], rotated.details["attempt"]) == (
        "Requeued",
        "SecretBusy",
        1,
    )
    assert (tidied.outcome, tidied.details["code"], tidied.details["attempt"]) == (
        "Requeued",
        "SecretBusy",
        1,
    )
    [again] = outbox.on(settings.rotate_queue)
    assert decode(again.body) == RotateMessage(**{**rotate.__dict__, "attempt": 1})
    assert 30.0 <= again.delay <= 36.0  # the lease's length: it is free by then at the latest
    [tidy_again] = outbox.on(settings.cleanup_queue)
    assert decode(tidy_again.body).attempt == 1  # type: ignore[union-attr]
    assert len(await versions_of(client, "held")) == 1
    assert (await fanout.handle("rotate", again.body)).outcome == "Rotated"  # once the lease is free
    secret_values.register((await client.get_secret("held")).value)
    assert_value_free([s.body for s in outbox.sent], secret_values)


# ---------------------------------------------------------------------------------------------- 5


async def test_a_poisoned_message_is_one_alert_line_naming_its_work(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Recording (no vault call): the host moved a message to <queue>-poison; the alert line names the
    vault, the secret and the op id, and the poison is counted per queue."""
    caplog.set_level(logging.WARNING, logger="secrets.alert")
    fanout = make_fanout(settings, RecordingOutbox())
    message = RotateMessage(
        vault=settings.vault_url, name="poisoned-one", op_id="a" * 32, version="b" * 32, attempt=3
    )
    before = POISONED["rotate"]
    result = fanout.poisoned("rotate", encode(message).encode(), dequeue_count=5)
    assert POISONED["rotate"] == before + 1
    assert (result.outcome, result.name, result.op_id) == ("Poisoned", "poisoned-one", "a" * 32)
    [alert] = [r for r in caplog.records if r.name == "secrets.alert"]
    assert alert.alert == {  # type: ignore[attr-defined]
        "alert": "MessagePoisoned",
        "queue": "rotate",
        "dequeueCount": 5,
        "type": "rotate",
        "vault": settings.vault_url,
        "name": "poisoned-one",
        "opId": "a" * 32,
    }
    for text in (settings.vault_url, "poisoned-one", "a" * 32):
        assert text in alert.getMessage()

    caplog.clear()
    event = near_expiry(settings.vault_url, "evt-poisoned", "c" * 32, cloud=True)
    fanout.poisoned("events", json.dumps([event]), dequeue_count=5)
    [alert] = [r for r in caplog.records if r.name == "secrets.alert"]
    assert alert.alert == {  # type: ignore[attr-defined]
        "alert": "MessagePoisoned",
        "queue": "events",
        "dequeueCount": 5,
        "type": "event",
        "eventType": "Microsoft.KeyVault.SecretNearExpiry",
        "eventId": event["id"],
        "vault": "localhost",
        "name": "evt-poisoned",
    }

    caplog.clear()
    fanout.poisoned("scan", b"\xff not a message", dequeue_count=None)
    [unreadable] = [r for r in caplog.records if r.name == "secrets.alert"]
    assert "UTF-8" in unreadable.alert["unreadable"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("step", "body", "reason"),
    [
        ("scan", b"\xff\xfe", "UTF-8"),
        ("scan", "not json", "JSON"),
        ("rotate", "[]", "JSON object"),
        ("rotate", '{"schema": 2, "type": "rotate"}', "schema"),
        ("cleanup", '{"schema": 1, "type": "nope"}', "type"),
        ("cleanup", '{"schema": 1, "type": "cleanup", "vault": "https://x"}', "name"),
        ("rotate", "SCAN", "scan message on the rotate queue"),
        ("rotate", "OTHER_VAULT", "KEY_VAULT_URLS"),
        ("rotate", "BAD_NAME", "name"),
        ("scan", '{"schema": 1, "type": "scan", "vault": "http://kv", "sweep_id": "s"}', "https://"),
        ("event", "{not json", "JSON"),
        ("event", "[1, 2]", "JSON object"),
    ],
)
async def test_an_unreadable_message_on_any_queue_is_logged_and_counted_not_raised(
    settings: Any,
    vault_control: Any,
    caplog: pytest.LogCaptureFixture,
    step: str,
    body: str | bytes,
    reason: str,
) -> None:
    """Recording: redelivering an unreadable body cannot help, so it is acknowledged with an ERROR line
    naming what is wrong and counted; no vault call is made and nothing is sent."""
    if body == "SCAN":
        body = encode(ScanMessage(vault=settings.vault_url, sweep_id="s"))
    elif body == "OTHER_VAULT":
        body = encode(RotateMessage(vault="https://other.vault.azure.net", name="x", op_id="o"))
    elif body == "BAD_NAME":
        body = json.dumps(
            {"schema": 1, "type": "rotate", "vault": settings.vault_url, "name": "no_under", "op_id": "o"}
        )
    outbox = RecordingOutbox()
    before, calls = POISONED[f"{step}:unreadable"], vault_control.stats()["total"]
    result = await make_fanout(settings, outbox).handle(step, body)
    assert result.outcome == "Unreadable" and reason in result.details["reason"], result.details
    assert POISONED[f"{step}:unreadable"] == before + 1
    assert outbox.sent == [] and vault_control.stats()["total"] == calls
    assert any(r.levelno == logging.ERROR and "Unreadable" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------- 6


def near_expiry(
    vault_url: str, name: str, version: str, *, cloud: bool = False, event_type: str | None = None
) -> dict[str, Any]:
    """A Key Vault event as Event Grid writes it to a storage queue (the spec example's shape)."""
    host = urlsplit(vault_url).hostname
    data = {
        "Id": f"{vault_url}/secrets/{name}/{version}",
        "VaultName": host,
        "ObjectType": "Secret",
        "ObjectName": name,
        "Version": version,
        "NBF": "1559081980",
        "EXP": "1559082102",
    }
    kind = event_type or "Microsoft.KeyVault.SecretNearExpiry"
    topic = f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{host}"
    if cloud:
        return {
            "id": str(uuid.uuid4()),
            "source": topic,
            "specversion": "1.0",
            "type": kind,
            "subject": name,
            "time": "2026-12-03T08:00:00Z",
            "data": data,
        }
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "subject": name,
        "eventType": kind,
        "eventTime": "2026-12-03T08:00:00Z",
        "data": data,
        "dataVersion": "1",
        "metadataVersion": "1",
    }


async def test_events_through_the_queue_become_rotate_messages_and_the_rest_is_handled(
    client: Any,
    settings: Any,
    vault_control: Any,
    caplog: pytest.LogCaptureFixture,
    secret_values: SecretValues,
) -> None:
    """Recording. SecretNearExpiry in either schema (alone or in a one-event array) → one rotate message,
    source=event, for the event's version, with the op id a sweep would use; that message rotates, the
    other schema's copy is then stale; other event types need no rotation (SecretExpired is an alert);
    an event that names no secret or another vault is unreadable (counted)."""
    caplog.set_level(logging.WARNING, logger="secrets.alert")
    [old] = await seed(
        client,
        [
            dict(
                name="evt",
                value=secret_values.new(),
                tags=DUE,
                expires_on=datetime.now(UTC) + timedelta(days=3),
            )
        ],
    )
    version, vault = old.properties.version, settings.vault_url
    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox)
    bodies = [
        json.dumps(near_expiry(vault, "evt", version)),
        json.dumps(near_expiry(vault, "evt", version, cloud=True)).encode(),
        json.dumps([near_expiry(vault, "evt", version)]),
    ]
    for body in bodies:
        result = await fanout.handle("event", body)
        assert (result.outcome, result.vault, result.name) == ("Enqueued", vault, "evt")
    messages = outbox.messages(settings.rotate_queue)
    assert len(messages) == 3 and len(set(messages)) == 1  # the same operation three times
    expected = RotateMessage(
        vault=vault,
        name="evt",
        op_id=operation_id(vault, "evt", version, "rotate"),
        version=version,
        source="event",
    )
    assert messages[0] == expected
    outcomes = [(await fanout.handle("rotate", s.body)).outcome for s in outbox.on(settings.rotate_queue)]
    assert outcomes == ["Rotated", "Stale", "Stale"]
    assert len(await versions_of(client, "evt")) == 2

    sent = len(outbox.sent)
    for kind, cloud in (
        ("Microsoft.KeyVault.SecretNewVersionCreated", False),
        ("Microsoft.KeyVault.SecretExpired", True),
    ):
        result = await fanout.handle(
            "event", json.dumps(near_expiry(vault, "evt", version, cloud=cloud, event_type=kind))
        )
        assert result.outcome == "Handled" and result.details["eventType"] == kind
    assert len(outbox.sent) == sent
    assert any(getattr(r, "alert", {}).get("alert") == "SecretExpired" for r in caplog.records)
    no_version = near_expiry(vault, "evt", version)
    no_version["data"].pop("Version")
    no_version["data"]["Id"] = f"{vault}/secrets/evt"
    assert (await fanout.handle("event", json.dumps(no_version))).outcome == "NoVersion"

    before = POISONED["event:unreadable"]
    nameless = near_expiry(vault, "evt", version)
    nameless["data"] = {"VaultName": "localhost"}
    nameless.pop("subject")
    elsewhere = near_expiry("https://other-kv.vault.azure.net", "evt", version)
    for garbage in ("not json", json.dumps(nameless), json.dumps(elsewhere), json.dumps([1])):
        assert (await fanout.handle("event", garbage)).outcome == "Unreadable"
    assert POISONED["event:unreadable"] == before + 4
    assert len(outbox.sent) == sent
    secret_values.register((await client.get_secret("evt")).value)
    assert_value_free([s.body for s in outbox.sent], secret_values)


# ---------------------------------------------------------------------------------------------- 7


async def test_cleanup_through_the_fanout_does_what_the_inline_cleanup_plans(
    client: Any,
    settings: Any,
    vault_control: Any,
    vault_clock: Any,
    secret_values: SecretValues,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recording, the vault's clock injected. A cleanup scan lists the live secrets, then switches to the
    deleted listing; its tidy/expire/purge messages do exactly what the inline cleanup's dry run plans
    (revoke a superseded version, soft-delete an expired opted-in owned secret, purge an owned deleted
    one) and afterwards the inline cleanup finds nothing left to do."""
    from shared.cleanup import CleanupEngine
    from shared.rotation.engine import RotationEngine, RotationRequest
    from shared.settings import get_settings

    monkeypatch.setenv("CLEANUP_KEEP_VERSIONS", "1")
    monkeypatch.setenv("CLEANUP_ALLOW_PURGE", "true")
    get_settings.cache_clear()
    settings = get_settings()
    now = vault_clock.now()
    long_ago = now - timedelta(days=40)
    await seed(
        client,
        [
            dict(name="ov", value=secret_values.new(), tags={**DUE, "RotationOverlapDays": "1"}),
            dict(
                name="exp-both",
                value=secret_values.new(),
                tags={**OWNED, "CleanupDeleteExpired": "true"},
                expires_on=long_ago,
            ),
            dict(
                name="exp-not-owned",
                value=secret_values.new(),
                tags={"CleanupDeleteExpired": "true"},
                expires_on=long_ago,
            ),
            dict(name="exp-not-opted", value=secret_values.new(), tags=OWNED, expires_on=long_ago),
            dict(name="gone-owned", value=secret_values.new(), tags=OWNED),
            dict(name="gone-other", value=secret_values.new()),
        ],
    )
    rotated = await RotationEngine(client, settings, now=vault_clock.now).rotate(
        "ov", RotationRequest(trigger="http", force=True)
    )
    secret_values.register((await client.get_secret("ov")).value)
    for name in ("gone-owned", "gone-other"):
        await client.delete_secret(name, _polling_interval=0)
    vault_clock.days(8)  # past the overlap (1 day) and the purge grace (7 days)

    inline = CleanupEngine(client, settings, now=vault_clock.now)
    plan = await inline.sweep(dry_run=True, include_items=True)
    planned = sorted((i["action"], i["name"]) for i in plan.items)
    assert planned == [("DeleteExpired", "exp-both"), ("DisableVersion", "ov"), ("Purge", "gone-owned")]

    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox, now=vault_clock.now)
    [start] = await fanout.start_sweeps("cleanup")
    assert start.kind == "cleanup"
    results = await run_scans(fanout, outbox, settings.scan_queue, encode(start))
    scans = outbox.messages(settings.scan_queue)
    assert [(s.listing, s.page, s.token) for s in scans] == [("live", 0, None), ("deleted", 0, None)]
    assert [r.details["more"] for r in results] == [True, False]
    work = outbox.messages(settings.cleanup_queue)
    assert sorted((m.action, m.name) for m in work) == [
        ("expire", "exp-both"),
        ("purge", "gone-owned"),
        ("tidy", "exp-not-opted"),
        ("tidy", "ov"),
    ]
    assert [
        s.delay for s in sorted(outbox.on(settings.cleanup_queue), key=lambda s: s.delay)
    ] == pytest.approx([i / 100.0 for i in range(4)])
    done = []
    for sent in outbox.on(settings.cleanup_queue):
        result = await fanout.handle("cleanup", sent.body)
        assert result.outcome == "Done", result.details
        done += [
            (step.split(":")[0], result.name) for step, n in result.details["steps"].items() for _ in range(n)
        ]
        assert all(step.endswith(":Done") for step in result.details["steps"])
    assert sorted(done) == planned

    versions = {v.version: v for v in await versions_of(client, "ov")}
    assert versions[rotated.version].enabled
    [revoked] = [v for k, v in versions.items() if k != rotated.version]
    assert not revoked.enabled and "RotationRevoked" in revoked.tags
    assert sorted([d.name async for d in client.list_deleted_secrets()]) == ["exp-both", "gone-other"]
    assert (await inline.sweep(dry_run=True, include_items=True)).items == []  # nothing left to do
    again = [await fanout.handle("cleanup", s.body) for s in outbox.on(settings.cleanup_queue)]
    assert all(r.outcome == "Done" for r in again)  # a redelivery finds the work done
    assert_value_free([s.body for s in outbox.sent], secret_values)


# ---------------------------------------------------------------------------------------------- 9


def corrupted(token: str) -> str:
    """The local vault's nextLink with a $skiptoken it never issued."""
    parts = urlsplit(token)
    query = [(k, "bm90LWEtbWFya2Vy" if k == "$skiptoken" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="$")))


async def test_a_rejected_continuation_token_restarts_the_listing_from_the_first_page(
    client: Any,
    settings: Any,
    vault_control: Any,
    caplog: pytest.LogCaptureFixture,
    secret_values: SecretValues,
) -> None:
    """Recording. The vault answers 400 to a token it never issued: the scan logs it and sends a fresh scan
    message (page 0, no token, the pacing slot kept); the fresh listing runs to the end and re-enqueues
    page 0's rotations with the same op ids (duplicates a rotation re-check turns into no-ops)."""
    due = await seed_sixty(client, secret_values, datetime.now(UTC))
    outbox = RecordingOutbox()
    fanout = make_fanout(settings, outbox)
    [start] = await fanout.start_sweeps("rotation")
    await fanout.handle("scan", encode(start))
    page1 = outbox.messages(settings.scan_queue)[-1]
    first_ops = [m.op_id for m in outbox.messages(settings.rotate_queue)]
    bad = ScanMessage(**{**page1.__dict__, "token": corrupted(page1.token)})
    assert bad.token != page1.token
    before = vault_control.stats()

    result = await fanout.handle("scan", encode(bad))

    after = vault_control.stats()
    assert result.outcome == "Restarted" and result.details["code"] == "VaultRejectedRequest"
    assert op_diff(before["operations"], after["operations"]) == {"GetSecrets": 1}
    assert after["statuses"].get("400", 0) == before["statuses"].get("400", 0) + 1
    fresh = outbox.messages(settings.scan_queue)[-1]
    assert (fresh.token, fresh.page, fresh.attempt) == (None, 0, 0)
    assert (fresh.sweep_id, fresh.next_slot) == (page1.sweep_id, page1.next_slot)
    assert any(
        r.levelno == logging.WARNING
        and "Restarted" in r.getMessage()
        and "continuation token" in r.getMessage()
        for r in caplog.records
    )
    assert len(outbox.on(settings.rotate_queue)) == len(first_ops)  # the rejected page enqueued nothing

    results = await run_scans(fanout, outbox, settings.scan_queue, encode(fresh))
    assert [r.details["page"] for r in results] == [0, 1, 2]
    ops = [m.op_id for m in outbox.messages(settings.rotate_queue)]
    assert len(set(ops)) == len(due) and ops[: len(first_ops)] == first_ops
    assert sorted(ops[len(first_ops) :]) == sorted(set(ops))  # the fresh listing: every due secret once
    outcomes = [(await fanout.handle("rotate", s.body)).outcome for s in outbox.on(settings.rotate_queue)]
    assert sorted(outcomes) == sorted(["NotDue"] * len(first_ops) + ["Rotated"] * len(due))
    for name in due:  # the duplicates were harmless: one new version each
        assert len(await versions_of(client, name)) == 2, name
    assert_value_free([s.body for s in outbox.sent], secret_values)

    from shared.errors import VaultRejectedRequest

    calls = vault_control.stats()["total"]
    with pytest.raises(VaultRejectedRequest, match="another host"):  # never sent, and not restarted
        await fanout.handle(
            "scan", encode(ScanMessage(**{**page1.__dict__, "token": "https://evil.example/x"}))
        )
    assert vault_control.stats()["total"] == calls


# ---------------------------------------------------------------------------------------------- 10


async def test_the_timers_in_queue_mode_enqueue_scans_and_the_queue_functions_finish_the_sweep(
    client: Any,
    settings: Any,
    storage: Any,
    vault_control: Any,
    caplog: pytest.LogCaptureFixture,
    secret_values: SecretValues,
) -> None:
    """Azurite, in process, through the blueprints: the rotation timer (SWEEP_MODE=queue) only enqueues a
    scan message (no vault call); fanout_scan and fanout_rotate, called with func.QueueMessage as the host
    calls them, rotate the due secret; the cleanup timer enqueues a cleanup scan; fanout_events turns an
    event into a rotate message; the poison functions (events' too) write the alert line."""
    import azure.functions as func
    from azure.functions.timer import TimerRequest

    from blueprints import cleanup, queues, rotation

    caplog.set_level(logging.WARNING, logger="secrets.alert")
    now = datetime.now(UTC)
    await seed(
        client,
        [
            dict(name="tm-due", value=secret_values.new(), tags=DUE, expires_on=now + timedelta(days=2)),
            dict(name="tm-fresh", value=secret_values.new(), tags=DUE, expires_on=now + timedelta(days=55)),
        ],
    )
    before = vault_control.stats()["total"]
    await rotation.scheduled_rotation(TimerRequest(past_due=False))
    assert vault_control.stats()["total"] == before  # the timer's whole job is the scan message
    [scan] = await drain(storage, settings.scan_queue)
    assert decode(scan) == ScanMessage(vault=settings.vault_url, sweep_id=decode(scan).sweep_id)
    await queues.fanout_scan(func.QueueMessage(body=scan.encode()))
    rotations = await drain(storage, settings.rotate_queue)
    assert [decode(b).name for b in rotations] == ["tm-due"]  # type: ignore[union-attr]
    await queues.fanout_rotate(func.QueueMessage(body=rotations[0].encode()))
    assert len(await versions_of(client, "tm-due")) == 2
    assert len(await versions_of(client, "tm-fresh")) == 1

    await cleanup.scheduled_cleanup(TimerRequest(past_due=False))
    [cleanup_scan] = await drain(storage, settings.scan_queue)
    assert decode(cleanup_scan).kind == "cleanup"  # type: ignore[union-attr]

    event = near_expiry(settings.vault_url, "tm-fresh", "f" * 32)
    await queues.fanout_events(func.QueueMessage(body=json.dumps(event).encode()))
    [from_event] = [decode(b) for b in await drain(storage, settings.rotate_queue)]
    assert (from_event.name, from_event.source) == ("tm-fresh", "event")  # type: ignore[union-attr]

    await queues.fanout_events_poison(func.QueueMessage(body=json.dumps(event).encode()))
    alerts = [getattr(r, "alert", {}) for r in caplog.records if r.name == "secrets.alert"]
    [event_alert] = [a for a in alerts if a.get("queue") == "events"]
    assert event_alert["name"] == "tm-fresh" and event_alert["eventType"].endswith("SecretNearExpiry")
    await queues.fanout_rotate_poison(func.QueueMessage(body=rotations[0].encode()))
    alerts = [getattr(r, "alert", {}) for r in caplog.records if r.name == "secrets.alert"]
    assert [a["name"] for a in alerts if a.get("queue") == "rotate"] == ["tm-due"]
    secret_values.register((await client.get_secret("tm-due")).value)
    assert_value_free([scan, cleanup_scan, *rotations], secret_values)


def test_message_error_is_a_value_error_naming_the_field() -> None:
    """The contract's refusals name the field (no vault, no queue)."""
    with pytest.raises(MessageError, match="'page'"):
        decode('{"schema":1,"type":"scan","vault":"https://kv","sweep_id":"s","page":-1}')
    with pytest.raises(MessageError, match="'attempt'"):
        decode('{"schema":1,"type":"scan","vault":"https://kv","sweep_id":"s","attempt":true}')


def test_the_value_check_sees_a_value_in_a_body() -> None:
    """assert_value_free, used by every test above, can fail."""
    values = SecretValues()
    value = values.new()
    assert_value_free(['{"name":"x"}'], values)
    with pytest.raises(AssertionError, match="#\\[1\\]"):
        assert_value_free(['{"name":"x"}', '{"note":"' + value + '"}'], values)
