"""Queue triggers, run as the Functions host's Storage Queues extension runs them (against Azurite).

Per function: one listener task. It receives up to `batchSize` messages with a 10-minute visibility,
starts one task per message, and receives again as soon as in-flight work is at or below
`newBatchThreshold` (so at most batchSize + newBatchThreshold run at once); an empty receive (or an
error from the service) waits the randomized exponential backoff (100 ms, then ~200, 300, 500, 900 ms
... up to `maxPollingInterval`; 2 s in Development when host.json leaves it at the default), cut short
when a function of this host sends to the queue (`notify`, as the host's SharedQueueWatcher). While a
function runs, the message's visibility is renewed every half visibility with the latest pop receipt
(stopped for good on 400/404/409). Success deletes; failure releases it with host.json
`visibilityTimeout`, or moves the body to `<queue>-poison` once `dequeueCount` reaches
`maxDequeueCount`; a message already past it is poisoned without running. Bodies are base64-decoded
(`messageEncoding`); an undecodable one goes straight to poison. Several hosts on one Azurite share a
queue through its visibility: each message is invisible to the others while one host holds it. On
stop, in-flight functions finish (up to a grace period) and their messages are completed.

The connection (`connection="AzureWebJobsStorage"`) resolves as in Azure: `AzureWebJobs<name>`, then
`<name>`, as a connection string (`UseDevelopmentStorage=true` for Azurite); otherwise the identity
form `<name>__queueServiceUri` (or `__serviceUri`, or `__accountName` → https://<account>.queue.core
.windows.net) with `__credential=managedidentity` (+ `__clientId` or `__managedIdentityResourceId`), or
locally `__tenantId`/`__clientId`/`__clientSecret`, else the developer's chain (Azure CLI and friends).
A function whose connection or queue name cannot be resolved is "in error" (logged, listed in
`QueueService.errors`); the other functions run. Storage that cannot be reached (Azurite not started)
is reported once per connection with how to start it; the listeners then poll at `maxPollingInterval`.

App settings `AzureFunctionsJobHost__extensions__queues__<key>` override host.json's values, as in Azure.
Environment (local host only, never host.json): LOCALDEV_QUEUE_VISIBILITY_SECONDS shortens the
receive visibility (the host's hard-coded 600 s; renewal every half of it) for tests that need a
message to outlive its visibility quickly. Whole seconds, 2-600.
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
VISIBILITY_ENV = "LOCALDEV_QUEUE_VISIBILITY_SECONDS"
MIN_POLL = 0.1
MAX_BATCH = 32
LOST_OWNERSHIP = (400, 404, 409)  # pop receipt mismatch, message or queue gone, queue being deleted


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
        queues = {**queues, **_overrides(environ)}

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
        visibility = span("visibilityTimeout", 0.0)
        if not 0 <= visibility <= 7 * 24 * 3600:
            raise QueueConfigError("host.json extensions.queues.visibilityTimeout must be 0 to 7 days")
        encoding = str(queues.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise QueueConfigError("host.json extensions.queues.messageEncoding must be base64 or none")
        return cls(
            batch_size=batch,
            new_batch_threshold=threshold,
            max_dequeue_count=count("maxDequeueCount", 5, 1, 10_000),
            visibility_timeout=visibility,
            max_polling_interval=polling,
            message_encoding=encoding,
        )


OVERRIDE_PREFIX = "AzureFunctionsJobHost__extensions__queues__"
_COUNTS = ("batchSize", "newBatchThreshold", "maxDequeueCount")


def _overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """App settings that override host.json, as in Azure: AzureFunctionsJobHost__extensions__queues__<key>."""
    found: dict[str, Any] = {}
    for key in (*_COUNTS, "visibilityTimeout", "maxPollingInterval", "messageEncoding"):
        raw = environ.get(OVERRIDE_PREFIX + key)
        if raw is None:
            continue
        raw = raw.strip()
        if key in _COUNTS:
            if not raw.isdigit():
                raise QueueConfigError(f"app setting {OVERRIDE_PREFIX}{key} must be a whole number")
            found[key] = int(raw)
        else:
            found[key] = raw
    return found


def visibility_from_env(environ: Mapping[str, str]) -> float:
    """The receive visibility: 600 s as the host, or LOCALDEV_QUEUE_VISIBILITY_SECONDS (tests)."""
    raw = environ.get(VISIBILITY_ENV, "").strip()
    if not raw:
        return RECEIVE_VISIBILITY
    if not raw.isdigit() or not 2 <= int(raw) <= 600:
        raise QueueConfigError(f"{VISIBILITY_ENV} must be a whole number of seconds, 2-600 (got {raw!r})")
    return float(raw)


class Backoff:
    """RandomizedExponentialBackoffStrategy(minimum 100 ms, maximum maxPollingInterval, delta 100 ms).

    As the host's: a success resets to the minimum with exponent 1; each failure adds
    rand(0.8, 1.2) x 2^(exponent-1) x delta to the minimum (nothing while the exponent is 0) until the
    maximum, where it stays.
    """

    def __init__(self, maximum: float, rng: random.Random | None = None, minimum: float = MIN_POLL) -> None:
        self.minimum, self.maximum, self.delta = minimum, max(minimum, maximum), minimum
        self.rng = rng or random.Random()
        self.exponent = 0
        self.current = minimum

    def next(self, succeeded: bool) -> float:
        if succeeded:
            self.current, self.exponent = self.minimum, 1
        elif self.current != self.maximum:
            interval = self.minimum
            if self.exponent > 0:
                interval += self.rng.uniform(0.8, 1.2) * (2 ** (self.exponent - 1)) * self.delta
            if interval < self.maximum:
                self.current = interval
                self.exponent += 1
            else:
                self.current = self.maximum
        return self.current


def poison_name(queue: str) -> str | None:
    """`<queue>-poison`, or None when the queue is a poison queue or the name would be too long."""
    if queue.endswith("-poison") or len(queue) + 7 > 63:
        return None
    return f"{queue}-poison"


def _listener_retry() -> Any:
    """Retries like the .NET SDK's defaults (0.8 s base, 3 tries), not the Python SDK's 15 s base, which
    would hold a completing message for over a minute when storage blips."""
    from azure.storage.queue._shared.policies_async import ExponentialRetry  # the aio one (not exported)

    return ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=1)


def queue_service(connection: str, environ: Mapping[str, str]) -> Any:
    """An aio QueueServiceClient for a trigger's `connection`, resolved as the host resolves it."""
    from azure.storage.queue.aio import QueueServiceClient

    # the app's lean transport: no per-request env lookups
    from shared.transport import client_options, from_connection_string

    names = (
        [connection] if connection.startswith("AzureWebJobs") else [f"AzureWebJobs{connection}", connection]
    )
    for name in names:
        raw = (environ.get(name) or "").strip()
        if raw:
            try:
                return from_connection_string(QueueServiceClient, raw, retry_policy=_listener_retry())
            except ValueError:  # never the value: a connection string carries the account key
                raise QueueConfigError(
                    f"the app setting {name} is not a storage connection string "
                    "(UseDevelopmentStorage=true for Azurite, or DefaultEndpointsProtocol=...;AccountName=...)"
                ) from None
    for prefix in names:
        uri = environ.get(f"{prefix}__queueServiceUri") or environ.get(f"{prefix}__serviceUri")
        account = environ.get(f"{prefix}__accountName")
        if not uri and account:
            uri = f"https://{account}.queue.core.windows.net"
        if uri:
            return QueueServiceClient(
                uri,
                credential=_credential(prefix, environ),
                retry_policy=_listener_retry(),
                **client_options(uri),
            )
    raise QueueConfigError(
        f"the queue connection {connection!r} is not set: set the app setting {connection} to a connection "
        f"string (UseDevelopmentStorage=true for Azurite) or {connection}__queueServiceUri (or "
        f"{connection}__serviceUri, {connection}__accountName) with {connection}__credential=managedidentity"
    )


