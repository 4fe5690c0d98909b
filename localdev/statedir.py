"""Files in a localdev state directory (vault and host alike): written atomically, readable by the owner only.

Everything in a state directory is private whatever the umask: directories 0700, files 0600 (vault.env holds
IDENTITY_HEADER, the SQLite store holds secret values, keys are keys). The CA certificate is no secret, but
clients read it from the same directory as the user who started the vault, so 0600 costs nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from pathlib import Path
from typing import IO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700; tighten an existing `.localdev` (or its `tls/`, `keys/`),
    which an older checkout made 0755, when it is ours.

    Any other existing directory (e.g. `--state-dir /tmp`, or your home) keeps its mode: the files localdev
    writes there are 0600 all the same."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)  # mkdir's mode passes through the umask
    info = path.stat()
    if (
        not missing
        and path.name in _STATE_DIR_NAMES
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) & 0o077
    ):
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o077 | DIR_MODE)
    return path


_STATE_DIR_NAMES = frozenset({".localdev", "tls", "keys"})


class StateDirInUse(RuntimeError):
    """Another running process holds this state directory's lock; nothing in the directory was touched."""


def hold_lock(path: Path, busy_message: str) -> IO[str]:
    """Hold an exclusive lock on `path` for the life of the returned handle (it records our pid).

    The file is opened without truncation and written only once the lock is ours: a start that fails
    leaves the running instance's lock file, and every other file, exactly as they were."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StateDirInUse(busy_message) from None
    os.fchmod(fd, FILE_MODE)
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def make_private(path: Path) -> None:
    """Tighten an existing file to 0600 (files another library created, e.g. SQLite's -wal and -shm)."""
    try:
        if stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
            os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        pass


def write_private(path: Path, data: bytes) -> None:
    """Atomically write a file only the user can read (a crash leaves the old file or the new one)."""
    private_dir(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an old leftover .tmp keeps its mode through O_CREAT
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        os.unlink(tmp)
        raise
    os.replace(tmp, path)


def load_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A random URL-safe key kept in `path` (0600), made on first use and the same on every later start."""
    if path.exists():
        make_private(path)
        value = path.read_text().strip()
        if value:
            return value
    value = secrets.token_urlsafe(nbytes)
    write_private(path, (value + "\n").encode())
    return value
