"""Queue triggers, run as the Functions host's Storage Queues extension runs them (against Azurite).

Per function: one listener task. It receives up to `batchSize` messages with a 10-minute visibility,
starts one task per message, and receives again as soon as in-flight work is at or below
`newBatchThreshold`; an empty receive (or an error from the service) waits the randomized exponential
backoff (100 ms, then ~200, 300, 500, 900 ms ... up to `maxPollingInterval`; 2 s in Development), cut
short when a function of this host sends to the queue. While a function runs, the message's visibility
is renewed every half visibility (stopped for good on 400/404/409). Success deletes; failure releases it
with host.json `visibilityTimeout`, or moves the body to `<queue>-poison` once `dequeueCount` reaches
`maxDequeueCount`; a message already past it is poisoned without running. Bodies are base64-decoded
(`messageEncoding`); an undecodable one goes straight to poison. Several hosts on one Azurite share a
queue through its visibility: each message is invisible to the others while one host holds it.

The connection (`connection="AzureWebJobsStorage"`) resolves as in Azure: the setting itself is a
connection string; otherwise `<prefix>__queueServiceUri` (or `__serviceUri`, or `__accountName`) with
a credential (`__credential=managedidentity` and `__clientId`, else the local developer chain).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from .clock import Clock, SystemClock
from .invocation import Invoker
from .ncrontab import ScheduleError, resolve_settings
from .registry import RegisteredFunction
from .retry import parse_host_timespan

_log = logging.getLogger("localdev.host.queues")

QUEUE_TRIGGER = "queueTrigger"
RECEIVE_VISIBILITY = 600.0  # the listener's hard-coded 10 minutes
MIN_POLL = 0.1
MAX_BATCH = 32


class QueueConfigError(ValueError):
    """host.json extensions.queues or a queue function's connection cannot be used; says what to fix."""


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the extension's defaults and validation."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, document: Mapping[str, Any], environ: Mapping[str, str]) -> QueueOptions:
        queues = ((document.get("extensions") or {}).get("queues")) or {}
        if not isinstance(queues, Mapping):
            raise QueueConfigError("host.json extensions.queues must be an object")

        def count(key: str, default: int, low: int, high: int) -> int:
            raw = queues.get(key, default)
            if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
                raise QueueConfigError(
                    f"host.json extensions.queues.{key} must be a whole number {low}-{high}"
                )
            return raw

        def span(key: str, default: float) -> float:
            raw = queues.get(key)
            if raw is None:
                return default
            try:
                return parse_host_timespan(str(raw), f"host.json extensions.queues.{key}")
            except ValueError as exc:
                raise QueueConfigError(str(exc)) from None

        batch = count("batchSize", 16, 1, MAX_BATCH)
        threshold = count("newBatchThreshold", batch // 2, 0, 10_000)  # processorCount 1, as on Consumption
        polling = span("maxPollingInterval", 60.0)
        if polling < MIN_POLL:
            raise QueueConfigError(
                "host.json extensions.queues.maxPollingInterval must be at least 00:00:00.1"
            )
        development = environ.get("AZURE_FUNCTIONS_ENVIRONMENT", "").lower() == "development"
        if development and "maxPollingInterval" not in queues:
            polling = 2.0
        encoding = str(queues.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise QueueConfigError("host.json extensions.queues.messageEncoding must be base64 or none")
        return cls(
            batch_size=batch,
            new_batch_threshold=threshold,
            max_dequeue_count=count("maxDequeueCount", 5, 1, 10_000),
            visibility_timeout=span("visibilityTimeout", 0.0),
            max_polling_interval=polling,
            message_encoding=encoding,
        )


class Backoff:
    """RandomizedExponentialBackoffStrategy(minimum 100 ms, maximum maxPollingInterval, delta 100 ms)."""

    def __init__(self, maximum: float, rng: random.Random | None = None, minimum: float = MIN_POLL) -> None:
        self.minimum, self.maximum, self.delta = minimum, max(minimum, maximum), minimum
        self.rng = rng or random.Random()
        self.exponent = 0
        self.current = minimum

    def next(self, succeeded: bool) -> float:
        if succeeded:
            self.current, self.exponent = self.minimum, 1
            return self.current
        if self.current < self.maximum:
            increment = self.rng.uniform(0.8, 1.2) * (2 ** max(0, self.exponent - 1)) * self.delta
            self.exponent += 1
            self.current = min(self.maximum, self.minimum + increment)
        return self.current


def poison_name(queue: str) -> str | None:
    """`<queue>-poison`, or None when the queue is a poison queue or the name would be too long."""
    if queue.endswith("-poison") or len(queue) + 7 > 63:
        return None
    return f"{queue}-poison"


def queue_service(connection: str, environ: Mapping[str, str]) -> Any:
    """An aio QueueServiceClient for a trigger's `connection`, resolved as the host resolves it."""
    from azure.storage.queue.aio import QueueServiceClient

    raw = (environ.get(connection) or environ.get(f"AzureWebJobs{connection}") or "").strip()
    if raw:
        return QueueServiceClient.from_connection_string(raw)
    prefix = connection
    uri = environ.get(f"{prefix}__queueServiceUri") or environ.get(f"{prefix}__serviceUri")
    account = environ.get(f"{prefix}__accountName")
    if not uri and account:
        uri = f"https://{account}.queue.core.windows.net"
    if not uri:
        raise QueueConfigError(
            f"the queue connection {connection!r} is not set: give {connection} a connection string "
            f"(UseDevelopmentStorage=true for Azurite) or {connection}__queueServiceUri with "
            f"{connection}__credential=managedidentity"
        )
    if environ.get(f"{prefix}__credential", "").lower() == "managedidentity":
        from azure.identity.aio import ManagedIdentityCredential

        client_id = environ.get(f"{prefix}__clientId") or None
        credential: Any = ManagedIdentityCredential(client_id=client_id)
    else:  # local: the developer's chain (Azure CLI and friends), as Core Tools does
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(exclude_managed_identity_credential=True)
    return QueueServiceClient(uri, credential=credential)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


@dataclass
class QueueListener:
    """One queue function's listener (§ the host's QueueListener.ExecuteAsync)."""

    function: RegisteredFunction
    queue_name: str
    service: Any
    invoker: Invoker
    options: QueueOptions
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    receive_visibility: float = RECEIVE_VISIBILITY
    processed: int = 0
    poisoned: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _processing: set[asyncio.Task[None]] = field(default_factory=set)
    _queue: Any = None
    _poison: Any = None
    _task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._queue = self.service.get_queue_client(self.queue_name)  # raw text: decoding is ours
        name = poison_name(self.queue_name)
        self._poison = self.service.get_queue_client(name) if name else None
        self._task = asyncio.ensure_future(self._run())

    async def stop(self, grace_seconds: float = 5.0) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._processing:
            await asyncio.wait(set(self._processing), timeout=grace_seconds)
            for task in list(self._processing):
                task.cancel()
            await asyncio.gather(*self._processing, return_exceptions=True)
        await self._queue.close()
        if self._poison is not None:
            await self._poison.close()

    async def _backoff(self, delay: float) -> None:
        self._wake.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, waker):
            task.cancel()
        await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def _run(self) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        backoff = Backoff(self.options.max_polling_interval, self.rng)
        found_since_last_delay = False
        exists = False
        while True:
            batch: list[Any] = []
            try:
                if not exists:
                    await self._queue.create_queue()
                    exists = True
            except ResourceExistsError:  # already there (the SDK raises it on a 204 or a 409)
                exists = True
            except (AzureError, OSError):
                exists = False
            if exists:
                try:
                    batch = [
                        m
                        async for m in self._queue.receive_messages(
                            messages_per_page=self.options.batch_size,
                            max_messages=self.options.batch_size,
                            visibility_timeout=int(self.receive_visibility),
                        )
                    ]
                except (AzureError, OSError) as exc:
                    exists = False
                    _log.warning(
                        "queue %s: receive failed (%s); backing off", self.queue_name, type(exc).__name__
                    )
            if not batch:
                await self._backoff(backoff.next(found_since_last_delay))
                found_since_last_delay = False
                continue
            for message in batch:
                task = asyncio.ensure_future(self._process(message))
                self._processing.add(task)
                task.add_done_callback(self._processing.discard)
            found_since_last_delay = True
            while len(self._processing) > self.options.new_batch_threshold:
                await asyncio.wait(set(self._processing), return_when=asyncio.FIRST_COMPLETED)

    def _decode(self, content: str) -> bytes | None:
        if self.options.message_encoding == "none":
            return content.encode("utf-8")
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            return None

    async def _process(self, message: Any) -> None:
        holder = {"receipt": message.pop_receipt}
        try:
            if message.dequeue_count > self.options.max_dequeue_count:
                await self._move_to_poison(message, holder, "a previous attempt never completed")
                return
            body = self._decode(message.content or "")
            if body is None:
                _log.error(
                    "queue %s: Message decoding has failed! Check MessageEncoding settings.", self.queue_name
                )
                await self._move_to_poison(message, holder, "undecodable")
                return
            renewal = asyncio.ensure_future(self._renew(message, holder))
            try:
                result = await self.invoker.invoke(
                    self.function, lambda: self._trigger_value(message, body, holder), str(uuid.uuid4())
                )
            finally:
                renewal.cancel()
                await asyncio.gather(renewal, return_exceptions=True)
            await self._complete(message, holder, result.succeeded)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one message's bookkeeping failure must not stop the listener
            _log.error("queue %s: message %s: %s", self.queue_name, message.id, type(exc).__name__)

    def _trigger_value(self, message: Any, body: bytes, holder: dict[str, str]) -> func.QueueMessage:
        from azure.functions.queue import QueueMessage  # the converter's class, as the worker passes it

        return QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=holder["receipt"],
        )

    async def _renew(self, message: Any, holder: dict[str, str]) -> None:
        """Every half visibility, extend the message's invisibility; stop for good once ownership is lost."""
        from azure.core.exceptions import AzureError

        interval = self.receive_visibility / 2
        while True:
            await self.clock.sleep(interval)
            try:
                updated = await self._queue.update_message(
                    message.id, pop_receipt=holder["receipt"], visibility_timeout=int(self.receive_visibility)
                )
                holder["receipt"] = updated.pop_receipt
                interval = self.receive_visibility / 2
            except AzureError as exc:
                if _status(exc) in (400, 404, 409):
                    _log.warning("queue %s: lost message %s while it ran", self.queue_name, message.id)
                    return
                interval = max(60.0 if self.receive_visibility >= 120 else 1.0, interval / 2)

    async def _complete(self, message: Any, holder: dict[str, str], succeeded: bool) -> None:
        from azure.core.exceptions import AzureError

        try:
            if succeeded:
                await self._queue.delete_message(message.id, holder["receipt"])
                self.processed += 1
            elif self._poison is not None and message.dequeue_count >= self.options.max_dequeue_count:
                await self._move_to_poison(message, holder, f"failed {message.dequeue_count} times")
            else:
                await self._queue.update_message(
                    message.id,
                    pop_receipt=holder["receipt"],
                    visibility_timeout=int(self.options.visibility_timeout),
                )
        except AzureError as exc:
            if _status(exc) not in (
                400,
                404,
                409,
            ):  # receipt mismatch / gone / queue being deleted: swallowed
                raise

    async def _move_to_poison(self, message: Any, holder: dict[str, str], why: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        if self._poison is None:
            return  # no poison queue: left invisible, as the host does
        _log.warning(
            "queue %s: Message has reached MaxDequeueCount of %d (%s). Moving message to queue '%s'.",
            self.queue_name,
            self.options.max_dequeue_count,
            why,
            self._poison.queue_name,
        )
        try:
            await self._poison.create_queue()
        except ResourceExistsError:
            pass
        await self._poison.send_message(message.content)
        await self._queue.delete_message(message.id, holder["receipt"])
        self.poisoned += 1
        for hook in list(POISON_HOOKS):
            hook(self._poison.queue_name)


POISON_HOOKS: list[Callable[[str], None]] = []


class QueueService:
    """Every queue function's listener; `notify(queue)` wakes the listeners of that queue."""

    def __init__(
        self,
        functions: list[RegisteredFunction],
        invoker: Invoker,
        environ: Mapping[str, str],
        options: QueueOptions,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        receive_visibility: float = RECEIVE_VISIBILITY,
    ) -> None:
        self.listeners: list[QueueListener] = []
        self.errors: dict[str, str] = {}
        self._services: dict[str, Any] = {}
        for function in functions:
            if function.disabled:
                continue
            connection = str(function.binding.get("connection") or "AzureWebJobsStorage")
            try:
                try:
                    name = resolve_settings(str(function.binding.get("queueName", "")), environ).lower()
                except ScheduleError as exc:
                    setting = str(exc).split("names app setting ", 1)[-1].split(",", 1)[0]
                    raise QueueConfigError(
                        f"its queue name names app setting {setting}, which is not set"
                    ) from None
                if connection not in self._services:
                    self._services[connection] = queue_service(connection, environ)
            except QueueConfigError as exc:
                # As the host: the function's listener is in error (logged), the rest of the app runs.
                self.errors[function.name] = str(exc)
                _log.error("queue function %s does not run: %s", function.name, exc)
                continue
            self.listeners.append(
                QueueListener(
                    function,
                    name,
                    self._services[connection],
                    invoker,
                    options,
                    clock or SystemClock(),
                    rng or random.Random(),
                    receive_visibility,
                )
            )

    def notify(self, queue: str) -> None:
        for listener in self.listeners:
            if listener.queue_name == queue.lower():
                listener.notify()

    def start(self) -> None:
        for listener in self.listeners:
            listener.start()
        POISON_HOOKS.append(self.notify)
        try:
            from shared.fanout.queues import SENT_HOOKS  # the app's own sends wake this host's listeners
        except ImportError:
            return
        SENT_HOOKS.append(self.notify)

    async def stop(self) -> None:
        for hooks in (POISON_HOOKS, _sent_hooks()):
            if self.notify in hooks:
                hooks.remove(self.notify)
        await asyncio.gather(*(listener.stop() for listener in self.listeners))
        for service in self._services.values():
            await service.close()


def _sent_hooks() -> list[Callable[[str], None]]:
    try:
        from shared.fanout.queues import SENT_HOOKS
    except ImportError:
        return []
    return SENT_HOOKS


def queue_service_for(
    functions: list[RegisteredFunction],
    invoker: Invoker,
    app_dir: Path,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    environ: Mapping[str, str] | None = None,
) -> QueueService | None:
    """The host's queue listeners (None when the app has no queue function)."""
    import json

    queue_functions = [f for f in functions if f.trigger_type == QUEUE_TRIGGER]
    if not queue_functions:
        return None
    env = os.environ if environ is None else environ
    path = app_dir / "host.json"
    document = json.loads(path.read_text(encoding="utf-8-sig")) if path.is_file() else {}
    return QueueService(queue_functions, invoker, env, QueueOptions.from_host_json(document, env), clock, rng)


class QueueTriggers:
    """Queue functions as the admin API sees them: the queue, and a manual run with a message body."""

    def __init__(self, host: Any) -> None:
        self.host = host

    def describe(self, function: RegisteredFunction, base_url: str) -> dict[str, Any]:
        return {
            "queueName": function.binding.get("queueName"),
            "connection": function.binding.get("connection"),
        }

    def manual_input(self, function: RegisteredFunction, value: Any) -> Any:
        if not isinstance(value, str):
            from .context import ManualInputError

            raise ManualInputError("For a queue function, send the message body as a string input.")
        return value

    async def manual_run(self, function: RegisteredFunction, value: Any, invocation_id: str) -> None:
        body = str(value).encode("utf-8")

        def message() -> func.QueueMessage:
            from azure.functions.queue import QueueMessage

            return QueueMessage(id=invocation_id, body=body, dequeue_count=1, pop_receipt=None)

        await self.host.invoker.invoke(function, message, invocation_id)
