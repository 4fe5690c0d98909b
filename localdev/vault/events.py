"""Key Vault events (Event Grid schema) for a webhook: SecretNewVersionCreated, SecretNearExpiry, -Expired.

Delivery runs in a background task fed by a bounded queue: a vault request only enqueues, so a slow or
absent webhook never blocks or fails it. Retries are bounded; failures are logged and dropped.
Near-expiry (30 days before `exp`) and expiry follow the emulator clock and fire once per version.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from typing import Any

import aiohttp
from yarl import URL

from .auth import RESOURCE_GROUP, SUBSCRIPTION_ID
from .store import DAY, SecretRecord, SecretVersion, VaultStore

_log = logging.getLogger("localdev.vault.events")

NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
EXPIRED = "Microsoft.KeyVault.SecretExpired"
NEAR_EXPIRY_WINDOW = 30 * DAY
DEFAULT_WEBHOOK = "http://127.0.0.1:7071/runtime/webhooks/eventgrid?functionName=keyvault_events"


class EventPublisher:
    def __init__(
        self,
        url: str,
        store: VaultStore,
        *,
        check_interval: float = 60.0,
        attempts: int = 3,
        retry_delay: float = 0.5,
        queue_size: int = 1000,
    ) -> None:
        self.url = url
        self.store = store
        self.vault_url = ""
        self.check_interval = check_interval
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.delivered = 0
        self.failed = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self._near_sent: set[str] = set()
        self._expired_sent: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    # ---- producing --------------------------------------------------------------------------------
    def _event(self, event_type: str, record: SecretRecord, version: SecretVersion) -> dict[str, Any]:
        now = dt.datetime.fromtimestamp(self.store.clock.now(), dt.UTC)
        vault = self.store.vault_name
        return {
            "id": str(uuid.uuid4()),
            "topic": f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
            f"/providers/Microsoft.KeyVault/vaults/{vault}",
            "subject": record.name,
            "eventType": event_type,
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
            "data": {
                "Id": f"{self.vault_url}/secrets/{record.name}/{version.version}",
                "VaultName": vault,
                "ObjectType": "Secret",
                "ObjectName": record.name,
                "Version": version.version,
                "NBF": float(version.nbf) if version.nbf is not None else None,
                "EXP": float(version.exp) if version.exp is not None else None,
            },
            "dataVersion": "1",
            "metadataVersion": "1",
        }

    def _enqueue(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.failed += 1
            _log.warning("event queue full; dropped %s for %s", event["eventType"], event["subject"])

    def on_new_version(self, record: SecretRecord, version: SecretVersion) -> None:
        self._enqueue(self._event(NEW_VERSION, record, version))

    def check_expiry(self) -> int:
        """Queue NearExpiry/Expired for current versions whose dates have passed on the emulator clock."""
        now = self.store.clock.now()
        queued = 0
        for record in list(self.store.all_records()):
            if record.deleted is not None:
                continue
            version = record.current
            if version.exp is None:
                continue
            if version.exp <= now and version.version not in self._expired_sent:
                self._expired_sent.add(version.version)
                self._near_sent.add(version.version)
                self._enqueue(self._event(EXPIRED, record, version))
                queued += 1
            elif (
                version.exp - NEAR_EXPIRY_WINDOW <= now < version.exp
                and version.version not in self._near_sent
            ):
                self._near_sent.add(version.version)
                self._enqueue(self._event(NEAR_EXPIRY, record, version))
                queued += 1
        return queued

    def reset(self) -> None:
        self._near_sent.clear()
        self._expired_sent.clear()

    # ---- delivering -------------------------------------------------------------------------------
    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._tasks = [
            asyncio.create_task(self._deliver_forever()),
            asyncio.create_task(self._check_forever()),
        ]

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                self.check_expiry()
            except Exception:  # noqa: BLE001 - the checker must outlive any one bad pass
                _log.exception("expiry check failed")

    async def _deliver_forever(self) -> None:
        while True:
            event = await self._queue.get()
            await self._deliver(event)

    async def _deliver(self, event: dict[str, Any]) -> None:
        assert self._session is not None
        for attempt in range(1, self.attempts + 1):
            headers = {
                "aeg-event-type": "Notification",
                "aeg-subscription-name": "LOCALDEV-KEYVAULT",
                "aeg-delivery-count": str(attempt - 1),
                "aeg-data-version": "1",
                "aeg-metadata-version": "1",
            }
            try:
                async with self._session.post(self.url, json=[event], headers=headers) as response:
                    if response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {response.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
        self.failed += 1
        if problem in ("HTTP 401", "HTTP 403"):  # the host is up but wants its Event Grid system key
            advice = (
                "add &code=<eventGridSystemKey from keys.json> to the events URL, "
                "or run the host with --no-auth"
            )
        else:
            advice = "is the Functions host running?"
        _log.warning(
            "event %s for %s not delivered to %s after %d attempts (%s); %s",
            event["eventType"],
            event["subject"],
            self.display_url,
            self.attempts,
            problem,
            advice,
        )

    @property
    def display_url(self) -> str:
        """The webhook URL without its query: `code=` there is a host key and never goes into a log line."""
        return str(URL(self.url).with_query(None))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
