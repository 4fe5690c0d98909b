"""Vault state and its rules — versions, soft delete, purge, recovery, backup — with no HTTP in sight.

`VaultStore` is the single owner of secret state. It runs on one event loop (no locks needed); every
mutation is written through to a `Persistence` backend in one transaction before the call returns, and
reads are served from memory. Times follow `VaultClock`, whose offset tests can advance.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..statedir import FILE_MODE, make_private, private_dir, write_private
from . import errors

NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_VALUE_BYTES = 25_600
MAX_TAGS = 15
MAX_TAG_LENGTH = 256
MAX_CONTENT_TYPE = 255
MAX_BACKUP_VERSIONS = 500
BACKUP_PREFIX = b")AzureKeyVaultSecretBackupV1.microsoft.com"
DAY = 86_400


class VaultClock:
    """Wall-clock time plus an offset that tests advance so expiry and purge dates pass."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def now_int(self) -> int:
        return int(self.now())


@dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int


@dataclass
class DeletedState:
    deleted_date: int
    scheduled_purge_date: int
    visible_after: float = 0.0  # monotonic; until then the delete is "in progress" (delete latency)


@dataclass
class SecretRecord:
    """One secret name: its versions in creation order, and its soft-delete state."""

    name: str
    versions: dict[str, SecretVersion] = field(default_factory=dict)
    latest: str = ""
    deleted: DeletedState | None = None
    recovered_after: float = 0.0  # monotonic; until then a recovery is "in progress" (recover latency)

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def current(self) -> SecretVersion:
        return self.versions[self.latest]


@dataclass(frozen=True)
class SoftDeletePolicy:
    """Per-vault soft-delete settings: retention (7–90 days) and purge protection."""

    retention_days: int = 90
    purge_protection: bool = False

    def __post_init__(self) -> None:
        if not 7 <= self.retention_days <= 90:
            raise ValueError(f"retention days must be between 7 and 90, got {self.retention_days}")

    @property
    def recovery_level(self) -> str:
        base = "Recoverable" if self.retention_days == 90 else "CustomizedRecoverable"
        return base if self.purge_protection else f"{base}+Purgeable"


class Persistence(Protocol):
    """Where the store writes through to; every method is one atomic transaction."""

    def load(self) -> list[SecretRecord]: ...
    def save(self, record: SecretRecord, versions: Iterable[SecretVersion]) -> None: ...
    def save_new(self, records: list[SecretRecord]) -> None: ...
    def remove(self, key: str) -> None: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


