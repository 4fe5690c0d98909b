"""Azurite, Microsoft's Storage emulator (the npm package pinned in package.json), for `make run`, the fleet
and the tests: blob, queue and table on loopback, in memory or persisted in a folder.

`make run` starts it on the development ports (10000-10002) that `UseDevelopmentStorage=true` names, so the
queue triggers have their queues; the fleet and the tests ask for free ports and use the connection string.
The account and key are Azurite's well-known development ones: public, the same in every install.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AZURITE = REPO / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_PORTS = (10000, 10001, 10002)  # blob, queue, table: what UseDevelopmentStorage=true means
HOW_TO_INSTALL = "install Node.js, then run `npm ci` at the repository root (it installs the pinned Azurite)"


class AzuriteError(RuntimeError):
    """Azurite could not start; the message carries its log's tail."""


def azurite_unavailable() -> str | None:
    """Why Azurite cannot run here, or None. Node.js absent: a reason to skip (not under CI); Node.js
    present but Azurite not installed: a setup error the caller should report as a failure."""
    if shutil.which("node") is None:
        return f"node is not installed: Azurite needs it ({HOW_TO_INSTALL})"
    if not AZURITE.exists():
        return "Azurite is not installed: run `npm ci` at the repository root"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM and wait; SIGKILL if it does not exit in `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"(no log at {path})"


@dataclass
class Azurite:
    """A running Azurite (ours when `process` is set; one found already listening otherwise)."""

    process: subprocess.Popen[bytes] | None
    blob_port: int
    queue_port: int
    log_path: Path | None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
        )

    @property
    def on_development_ports(self) -> bool:
        return (self.blob_port, self.queue_port) == DEVELOPMENT_PORTS[:2]

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def start_azurite(
    log_dir: Path,
    *,
    ports: tuple[int, int, int] | None = None,
    location: Path | None = None,
    timeout: float = 30.0,
) -> Azurite:
    """Start Azurite with its log in `log_dir` on `ports` (blob, queue, table; None: free ones), in memory
    or persisted in `location`; return once its blob and queue ports accept connections."""
    reason = azurite_unavailable()
    if reason is not None:
        raise AzuriteError(reason)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "azurite.log"
    # Azurite reports the port it was asked for, so ask for free ones (not 0)
    blob, queue, table = ports or (free_port(), free_port(), free_port())
    storage = ["--location", str(location)] if location is not None else ["--inMemoryPersistence"]
    command = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(blob), "--queueHost", "127.0.0.1"]
    command += ["--queuePort", str(queue), "--tableHost", "127.0.0.1", "--tablePort", str(table), *storage]
    command += ["--disableTelemetry", "--skipApiVersionCheck", "--silent"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log_dir)
    deadline = time.monotonic() + timeout
    while not (listening(blob) and listening(queue)):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise AzuriteError(f"Azurite did not start: {tail(log, 500)}")
        time.sleep(0.05)
    return Azurite(process, blob, queue, log)
