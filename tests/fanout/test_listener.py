"""The local host's queue listener against Azurite: base64, success deletes, failures count dequeues and
end in <queue>-poison, an undecodable body goes to poison at once; the backoff's bounds."""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from typing import Any

import pytest

from localdev.host.invocation import Invoker
from localdev.host.queues import Backoff, QueueListener, QueueOptions, poison_name
from localdev.host.registry import RegisteredFunction


def test_backoff_follows_the_hosts_sequence_and_caps() -> None:
    backoff = Backoff(2.0, random.Random(1))
    assert backoff.next(True) == pytest.approx(0.1)
    delays = [backoff.next(False) for _ in range(12)]
    assert 0.18 <= delays[0] <= 0.22 and 0.26 <= delays[1] <= 0.34  # 100 ms + 0.8-1.2 × 2^(n-1) × 100 ms
    assert delays == sorted(delays) and delays[-1] == 2.0
    assert backoff.next(True) == pytest.approx(0.1)


def test_options_defaults_and_validation() -> None:
    options = QueueOptions.from_host_json({}, {"AZURE_FUNCTIONS_ENVIRONMENT": "Development"})
    assert (options.batch_size, options.new_batch_threshold, options.max_dequeue_count) == (16, 8, 5)
    assert options.max_polling_interval == 2.0
    from localdev.host.queues import QueueConfigError

    with pytest.raises(QueueConfigError, match="batchSize"):
        QueueOptions.from_host_json({"extensions": {"queues": {"batchSize": 33}}}, {})
    assert poison_name("kv-rotate") == "kv-rotate-poison" and poison_name("kv-rotate-poison") is None


def _function(handler: Any) -> RegisteredFunction:
    return RegisteredFunction(
        name="probe",
        trigger_type="queueTrigger",
        trigger_name="msg",
        user_function=handler,
        is_async=True,
        wants_context=False,
        has_return=False,
        binding={"queueName": "q"},
        function_json={},
    )


async def _drain(listener: QueueListener, until: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not until():
            await asyncio.sleep(0.02)


async def test_messages_run_fail_and_reach_poison(azurite_queues: str) -> None:
    from azure.storage.queue.aio import QueueServiceClient

    seen: list[tuple[bytes, int]] = []

    async def handler(msg: Any) -> None:
        seen.append((msg.get_body(), msg.dequeue_count))
        if msg.get_body() == b"fail":
            raise RuntimeError("planned failure")

    name = f"q{uuid.uuid4().hex[:10]}"
    service = QueueServiceClient.from_connection_string(azurite_queues)
    options = QueueOptions(batch_size=4, new_batch_threshold=2, max_dequeue_count=3, max_polling_interval=0.2)
    listener = QueueListener(_function(handler), name, service, Invoker("."), options)
    raw = service.get_queue_client(name)
    await raw.create_queue()
    await raw.send_message(base64.b64encode(b"ok").decode())
    await raw.send_message(base64.b64encode(b"fail").decode())
    await raw.send_message("not base64 ***")
    listener.start()
    try:
        try:
            await _drain(listener, lambda: listener.processed == 1 and listener.poisoned == 2)
        except TimeoutError:
            task = listener._task
            crashed = task.exception() if task is not None and task.done() else None
            raise AssertionError((listener.processed, listener.poisoned, seen, repr(crashed))) from None
    finally:
        await listener.stop()
    assert (b"ok", 1) in seen
    assert [d for b, d in seen if b == b"fail"] == [1, 2, 3]  # maxDequeueCount tries, then poison
    poison = service.get_queue_client(f"{name}-poison")
    bodies = sorted([m.content async for m in poison.receive_messages()])
    assert bodies == sorted([base64.b64encode(b"fail").decode(), "not base64 ***"])  # the body, as it was
    assert await raw.peek_messages() == []
    await poison.close()
    await raw.close()
    await service.close()