def _credential(prefix: str, environ: Mapping[str, str]) -> Any:
    """The identity of an identity-based connection, as the host picks it."""
    kind = environ.get(f"{prefix}__credential", "").strip().lower()
    client_id = environ.get(f"{prefix}__clientId") or None
    resource_id = environ.get(f"{prefix}__managedIdentityResourceId") or None
    if kind == "managedidentity":
        from azure.identity.aio import ManagedIdentityCredential

        if client_id and resource_id:
            raise QueueConfigError(f"set {prefix}__clientId or {prefix}__managedIdentityResourceId, not both")
        if resource_id:
            return ManagedIdentityCredential(identity_config={"mi_res_id": resource_id})
        return ManagedIdentityCredential(client_id=client_id)
    if kind:
        raise QueueConfigError(f"{prefix}__credential must be managedidentity (or unset), got {kind!r}")
    tenant, secret = environ.get(f"{prefix}__tenantId"), environ.get(f"{prefix}__clientSecret")
    if tenant and client_id and secret:  # the local-only service principal form
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(tenant, client_id, secret)
    from azure.identity.aio import DefaultAzureCredential  # local: the developer's chain, as Core Tools

    return DefaultAzureCredential(exclude_managed_identity_credential=True)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


class Reachability:
    """One connection's "can storage be reached": one error when it cannot, one line when it can again."""

    def __init__(self, connection: str, endpoint: str) -> None:
        self.connection, self.endpoint = connection, endpoint
        self.down = False

    def failed(self) -> None:
        if not self.down:
            self.down = True
            _log.error(
                "queue triggers: cannot reach the storage of connection %s (%s). Start Azurite "
                "(`make run` starts it when installed; or `npx azurite --inMemoryPersistence`; "
                "`npm ci` installs it), or point %s at a reachable account. The queue functions "
                "poll again every maxPollingInterval.",
                self.connection,
                self.endpoint,
                self.connection,
            )

    def ok(self) -> None:
        if self.down:
            self.down = False
            _log.info("queue triggers: the storage of connection %s is reachable again", self.connection)


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
    reachability: Reachability | None = None
    processed: int = 0  # deleted after success
    released: int = 0  # failed, made visible again after visibilityTimeout
    poisoned: int = 0
    receives: int = 0  # GetMessages requests answered
    renewals: int = 0  # visibility renewals that succeeded
    in_flight_peak: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _processing: set[asyncio.Task[None]] = field(default_factory=set)
    _queue: Any = None
    _poison: Any = None
    _task: asyncio.Task[None] | None = None
    _error: str | None = None

    def notify(self) -> None:
        self._wake.set()

    def _count_receive(self, response: Any) -> None:
        self.receives += 1  # GetMessages requests that reached the service (a test checks one per poll)

    @property
    def in_flight(self) -> int:
        return len(self._processing)

    def start(self) -> None:
        self._queue = self.service.get_queue_client(self.queue_name)  # raw text: decoding is ours
        name = poison_name(self.queue_name)
        self._poison = self.service.get_queue_client(name) if name else None
        self._task = asyncio.ensure_future(self._run())

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop receiving; let in-flight functions finish and complete their messages (up to the grace)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._processing:
            await asyncio.wait(set(self._processing), timeout=grace_seconds)
            for task in list(self._processing):
                task.cancel()  # the message is released (see _process), as a cancelled invocation
            await asyncio.gather(*self._processing, return_exceptions=True)
        await self._queue.close()
        if self._poison is not None:
            await self._poison.close()

    async def _backoff(self, delay: float) -> None:
        """Sleep `delay`, or less if notified since the last receive began (that notify is not lost)."""
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def _receive(self) -> list[Any]:
        """One poll: until the queue is known to exist, ask whether it does (the host's `ExistsAsync`, so a
        missing queue is a backoff, not a 404 per poll), then receive a batch; [] on an empty queue, a
        missing one or an error. Like the host, a trigger's queue is never created here: infra creates
        it in Azure (infra/), and the app's first send does wherever it sends."""
        from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError

        self._wake.clear()  # a notify from here on cuts the next backoff short
        try:
            if self._error != "exists":
                try:
                    await self._queue.get_queue_properties(retry_connect=0)
                except ResourceNotFoundError:
                    if self._error != "missing":  # once, not once per poll
                        _log.info(
                            "queue %s does not exist yet: %s waits for it (the host does not create a "
                            "trigger's queue; infra/ does in Azure, and the first message sent to it here)",
                            self.queue_name,
                            self.function.name,
                        )
                    self._error = "missing"
                    if self.reachability is not None:
                        self.reachability.ok()
                    return []
                self._error = "exists"
            # One GetMessages per poll, as the host's ReceiveMessagesAsync: the SDK's iterator would
            # ask again until the queue answers empty, holding the first messages back meanwhile.
            pages = self._queue.receive_messages(
                messages_per_page=self.options.batch_size,
                visibility_timeout=int(self.receive_visibility),
                retry_connect=0,
                raw_response_hook=self._count_receive,
            ).by_page()
            try:
                batch = [m async for m in await pages.__anext__()]
            except StopAsyncIteration:  # the queue answered no message
                batch = []
        except ServiceRequestError:  # nothing listens there: one error per connection, then quiet
            self._error = "unreachable"
            if self.reachability is not None:
                self.reachability.failed()
            return []
        except Exception as exc:  # noqa: BLE001 - the listener keeps polling whatever one receive hit
            kind = f"{type(exc).__name__} {_status(exc)}"
            if self._error != kind:  # once per kind of failure, not once per poll
                _log.warning("queue %s: receive failed (%s); backing off", self.queue_name, kind)
            self._error = kind
            return []
        if self.reachability is not None:
            self.reachability.ok()
        return batch

    async def _run(self) -> None:
        backoff = Backoff(self.options.max_polling_interval, self.rng)
        found_since_last_delay = False
        while True:
            batch = await self._receive()
            if not batch:
                if self._error == "unreachable":
                    delay = self.options.max_polling_interval
                else:
                    delay = backoff.next(found_since_last_delay)
                await self._backoff(delay)
                found_since_last_delay = False
                continue
            for message in batch:
                task = asyncio.ensure_future(self._process(message))
                self._processing.add(task)
                task.add_done_callback(self._processing.discard)
            self.in_flight_peak = max(self.in_flight_peak, len(self._processing))
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
            done = asyncio.Event()
            renewal = asyncio.ensure_future(self._renew(message, holder, done))
            try:
                result = await self.invoker.invoke(
                    self.function, lambda: self._trigger_value(message, body, holder), str(uuid.uuid4())
                )
            except asyncio.CancelledError:  # stopped past the grace: released, as a cancelled invocation
                done.set()
                await asyncio.shield(self._settle(renewal, message, holder, False))
                raise
            done.set()
            await self._settle(renewal, message, holder, result.succeeded)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one message's bookkeeping failure must not stop the listener
            _log.error("queue %s: message %s: %s", self.queue_name, message.id, type(exc).__name__)

    async def _settle(
        self, renewal: asyncio.Task[None], message: Any, holder: dict[str, str], succeeded: bool
    ) -> None:
        """Wait for a renewal in progress (its new pop receipt is the one to complete with), then complete."""
        await asyncio.gather(renewal, return_exceptions=True)
        await self._complete(message, holder, succeeded)

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

    async def _renew(self, message: Any, holder: dict[str, str], done: asyncio.Event) -> None:
        """Every half visibility, extend the message's invisibility; stop for good once ownership is lost.

        Ends when `done` is set between renewals; a renewal under way finishes first, so its new pop
        receipt is the one the completion uses.
        """
        from azure.core.exceptions import AzureError

        normal = self.receive_visibility / 2
        interval = normal
        while True:
            sleeper = asyncio.ensure_future(self.clock.sleep(interval))
            waiter = asyncio.ensure_future(done.wait())
            try:
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waiter):
                    task.cancel()
                await asyncio.gather(sleeper, waiter, return_exceptions=True)
            if done.is_set():
                return
            try:
                updated = await self._queue.update_message(
                    message.id, pop_receipt=holder["receipt"], visibility_timeout=int(self.receive_visibility)
                )
                holder["receipt"] = updated.pop_receipt
                self.renewals += 1
                interval = normal
            except AzureError as exc:
                if _status(exc) in LOST_OWNERSHIP:
                    _log.warning(
                        "queue %s: lost message %s while it ran (%s); renewal stopped",
                        self.queue_name,
                        message.id,
                        _status(exc),
                    )
                    return
                # 5xx or no answer: renew sooner, down to a floor (the host's LinearSpeedupStrategy)
                interval = max(min(60.0, normal / 5), interval / 2)

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
                self.released += 1
        except AzureError as exc:
            if _status(exc) not in LOST_OWNERSHIP:  # receipt mismatch / gone / being deleted: swallowed
                raise
            _log.warning(
                "queue %s: message %s was no longer ours to complete (%s)",
                self.queue_name,
                message.id,
                _status(exc),
            )

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
        receive_visibility: float | None = None,
    ) -> None:
        self.listeners: list[QueueListener] = []
        self.errors: dict[str, str] = {}
        self._services: dict[str, Any] = {}
        self._reachability: dict[str, Reachability] = {}
        visibility = visibility_from_env(environ) if receive_visibility is None else receive_visibility
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
                    service = queue_service(connection, environ)
                    self._services[connection] = service
                    self._reachability[connection] = Reachability(connection, str(service.url))
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
                    visibility,
                    self._reachability[connection],
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
        _sent_hooks().append(self.notify)  # the app's own sends wake this host's listeners

    async def stop(self, grace_seconds: float = 5.0) -> None:
        for hooks in (POISON_HOOKS, _sent_hooks()):
            if self.notify in hooks:
                hooks.remove(self.notify)
        await asyncio.gather(*(listener.stop(grace_seconds) for listener in self.listeners))
        for service in self._services.values():
            await service.close()


_NO_HOOKS: list[Callable[[str], None]] = []


def _sent_hooks() -> list[Callable[[str], None]]:
    try:
        from shared.fanout.queues import SENT_HOOKS
    except ImportError:  # an app without the fan-out: nothing sends
        return _NO_HOOKS
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
