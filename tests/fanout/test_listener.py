"""The local host's queue listener against Azurite, checked item by item against the real host's
dispatch (reference scale-and-operations.md §2.6): base64 and `none` bodies, the fields of
func.QueueMessage, success deletes, failure releases with `visibilityTimeout` and counts dequeues up to
<queue>-poison, undecodable bodies go to poison at once, polling backoff (and `notify` cutting it
short), batchSize/newBatchThreshold, visibility renewal with the pop-receipt swap (and its stop when
the message is lost), two hosts sharing a queue, graceful stop, connections resolved like the host,
and one clear error (not one per poll) when storage cannot be reached.

Where the listener sleeps (backoff, renewal timer) the tests inject a FakeClock, so no test waits for
polling intervals; Azurite's own clock runs for real (a message's visibility), so the one test about a
message outliving its visibility uses a 2-second visibility and the system clock.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from localdev.host.clock import Clock, SystemClock
from localdev.host.invocation import Invoker
from localdev.host.queues import (
    VISIBILITY_ENV,
    Backoff,
    QueueConfigError,
    QueueListener,
    QueueOptions,
    QueueService,
    poison_name,
    queue_service,
    visibility_from_env,
)
from localdev.host.registry import RegisteredFunction
from tests.fixtures.eventually import eventually
from tests.host.fakeclock import FakeClock

REPO = Path(__file__).resolve().parents[2]
# Azurite's well-known development account (public, the same in every install)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
RENEWAL = 300.0  # half the default 600 s receive visibility: the renewal timer's sleep on the FakeClock


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _function(
    handler: Any, name: str = "probe", queue: str = "q", connection: str | None = None
) -> RegisteredFunction:
    binding: dict[str, Any] = {"queueName": queue}
    if connection is not None:
        binding["connection"] = connection
    return RegisteredFunction(
        name=name,
        trigger_type="queueTrigger",
        trigger_name="msg",
        user_function=handler,
        is_async=True,
        wants_context=False,
        has_return=False,
        binding=binding,
        function_json={},
    )


@dataclass
class Queues:
    """A fresh queue on Azurite, a raw client on it (plain text, as the wire) and the service."""

    name: str
    service: Any
    raw: Any

    def listener(
        self,
        handler: Callable[[Any], Awaitable[None]],
        options: QueueOptions,
        clock: Clock | None = None,
        visibility: float = 600.0,
    ) -> QueueListener:
        return QueueListener(
            _function(handler, queue=self.name),
            self.name,
            self.service,
            Invoker("."),
            options,
            clock or SystemClock(),
            random.Random(7),
            visibility,
        )

    async def count(self) -> int:
        """Messages in the queue, visible or not."""
        return int((await self.raw.get_queue_properties()).approximate_message_count)


@pytest.fixture
async def queues(azurite_queues: str) -> AsyncIterator[Queues]:
    from azure.storage.queue.aio import QueueServiceClient

    name = f"q{uuid.uuid4().hex[:12]}"
    service = QueueServiceClient.from_connection_string(azurite_queues)
    raw = service.get_queue_client(name)
    await raw.create_queue()
    try:
        yield Queues(name, service, raw)
    finally:
        await raw.close()
        await service.close()


def fake_clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


def backoff_sleeps(clock: FakeClock) -> list[float]:
    return [s for s in clock.slept if s != RENEWAL]


# ---------------------------------------------------------------------------------------- pure parts


def test_backoff_follows_the_hosts_sequence_and_caps() -> None:
    """RandomizedExponentialBackoffStrategy: 100 ms first, then 100 ms + rand(0.8,1.2) × 2^(n-1) × 100 ms."""
    fresh = Backoff(2.0, random.Random(1))
    assert fresh.next(False) == pytest.approx(0.1)  # exponent 0: the minimum, as the host's first miss
    backoff = Backoff(2.0, random.Random(1))
    assert backoff.next(True) == pytest.approx(0.1)
    delays = [backoff.next(False) for _ in range(12)]
    assert 0.18 <= delays[0] <= 0.22 and 0.26 <= delays[1] <= 0.34 and 0.42 <= delays[2] <= 0.58
    assert delays == sorted(delays) and delays[-1] == 2.0 and delays.count(2.0) >= 6
    assert backoff.next(True) == pytest.approx(0.1)


def test_options_defaults_and_validation() -> None:
    options = QueueOptions.from_host_json({}, {"AZURE_FUNCTIONS_ENVIRONMENT": "Development"})
    assert (options.batch_size, options.new_batch_threshold, options.max_dequeue_count) == (16, 8, 5)
    assert (options.visibility_timeout, options.message_encoding) == (0.0, "base64")
    assert options.max_polling_interval == 2.0  # Development, left at the default
    assert QueueOptions.from_host_json({}, {}).max_polling_interval == 60.0
    for bad, field in (
        ({"batchSize": 33}, "batchSize"),
        ({"batchSize": 0}, "batchSize"),
        ({"newBatchThreshold": -1}, "newBatchThreshold"),
        ({"maxDequeueCount": 0}, "maxDequeueCount"),
        ({"maxPollingInterval": "00:00:00.05"}, "maxPollingInterval"),
        ({"visibilityTimeout": "soon"}, "visibilityTimeout"),
        ({"messageEncoding": "utf8"}, "messageEncoding"),
    ):
        with pytest.raises(QueueConfigError, match=field):
            QueueOptions.from_host_json({"extensions": {"queues": bad}}, {})
    assert poison_name("kv-rotate") == "kv-rotate-poison" and poison_name("kv-rotate-poison") is None
    assert poison_name("q" * 57) is None  # "-poison" would make it longer than 63


def test_the_apps_host_json_queue_settings_are_read() -> None:
    """host.json's extensions.queues (§7.3's values) reach the listener; an explicit
    maxPollingInterval holds in Development too."""
    document = json.loads((REPO / "host.json").read_text())
    options = QueueOptions.from_host_json(document, {"AZURE_FUNCTIONS_ENVIRONMENT": "Development"})
    assert options == QueueOptions(
        batch_size=8,
        new_batch_threshold=4,
        max_dequeue_count=5,
        visibility_timeout=30.0,
        max_polling_interval=30.0,
        message_encoding="base64",
    )


def test_app_settings_override_host_json_as_in_azure() -> None:
    document = {"extensions": {"queues": {"batchSize": 8, "newBatchThreshold": 4}}}
    prefix = "AzureFunctionsJobHost__extensions__queues__"
    env = {
        f"{prefix}batchSize": "16",
        f"{prefix}visibilityTimeout": "00:00:05",
        f"{prefix}messageEncoding": "none",
    }
    options = QueueOptions.from_host_json(document, env)
    assert (options.batch_size, options.new_batch_threshold) == (16, 4)
    assert (options.visibility_timeout, options.message_encoding) == (5.0, "none")
    with pytest.raises(QueueConfigError, match=f"{prefix}batchSize must be a whole number"):
        QueueOptions.from_host_json(document, {f"{prefix}batchSize": "lots"})
    with pytest.raises(QueueConfigError, match="batchSize"):
        QueueOptions.from_host_json(document, {f"{prefix}batchSize": "64"})


def test_receive_visibility_knob() -> None:
    assert visibility_from_env({}) == 600.0
    assert visibility_from_env({VISIBILITY_ENV: "4"}) == 4.0
    for bad in ("1", "601", "2.5", "soon"):
        with pytest.raises(QueueConfigError, match=VISIBILITY_ENV):
            visibility_from_env({VISIBILITY_ENV: bad})


AZ = "AzureWebJobsStorage"


async def test_connections_resolve_like_the_host() -> None:
    """Connection strings (AzureWebJobs<name> before <name>), UseDevelopmentStorage=true, and the
    identity forms; errors name the setting and never echo its value."""
    from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

    async def resolved(connection: str, env: dict[str, str]) -> tuple[str, Any]:
        client = queue_service(connection, env)
        try:
            return str(client.url), client.credential
        finally:
            await client.close()

    url, _ = await resolved(AZ, {AZ: "UseDevelopmentStorage=true"})
    assert url == "http://127.0.0.1:10001/devstoreaccount1/"
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURITE_KEY};EndpointSuffix=core.windows.net"
    url, _ = await resolved("Jobs", {"AzureWebJobsJobs": conn, "Jobs": "UseDevelopmentStorage=true"})
    assert url == "https://acct.queue.core.windows.net/"  # the prefixed setting wins, as in the host

    url, cred = await resolved(
        AZ,
        {
            f"{AZ}__queueServiceUri": "https://one.queue.core.windows.net",
            f"{AZ}__serviceUri": "https://two.queue.core.windows.net",
            f"{AZ}__credential": "managedidentity",
            f"{AZ}__clientId": "11111111-2222-3333-4444-555555555555",
        },
    )
    assert url == "https://one.queue.core.windows.net/"  # queueServiceUri wins over serviceUri
    assert isinstance(cred, ManagedIdentityCredential)
    assert cred._credential._client._identity_config == {"client_id": "11111111-2222-3333-4444-555555555555"}
    await cred.close()

    url, cred = await resolved("Other", {"Other__serviceUri": "https://two.queue.core.windows.net"})
    assert url == "https://two.queue.core.windows.net/" and isinstance(cred, DefaultAzureCredential)
    await cred.close()
    url, cred = await resolved(AZ, {f"{AZ}__accountName": "acct3", f"{AZ}__credential": "managedidentity"})
    assert url == "https://acct3.queue.core.windows.net/" and isinstance(cred, ManagedIdentityCredential)
    await cred.close()
    _, cred = await resolved(
        AZ,
        {
            f"{AZ}__queueServiceUri": "https://one.queue.core.windows.net",
            f"{AZ}__tenantId": "t",
            f"{AZ}__clientId": "c",
            f"{AZ}__clientSecret": "not-a-real-secret",
        },
    )
    assert isinstance(cred, ClientSecretCredential)
    await cred.close()

    with pytest.raises(QueueConfigError, match=r"Missing__queueServiceUri") as missing:
        queue_service("Missing", {})
    assert "'Missing' is not set" in str(missing.value)
    with pytest.raises(QueueConfigError, match=f"app setting {AZ} is not a storage connection string") as bad:
        queue_service(AZ, {AZ: "AccountKey=hunter2-not-a-connection-string"})
    assert "hunter2" not in str(bad.value)
    with pytest.raises(QueueConfigError, match="__credential must be managedidentity"):
        queue_service(AZ, {f"{AZ}__accountName": "a", f"{AZ}__credential": "password"})
    with pytest.raises(QueueConfigError, match="not both"):
        queue_service(
            AZ,
            {
                f"{AZ}__accountName": "a",
                f"{AZ}__credential": "managedidentity",
                f"{AZ}__clientId": "c",
                f"{AZ}__managedIdentityResourceId": "/subscriptions/x",
            },
        )


# ---------------------------------------------------------------------------------------- on Azurite


async def test_messages_run_fail_and_reach_poison(queues: Queues) -> None:
    seen: list[tuple[bytes, int]] = []

    async def handler(msg: Any) -> None:
        seen.append((msg.get_body(), msg.dequeue_count))
        if msg.get_body() == b"fail":
            raise RuntimeError("planned failure")

    options = QueueOptions(batch_size=4, new_batch_threshold=2, max_dequeue_count=3, max_polling_interval=0.2)
    listener = queues.listener(handler, options)
    await queues.raw.send_message(b64("ok"))
    await queues.raw.send_message(b64("fail"))
    await queues.raw.send_message("not base64 ***")
    listener.start()
    try:
        await eventually(lambda: listener.processed == 1 and listener.poisoned == 2, timeout=15)
    finally:
        await listener.stop()
    assert (b"ok", 1) in seen
    assert [d for b, d in seen if b == b"fail"] == [1, 2, 3]  # maxDequeueCount tries, then poison
    assert listener.released == 2  # tries 1 and 2 released (visibilityTimeout 0), the 3rd poisoned
    poison = queues.service.get_queue_client(f"{queues.name}-poison")
    bodies = sorted([m.content async for m in poison.receive_messages()])
    assert bodies == sorted([b64("fail"), "not base64 ***"])  # the body, as it was
    assert await queues.raw.peek_messages() == []
    await poison.close()


@pytest.mark.parametrize("encoding", ["base64", "none"])
async def test_the_function_gets_the_message_fields_as_func_queue_message(
    queues: Queues, encoding: str
) -> None:
    import azure.functions as func

    got: list[Any] = []

    async def handler(msg: Any) -> None:
        got.append(msg)

    body = '{"schema": 1}'
    sent = await queues.raw.send_message(b64(body) if encoding == "base64" else body)
    listener = queues.listener(handler, QueueOptions(max_polling_interval=0.2, message_encoding=encoding))
    listener.start()
    try:
        await eventually(lambda: listener.processed == 1)
    finally:
        await listener.stop()
    (msg,) = got
    assert isinstance(msg, func.QueueMessage)
    assert msg.get_body() == body.encode() and msg.get_json() == {"schema": 1}
    assert msg.id == sent.id and msg.dequeue_count == 1
    assert msg.insertion_time == sent.inserted_on and msg.expiration_time == sent.expires_on
    assert msg.time_next_visible is not None and msg.insertion_time is not None
    assert msg.time_next_visible - msg.insertion_time >= timedelta(seconds=590)  # received for 10 minutes
    assert isinstance(msg.pop_receipt, str) and msg.pop_receipt


async def test_an_empty_queue_is_polled_with_growing_backoff_and_notify_cuts_it_short(queues: Queues) -> None:
    clock = fake_clock()
    got: list[bytes] = []

    async def handler(msg: Any) -> None:
        got.append(msg.get_body())

    listener = queues.listener(handler, QueueOptions(max_polling_interval=1.0), clock)
    listener.start()
    try:
        for step in range(8):  # each time the listener sleeps, let that sleep pass
            await eventually(lambda n=step: len(backoff_sleeps(clock)) == n + 1 and clock.sleeping == 1)
            clock.advance(backoff_sleeps(clock)[-1])
        await eventually(lambda: len(backoff_sleeps(clock)) == 9 and clock.sleeping == 1)
        delays = backoff_sleeps(clock)
        assert delays[0] == pytest.approx(0.1)
        for n, delay in enumerate(delays[1:5], start=1):  # 100 ms + rand(0.8, 1.2) × 2^(n-1) × 100 ms
            assert 0.1 + 0.08 * 2 ** (n - 1) <= delay <= 0.1 + 0.12 * 2 ** (n - 1), (n, delays)
        assert delays == sorted(delays) and delays[-3:] == [1.0, 1.0, 1.0]  # capped at maxPollingInterval
        assert listener.receives == 9  # one receive per wake, no busy loop

        # A message arrives while the listener sleeps 1 s on a clock nobody moves: notify wakes it.
        frozen = clock.now()
        await queues.raw.send_message(b64("wake"))
        listener.notify()
        await eventually(lambda: listener.processed == 1)
        assert got == [b"wake"] and clock.now() == frozen  # no sleep had to pass
        # found: back to 100 ms after one more (empty) poll
        await eventually(lambda: backoff_sleeps(clock)[-1] == pytest.approx(0.1) and clock.sleeping == 1)
        assert listener.receives == 11  # one GetMessages found the message: the SDK's pager is not drained
    finally:
        await listener.stop()


async def test_a_missing_queue_is_waited_for_with_backoff_never_created(
    queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    """The host asks whether a trigger's queue exists (ExistsAsync) and backs off while it does not; it
    never creates it (infra does, or the first send). Once it exists, messages run."""
    clock = fake_clock()
    got: list[bytes] = []

    async def handler(msg: Any) -> None:
        got.append(msg.get_body())

    await queues.raw.delete_queue()
    listener = queues.listener(handler, QueueOptions(max_polling_interval=1.0), clock)
    caplog.set_level(logging.INFO, logger="localdev.host.queues")
    listener.start()
    try:
        for step in range(5):
            await eventually(lambda n=step: len(backoff_sleeps(clock)) == n + 1 and clock.sleeping == 1)
            clock.advance(backoff_sleeps(clock)[-1])
        await eventually(lambda: len(backoff_sleeps(clock)) == 6 and clock.sleeping == 1)
        delays = backoff_sleeps(clock)
        assert delays == sorted(delays) and delays[-1] == 1.0  # the empty queue's backoff, capped
        assert listener.receives == 0  # no GetMessages against a queue that is not there
        names = [q.name async for q in queues.service.list_queues(name_starts_with=queues.name)]
        assert names == []  # still missing: the listener did not create it
        waits = [r for r in caplog.records if "does not exist yet" in r.getMessage()]
        assert len(waits) == 1 and queues.name in waits[0].getMessage()  # said once, not once per poll

        await queues.raw.create_queue()  # as infra (or the app's first send) would
        await queues.raw.send_message(b64("arrived"))
        clock.advance(backoff_sleeps(clock)[-1])
        await eventually(lambda: listener.processed == 1)
        assert got == [b"arrived"] and listener.receives >= 1
    finally:
        await listener.stop()


async def test_in_flight_is_at_most_batch_size_plus_threshold(queues: Queues) -> None:
    """batchSize 4, newBatchThreshold 2: 4 in flight, the next receive only when 2 remain, then 6."""
    clock = fake_clock()
    gates: dict[str, asyncio.Event] = {}
    started: list[str] = []

    async def handler(msg: Any) -> None:
        body = msg.get_body().decode()
        started.append(body)
        await gates[body].wait()

    bodies = [f"m{i:02d}" for i in range(12)]
    for body in bodies:
        gates[body] = asyncio.Event()
        await queues.raw.send_message(b64(body))
    listener = queues.listener(handler, QueueOptions(batch_size=4, new_batch_threshold=2), clock)
    listener.start()
    try:
        await eventually(lambda: len(started) == 4)
        assert listener.receives == 1 and listener.in_flight == 4
        gates[started[0]].set()
        await eventually(lambda: listener.processed == 1)
        await asyncio.sleep(0.05)  # give a wrong listener the chance to receive at 3 in flight
        assert listener.receives == 1 and len(started) == 4
        gates[started[1]].set()
        await eventually(lambda: len(started) == 8)  # at 2 in flight: receive 4 more
        assert listener.receives == 2 and listener.in_flight == 6
        for body in bodies:
            gates[body].set()
        await eventually(lambda: listener.processed == 12)
        assert listener.in_flight_peak == 6 and sorted(started) == bodies
    finally:
        for gate in gates.values():
            gate.set()
        await listener.stop()


async def test_renewal_swaps_the_pop_receipt_and_the_final_delete_uses_it(queues: Queues) -> None:
    clock = fake_clock()
    gate = asyncio.Event()
    receipts: list[str] = []

    async def handler(msg: Any) -> None:
        receipts.append(msg.pop_receipt)
        await gate.wait()

    await queues.raw.send_message(b64("long"))
    listener = queues.listener(handler, QueueOptions(), clock)
    listener.start()
    try:
        await eventually(lambda: receipts and clock.slept.count(RENEWAL) == 1)
        for n in (1, 2):
            clock.advance(RENEWAL)  # half the visibility: the renewal timer fires
            await eventually(lambda n=n: listener.renewals == n and clock.slept.count(RENEWAL) == n + 1)
        gate.set()
        # The original receipt is stale after a renewal: only the renewed one deletes the message.
        await eventually(lambda: listener.processed == 1)
        assert await queues.count() == 0
    finally:
        gate.set()
        await listener.stop()


@pytest.mark.parametrize("how", ["deleted", "updated elsewhere"])
async def test_renewal_stops_for_good_when_the_message_is_lost(
    queues: Queues, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """404 (gone) or 400 (pop receipt mismatch): renewal stops; completion swallows the same answer."""
    clock = fake_clock()
    gate = asyncio.Event()
    lost = asyncio.Event()

    async def handler(msg: Any) -> None:
        if how == "deleted":
            await queues.raw.delete_message(msg.id, msg.pop_receipt)
        else:
            await queues.raw.update_message(msg.id, pop_receipt=msg.pop_receipt, visibility_timeout=600)
        lost.set()
        await gate.wait()

    await queues.raw.send_message(b64("x"))
    listener = queues.listener(handler, QueueOptions(), clock)
    caplog.set_level(logging.WARNING, logger="localdev.host.queues")
    listener.start()
    try:
        await eventually(lambda: lost.is_set() and clock.slept.count(RENEWAL) == 1)
        clock.advance(RENEWAL)
        await eventually(lambda: "renewal stopped" in caplog.text)
        for _ in range(3):
            clock.advance(RENEWAL)
            await asyncio.sleep(0.02)
        assert clock.slept.count(RENEWAL) == 1 and listener.renewals == 0  # no timer after the loss
        gate.set()
        await eventually(lambda: "no longer ours to complete" in caplog.text)
        assert listener.processed == 0
    finally:
        gate.set()
        await listener.stop()


async def test_a_message_outliving_its_visibility_is_not_redelivered_to_another_host(queues: Queues) -> None:
    """2 s receive visibility (real time, Azurite's clock): the handler runs through 3 renewals while a
    second listener polls the queue; the second never gets the message, the first deletes it."""
    first: list[int] = []
    second: list[int] = []
    holder: dict[str, QueueListener] = {}

    async def slow(msg: Any) -> None:
        first.append(msg.dequeue_count)
        await eventually(lambda: holder["a"].renewals >= 3, timeout=20)

    async def other(msg: Any) -> None:
        second.append(msg.dequeue_count)

    options = QueueOptions(max_polling_interval=0.2)
    a = holder["a"] = queues.listener(slow, options, visibility=2.0)
    b = queues.listener(other, options, visibility=2.0)
    await queues.raw.send_message(b64("slow"))
    a.start()
    await eventually(lambda: first)
    b.start()
    try:
        await eventually(lambda: a.processed == 1, timeout=25)
        assert b.receives >= 3  # it kept polling while the message was out of sight
        assert second == [] and first == [1] and await queues.count() == 0
    finally:
        await a.stop()
        await b.stop()


async def test_a_failed_message_is_released_with_visibility_timeout(queues: Queues) -> None:
    clock = fake_clock()
    seen: list[int] = []

    async def handler(msg: Any) -> None:
        seen.append(msg.dequeue_count)
        if msg.dequeue_count == 1:
            raise RuntimeError("planned failure")

    await queues.raw.send_message(b64("retry me"))
    listener = queues.listener(handler, QueueOptions(visibility_timeout=3.0), clock)
    listener.start()
    try:
        await eventually(lambda: listener.released == 1)
        assert await queues.raw.peek_messages() == [] and await queues.count() == 1  # invisible, kept
        (again,) = await eventually(queues.raw.peek_messages, timeout=10)  # visible after ~3 s
        assert again.dequeue_count == 1
        clock.advance(1.0)  # the listener's backoff passes: it receives the message again
        await eventually(lambda: listener.processed == 1)
        assert seen == [1, 2] and await queues.count() == 0
    finally:
        await listener.stop()


async def test_stop_lets_in_flight_messages_finish_and_completes_them(queues: Queues) -> None:
    gate = asyncio.Event()
    started: list[bytes] = []

    async def handler(msg: Any) -> None:
        started.append(msg.get_body())
        await gate.wait()
        if msg.get_body() == b"fail":
            raise RuntimeError("planned failure")

    await queues.raw.send_message(b64("ok"))
    await queues.raw.send_message(b64("fail"))
    listener = queues.listener(handler, QueueOptions(max_polling_interval=0.2))
    listener.start()
    await eventually(lambda: len(started) == 2)
    stopping = asyncio.ensure_future(listener.stop(grace_seconds=30))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the two functions
    gate.set()
    await stopping
    assert (listener.processed, listener.released) == (1, 1)
    (left,) = await queues.raw.peek_messages()  # the failed one, released (visibilityTimeout 0)
    assert left.content == b64("fail") and left.dequeue_count == 1


async def test_stop_past_the_grace_releases_the_cancelled_message(queues: Queues) -> None:
    async def handler(msg: Any) -> None:
        await asyncio.Event().wait()  # never finishes

    await queues.raw.send_message(b64("stuck"))
    listener = queues.listener(handler, QueueOptions(max_polling_interval=0.2))
    listener.start()
    await eventually(lambda: listener.in_flight == 1)
    await listener.stop(grace_seconds=0.1)
    assert listener.released == 1
    (left,) = await queues.raw.peek_messages()  # visible again for another host, not hidden 10 minutes
    assert left.content == b64("stuck")


async def test_two_hosts_on_one_queue_share_the_work_each_message_once(
    queues: Queues, azurite_queues: str
) -> None:
    """Two QueueServices (two hosts) on one queue. Host A's functions wait until host B has completed
    one, so both are sure to take part; every message runs exactly once."""
    total = 30
    runs: list[tuple[str, str]] = []
    b_did_one = asyncio.Event()

    async def on_a(msg: Any) -> None:
        runs.append(("a", msg.get_body().decode()))
        await b_did_one.wait()

    async def on_b(msg: Any) -> None:
        runs.append(("b", msg.get_body().decode()))
        b_did_one.set()

    env = {AZ: azurite_queues}
    options = QueueOptions(batch_size=4, new_batch_threshold=2, max_polling_interval=0.2)
    hosts = [
        QueueService([_function(h, queue=queues.name)], Invoker("."), env, options, receive_visibility=600)
        for h in (on_a, on_b)
    ]
    for i in range(total):
        await queues.raw.send_message(b64(f"m{i:02d}"))
    hosts[0].start()
    await eventually(lambda: len(runs) >= 4)
    hosts[1].start()
    try:
        await eventually(lambda: sum(h.listeners[0].processed for h in hosts) == total, timeout=30)
    finally:
        for host in hosts:
            await host.stop()
    bodies = [body for _, body in runs]
    assert sorted(bodies) == [f"m{i:02d}" for i in range(total)]  # each once: no duplicate delivery
    assert {who for who, _ in runs} == {"a", "b"}
    assert await queues.count() == 0


async def test_a_function_without_its_connection_is_in_error_and_the_others_run(
    queues: Queues, azurite_queues: str, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[bytes] = []

    async def handler(msg: Any) -> None:
        got.append(msg.get_body())

    functions = [
        _function(handler, "works", queues.name),
        _function(handler, "no_connection", queues.name, connection="ElsewhereStorage"),
        _function(handler, "no_queue_name", "%UNSET_QUEUE_SETTING%"),
    ]
    caplog.set_level(logging.ERROR, logger="localdev.host.queues")
    service = QueueService(
        functions, Invoker("."), {AZ: azurite_queues}, QueueOptions(max_polling_interval=0.2)
    )
    assert [listener.function.name for listener in service.listeners] == ["works"]
    assert "ElsewhereStorage__queueServiceUri" in service.errors["no_connection"]
    assert "UNSET_QUEUE_SETTING" in service.errors["no_queue_name"]
    assert "no_connection does not run" in caplog.text
    await queues.raw.send_message(b64("hello"))
    service.start()
    try:
        await eventually(lambda: got == [b"hello"])
    finally:
        await service.stop()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the probe goes: nothing listens


async def test_unreachable_storage_is_one_clear_error_then_quiet_polling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Azurite not started: one error naming the connection and how to start Azurite (not one per
    poll, not one per function), then every listener polls at maxPollingInterval."""
    clock = fake_clock()
    port = _closed_port()
    env = {
        AZ: f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    }

    async def handler(msg: Any) -> None:
        raise AssertionError("nothing to run")

    functions = [_function(handler, "one", "q-one"), _function(handler, "two", "q-two")]
    caplog.set_level(logging.DEBUG, logger="localdev.host.queues")
    service = QueueService(functions, Invoker("."), env, QueueOptions(max_polling_interval=7.0), clock)
    service.start()
    try:
        for rounds in range(1, 5):
            await eventually(lambda r=rounds: len(clock.slept) == 2 * r and clock.sleeping == 2, timeout=10)
            clock.advance(7.0)
        assert clock.slept == [7.0] * 8  # straight to maxPollingInterval, not 100 ms, 200 ms, ...
        records = [r for r in caplog.records if r.name == "localdev.host.queues"]
        assert len(records) == 1 and records[0].levelno == logging.ERROR, [r.getMessage() for r in records]
        text = records[0].getMessage()
        assert AZ in text and "Azurite" in text and str(port) in text
    finally:
        await service.stop()


async def test_the_host_wires_listeners_from_host_json(tmp_path: Path, azurite_queues: str) -> None:
    """queue_service_for reads the app's host.json extensions.queues and LOCALDEV_QUEUE_VISIBILITY_SECONDS."""
    from localdev.host.queues import queue_service_for

    (tmp_path / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"queues": {"batchSize": 3, "newBatchThreshold": 1}}})
    )

    async def handler(msg: Any) -> None:
        return None

    service = queue_service_for(
        [_function(handler)], Invoker("."), tmp_path, environ={AZ: azurite_queues, VISIBILITY_ENV: "5"}
    )
    assert service is not None
    (listener,) = service.listeners
    assert (listener.options.batch_size, listener.options.new_batch_threshold) == (3, 1)
    assert listener.receive_visibility == 5.0
    for service_client in service._services.values():
        await service_client.close()
