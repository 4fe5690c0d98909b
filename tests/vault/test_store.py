"""The store's rules with no HTTP: paging markers, name case, purge scheduling, persistence write-through."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localdev.vault import errors
from localdev.vault.store import (
    BackupSealer,
    MemoryPersistence,
    SoftDeletePolicy,
    SqlitePersistence,
    VaultStore,
    decode_marker,
    encode_marker,
)

NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20
)


def _store(persistence=None) -> VaultStore:
    return VaultStore(persistence or MemoryPersistence(), BackupSealer(b"k" * 32))


@settings(max_examples=60, deadline=None)
@given(names=st.lists(NAMES, max_size=60), deleted=st.sets(st.integers(0, 59)), size=st.integers(1, 25))
def test_paging_yields_each_active_secret_once_in_order(names, deleted, size) -> None:
    store = _store()
    for name in names:
        store.set_secret(name, "v")
    keys = sorted({n.lower() for n in names})
    gone = {keys[i] for i in deleted if i < len(keys)}
    for key in gone:
        store.delete_secret(key)
    seen: list[str] = []
    marker = None
    while True:
        page, marker = store.list_secrets(marker, size)
        assert len(page) <= size
        seen += [r.key for r in page]
        if marker is None:
            break
        marker = str(decode_marker(encode_marker(marker)))
    assert seen == [k for k in keys if k not in gone]


def test_names_ignore_case_and_keep_their_first_spelling() -> None:
    store = _store()
    store.set_secret("MixedCase", "1")
    record, _version = store.set_secret("mixedcase", "2")
    assert record.name == "MixedCase" and len(record.versions) == 2
    assert store.get_secret("MIXEDCASE")[1].value == "2"


def test_policy_recovery_levels() -> None:
    assert SoftDeletePolicy().recovery_level == "Recoverable+Purgeable"
    assert SoftDeletePolicy(90, True).recovery_level == "Recoverable"
    assert SoftDeletePolicy(7).recovery_level == "CustomizedRecoverable+Purgeable"
    assert SoftDeletePolicy(30, True).recovery_level == "CustomizedRecoverable"
    for days in (6, 91):
        with pytest.raises(ValueError):
            SoftDeletePolicy(days)


def test_purge_is_scheduled_on_the_clock() -> None:
    store = _store()
    store.set_secret("a", "v")
    store.delete_secret("a")
    assert store.purge_due() == 0
    store.clock.offset = 90 * 86400
    assert store.purge_due() == 1
    with pytest.raises(errors.DeletedSecretNotFound):
        store.get_deleted("a")


def test_failed_write_leaves_memory_unchanged(tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "v.sqlite3")
    store = _store(persistence)
    store.set_secret("a", "1")
    persistence.close()  # every later write fails
    with pytest.raises(Exception):
        store.set_secret("a", "2")
    with pytest.raises(Exception):
        store.delete_secret("a")
    record, version = store.get_secret("a")
    assert version.value == "1" and len(record.versions) == 1 and record.deleted is None


def test_backup_from_another_state_dir_is_refused() -> None:
    ours, theirs = _store(), VaultStore(MemoryPersistence(), BackupSealer(b"x" * 32))
    theirs.set_secret("a", "v")
    with pytest.raises(errors.BadParameter, match="another vault"):
        ours.restore_secret(theirs.backup_secret("a"))