class MemoryPersistence:
    """Nothing survives the process: the in-memory state is all there is."""

    def load(self) -> list[SecretRecord]:
        return []

    def save(self, record: SecretRecord, versions: Iterable[SecretVersion]) -> None:
        pass

    def save_new(self, records: list[SecretRecord]) -> None:
        pass

    def remove(self, key: str) -> None:
        pass

    def clear(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqlitePersistence:
    """A SQLite file in WAL mode; each mutation is one transaction, so a crash never leaves half a write."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS secrets (
        key TEXT PRIMARY KEY, name TEXT NOT NULL, latest TEXT NOT NULL,
        deleted_date INTEGER, scheduled_purge_date INTEGER);
    CREATE TABLE IF NOT EXISTS versions (
        key TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL,
        content_type TEXT, tags TEXT, enabled INTEGER NOT NULL, nbf INTEGER, exp INTEGER,
        created INTEGER NOT NULL, updated INTEGER NOT NULL,
        PRIMARY KEY (key, version));
    """

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self.path = path
        # secret values live here: 0600 before SQLite opens it (SQLite gives -wal and -shm the same mode)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        make_private(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL + NORMAL: durable to the last checkpoint, never corrupt
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(self.SCHEMA)
        for suffix in ("-wal", "-shm"):
            make_private(path.with_name(path.name + suffix))
        self._seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM versions").fetchone()[0]

    def load(self) -> list[SecretRecord]:
        records: dict[str, SecretRecord] = {}
        for key, name, latest, deleted, purge in self._db.execute("SELECT * FROM secrets"):
            record = SecretRecord(name=name, latest=latest)
            if deleted is not None:
                record.deleted = DeletedState(deleted, purge)
            records[key] = record
        rows = self._db.execute(
            "SELECT key, version, value, content_type, tags, enabled, nbf, exp, created, updated "
            "FROM versions ORDER BY seq"
        )
        for key, version, value, ctype, tags, enabled, nbf, exp, created, updated in rows:
            if key in records:
                records[key].versions[version] = SecretVersion(
                    version,
                    value,
                    ctype,
                    json.loads(tags) if tags else None,
                    bool(enabled),
                    nbf,
                    exp,
                    created,
                    updated,
                )
        return [r for r in records.values() if r.latest in r.versions]

    def save(self, record: SecretRecord, versions: Iterable[SecretVersion]) -> None:
        d = record.deleted
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO secrets VALUES (?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET name=excluded.name, "
                "latest=excluded.latest, deleted_date=excluded.deleted_date, "
                "scheduled_purge_date=excluded.scheduled_purge_date",
                (record.key, record.name, record.latest, d and d.deleted_date, d and d.scheduled_purge_date),
            )
            for v in versions:
                self._seq += 1
                self._db.execute(
                    "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(key, version) DO UPDATE SET content_type=excluded.content_type, "
                    "tags=excluded.tags, enabled=excluded.enabled, "
                    "nbf=excluded.nbf, exp=excluded.exp, updated=excluded.updated",
                    (
                        record.key,
                        v.version,
                        self._seq,
                        v.value,
                        v.content_type,
                        json.dumps(v.tags) if v.tags is not None else None,
                        int(v.enabled),
                        v.nbf,
                        v.exp,
                        v.created,
                        v.updated,
                    ),
                )

    def save_new(self, records: list[SecretRecord]) -> None:
        """Many new records (names not stored yet) with their versions, in one transaction (bulk seed)."""
        rows = []
        for record in records:
            for v in record.versions.values():
                self._seq += 1
                rows.append(
                    (
                        record.key,
                        v.version,
                        self._seq,
                        v.value,
                        v.content_type,
                        json.dumps(v.tags) if v.tags is not None else None,
                        int(v.enabled),
                        v.nbf,
                        v.exp,
                        v.created,
                        v.updated,
                    )
                )
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO secrets VALUES (?,?,?,NULL,NULL)", [(r.key, r.name, r.latest) for r in records]
            )
            self._db.executemany("INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def remove(self, key: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM versions WHERE key = ?", (key,))
            self._db.execute("DELETE FROM secrets WHERE key = ?", (key,))

    def clear(self) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM versions")
            self._db.execute("DELETE FROM secrets")

    def close(self) -> None:
        self._db.close()


@dataclass
class SecretAttributesInput:
    """Writable attributes as sent; None means "not given" (left unchanged on update)."""

    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None


def validate_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise errors.InvalidName(name)


def _validate_metadata(content_type: str | None, tags: dict[str, str] | None) -> None:
    if content_type is not None and len(content_type) > MAX_CONTENT_TYPE:
        # inferred text: the service's message for this limit was not captured
        raise errors.BadParameter(
            f"Property contentType has invalid value: longer than {MAX_CONTENT_TYPE} characters."
        )
    if tags is None:
        return
    if len(tags) > MAX_TAGS:
        raise errors.BadParameter(f"Property tags has invalid value: at most {MAX_TAGS} tags are allowed.")
    for k, v in tags.items():
        if len(k) > MAX_TAG_LENGTH or len(v) > MAX_TAG_LENGTH:
            raise errors.BadParameter(
                "Property tags has invalid value: tag names and values are limited to "
                f"{MAX_TAG_LENGTH} characters."
            )


class BackupSealer:
    """Seals backups with a per-state-directory key: opaque like the service's, read by this vault only."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @staticmethod
    def load_or_create_key(path: Path) -> bytes:
        if path.exists() and len(path.read_bytes()) == 32:
            return path.read_bytes()
        key = AESGCM.generate_key(bit_length=256)
        write_private(path, key)
        return key

    def seal(self, document: dict[str, object]) -> bytes:
        nonce = os.urandom(12)
        return BACKUP_PREFIX + nonce + self._aead.encrypt(nonce, json.dumps(document).encode(), BACKUP_PREFIX)

    def open(self, blob: bytes) -> dict[str, object]:
        if not blob.startswith(BACKUP_PREFIX) or len(blob) < len(BACKUP_PREFIX) + 28:
            raise errors.BadParameter(
                "Backup blob could not be read: it is malformed or not a secret backup."
            )
        body = blob[len(BACKUP_PREFIX) :]
        try:
            plain = self._aead.decrypt(body[:12], body[12:], BACKUP_PREFIX)
        except Exception:  # noqa: BLE001 - any failure to open means the same to the caller
            raise errors.BadParameter(
                "Backup blob could not be read: it was made by another vault (another state directory)."
            ) from None
        return json.loads(plain)


NewVersionListener = Callable[[SecretRecord, SecretVersion], None]


class VaultStore:
    """The vault's secrets and the service's rules for them."""

    def __init__(
        self,
        persistence: Persistence,
        sealer: BackupSealer,
        *,
        vault_name: str = "localvault",
        policy: SoftDeletePolicy | None = None,
        clock: VaultClock | None = None,
    ) -> None:
        self.persistence = persistence
        self.sealer = sealer
        self.vault_name = vault_name
        self.policy = policy or SoftDeletePolicy()
        self.clock = clock or VaultClock()
        self.delete_latency = 0.0
        self.recover_latency = 0.0
        self.listeners: list[NewVersionListener] = []
        self._records: dict[str, SecretRecord] = {}
        self._sorted_keys: list[str] = []
        self._next_purge = float("inf")
        for record in persistence.load():
            self._index(record)
        self._refresh_next_purge()

    # ---- indexing ---------------------------------------------------------------------------------
    def _index(self, record: SecretRecord) -> None:
        if record.key not in self._records:
            bisect.insort(self._sorted_keys, record.key)
        self._records[record.key] = record

    def _unindex(self, key: str) -> None:
        if self._records.pop(key, None) is not None:
            i = bisect.bisect_left(self._sorted_keys, key)
            if i < len(self._sorted_keys) and self._sorted_keys[i] == key:
                del self._sorted_keys[i]

    def _refresh_next_purge(self) -> None:
        dates = [r.deleted.scheduled_purge_date for r in self._records.values() if r.deleted]
        self._next_purge = min(dates, default=float("inf"))

    def purge_due(self) -> int:
        """Purge deleted secrets whose scheduledPurgeDate has passed (as the service does on its own)."""
        if self.clock.now() < self._next_purge:
            return 0
        now = self.clock.now()
        due = [k for k, r in self._records.items() if r.deleted and r.deleted.scheduled_purge_date <= now]
        for key in due:
            self.persistence.remove(key)
            self._unindex(key)
        self._refresh_next_purge()
        return len(due)

    def reset(self) -> None:
        self.persistence.clear()
        self._records.clear()
        self._sorted_keys.clear()
        self._next_purge = float("inf")

    def all_records(self) -> Iterable[SecretRecord]:
        return self._records.values()

    # ---- lookups ----------------------------------------------------------------------------------
    def _active(self, name: str) -> SecretRecord:
        """A secret that is neither deleted nor still being recovered; else the service's 404."""
        self.purge_due()
        record = self._records.get(name.lower())
        if record is None or record.deleted is not None or record.recovered_after > time.monotonic():
            raise errors.SecretNotFound(name)
        return record

    def get_record(self, name: str) -> SecretRecord:
        """The active record for a name (same rules as a get)."""
        return self._active(name)

    def exists(self, name: str) -> bool:
        """Whether the vault holds the name at all, active or soft-deleted (a purged name is held no more)."""
        validate_name(name)
        self.purge_due()
        return name.lower() in self._records

    def _deleted(self, name: str) -> SecretRecord:
        self.purge_due()
        record = self._records.get(name.lower())
        if record is None or record.deleted is None or record.deleted.visible_after > time.monotonic():
            raise errors.DeletedSecretNotFound(name)
        return record

    # ---- operations -------------------------------------------------------------------------------
    def set_secret(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
        attributes: SecretAttributesInput | None = None,
    ) -> tuple[SecretRecord, SecretVersion]:
        validate_name(name)
        if len(value.encode()) > MAX_VALUE_BYTES:
            # inferred text; the CLI's client-side message for the same limit
            raise errors.BadParameter(
                f"Secret is beyond the maximum permitted length of {MAX_VALUE_BYTES} bytes."
            )
        _validate_metadata(content_type, tags)
        self.purge_due()
        record = self._records.get(name.lower())
        now_mono = time.monotonic()
        if record is not None and record.deleted is not None:
            if record.deleted.visible_after > now_mono:
                raise errors.BeingDeleted(record.name)
            raise errors.DeletedButRecoverable(record.name)
        if record is not None and record.recovered_after > now_mono:
            raise errors.BeingRecovered(record.name)
        attrs = attributes or SecretAttributesInput()
        now = self.clock.now_int()
        version = SecretVersion(
            version=uuid.uuid4().hex,
            value=value,
            content_type=content_type,
            tags=dict(tags) if tags is not None else None,
            enabled=True if attrs.enabled is None else attrs.enabled,
            nbf=attrs.nbf,
            exp=attrs.exp,
            created=now,
            updated=now,
        )
        if record is None:
            record = SecretRecord(name=name)
        previous = record.latest
        record.versions[version.version] = version
        record.latest = version.version
        try:
            self.persistence.save(record, [version])
        except Exception:
            record.versions.pop(version.version, None)
            record.latest = previous
            raise
        self._index(record)
        for listener in self.listeners:
            listener(record, version)
        return record, version

    def seed(self, secrets: Iterable[tuple[str, SecretVersion]]) -> int:
        """New secrets of one version each, written in one transaction (the test controls' bulk seed).

        Names must be new to the vault (neither active nor soft-deleted): ValueError naming the first
        that is not, and nothing is written. No listener hears of them: a seed of 100,000 secrets is not
        100,000 new-version events."""
        self.purge_due()
        records: dict[str, SecretRecord] = {}
        for name, version in secrets:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"secret name {name!r} is not 1-127 letters, digits and dashes")
            if len(version.value.encode()) > MAX_VALUE_BYTES:
                raise ValueError(f"values are limited to {MAX_VALUE_BYTES} bytes")
            try:
                _validate_metadata(version.content_type, version.tags)
            except errors.ServiceError as exc:
                raise ValueError(exc.message) from None
            key = name.lower()
            if key in records:
                raise ValueError(f"secret {name!r} is named twice in the seed (overlapping prefixes?)")
            if key in self._records:
                raise ValueError(f"secret {name!r} exists already (seed only new names, or reset first)")
            records[key] = SecretRecord(
                name=name, versions={version.version: version}, latest=version.version
            )
        new = list(records.values())
        self.persistence.save_new(new)
        self._records.update(records)
        self._sorted_keys = sorted(self._sorted_keys + list(records))
        return len(new)

    def get_secret(self, name: str, version: str | None = None) -> tuple[SecretRecord, SecretVersion]:
        validate_name(name)
        record = self._active(name)
        if version:
            found = record.versions.get(version.lower())
            if found is None:
                raise errors.SecretNotFound(name, version)
        else:
            found = record.current
        if not found.enabled:
            raise errors.SecretDisabled()
        return record, found

    def update_secret(
        self,
        name: str,
        version: str | None,
        *,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
        attributes: SecretAttributesInput | None = None,
    ) -> tuple[SecretRecord, SecretVersion]:
        validate_name(name)
        _validate_metadata(content_type, tags)
        record = self._active(name)
        target = record.versions.get(version.lower()) if version else record.current
        if target is None:
            raise errors.SecretNotFound(name, version)
        changed = replace(target)
        if content_type is not None:
            changed.content_type = content_type
        if tags is not None:
            changed.tags = dict(tags)
        if attributes is not None:
            if attributes.enabled is not None:
                changed.enabled = attributes.enabled
            if attributes.nbf is not None:
                changed.nbf = attributes.nbf
            if attributes.exp is not None:
                changed.exp = attributes.exp
        changed.updated = self.clock.now_int()
        self.persistence.save(record, [changed])
        record.versions[changed.version] = changed
        return record, changed

    def list_secrets(self, after: str | None, limit: int) -> tuple[list[SecretRecord], str | None]:
        """Active secrets by name, `limit` per page after the key `after`; returns the next marker."""
        return self._page(after, limit, lambda r: r.deleted is None and r.recovered_after <= time.monotonic())

    def list_deleted(self, after: str | None, limit: int) -> tuple[list[SecretRecord], str | None]:
        return self._page(
            after, limit, lambda r: r.deleted is not None and r.deleted.visible_after <= time.monotonic()
        )

    def _page(
        self, after: str | None, limit: int, keep: Callable[[SecretRecord], bool]
    ) -> tuple[list[SecretRecord], str | None]:
        self.purge_due()
        start = bisect.bisect_right(self._sorted_keys, after) if after else 0
        page: list[SecretRecord] = []
        keys = self._sorted_keys
        for i in range(start, len(keys)):
            record = self._records[keys[i]]
            if not keep(record):
                continue
            if len(page) == limit:
                return page, page[-1].key
            page.append(record)
        return page, None

    def list_versions(self, name: str, offset: int, limit: int) -> tuple[list[SecretVersion], int | None]:
        validate_name(name)
        record = self._active(name)
        versions = list(record.versions.values())[offset : offset + limit + 1]
        if len(versions) > limit:
            return versions[:limit], offset + limit
        return versions, None

    def delete_secret(self, name: str) -> SecretRecord:
        validate_name(name)
        record = self._active(name)
        now = self.clock.now_int()
        record.deleted = DeletedState(
            deleted_date=now,
            scheduled_purge_date=now + self.policy.retention_days * DAY,
            visible_after=time.monotonic() + self.delete_latency,
        )
        try:
            self.persistence.save(record, [])
        except Exception:
            record.deleted = None
            raise
        self._next_purge = min(self._next_purge, record.deleted.scheduled_purge_date)
        return record

    def get_deleted(self, name: str) -> SecretRecord:
        validate_name(name)
        return self._deleted(name)

    def purge_deleted(self, name: str) -> None:
        validate_name(name)
        record = self._deleted(name)
        if self.policy.purge_protection:
            raise errors.PurgeProtected(self.vault_name)
        self.persistence.remove(record.key)
        self._unindex(record.key)
        self._refresh_next_purge()

    def recover_deleted(self, name: str) -> tuple[SecretRecord, SecretVersion]:
        validate_name(name)
        record = self._deleted(name)
        deleted = record.deleted
        record.deleted = None
        try:
            self.persistence.save(record, [])
        except Exception:
            record.deleted = deleted
            raise
        record.recovered_after = time.monotonic() + self.recover_latency
        self._refresh_next_purge()
        return record, record.current

    def backup_secret(self, name: str) -> bytes:
        validate_name(name)
        record = self._active(name)
        versions = list(record.versions.values())[-MAX_BACKUP_VERSIONS:]
        document: dict[str, object] = {
            "name": record.name,
            "latest": record.latest,
            "versions": [v.__dict__ for v in versions],
        }
        return self.sealer.seal(document)

    def restore_secret(self, blob: bytes) -> tuple[SecretRecord, SecretVersion]:
        document = self.sealer.open(blob)
        name = str(document["name"])
        self.purge_due()
        existing = self._records.get(name.lower())
        if existing is not None:
            if existing.deleted is not None:
                raise errors.DeletedButRecoverable(existing.name)
            raise errors.AlreadyExists(existing.name)
        record = SecretRecord(name=name, latest=str(document["latest"]))
        raw_versions: list[dict[str, object]] = document["versions"]  # type: ignore[assignment]
        for raw in raw_versions:
            version = SecretVersion(**raw)  # type: ignore[arg-type]
            record.versions[version.version] = version
        self.persistence.save(record, record.versions.values())
        self._index(record)
        return record, record.current

    def close(self) -> None:
        self.persistence.close()


def encode_marker(marker: str | int) -> str:
    """An opaque $skiptoken shaped like the service's (base64 of {"NextMarker": ...})."""
    raw = json.dumps({"NextMarker": marker}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_marker(token: str) -> str | int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return json.loads(raw)["NextMarker"]
    except Exception:  # noqa: BLE001 - whatever is wrong with it, the token is not one we issued
        raise errors.BadParameter("The $skiptoken is invalid; start the listing again without it.") from None
