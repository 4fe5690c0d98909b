"""Azurite (blob + queue) for the fan-out tests: in memory, free ports, its connection string."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.rotation import AZURITE_ACCOUNT, AZURITE_KEY, REPO

AZURITE = REPO / "node_modules" / ".bin" / "azurite"


@pytest.fixture(scope="session")
def azurite_queues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("node is required on CI: the queue tests run Azurite")
        pytest.skip("node is not installed: the queue tests run Azurite (npm ci installs it)")
    if not AZURITE.exists():
        pytest.fail("Azurite is not installed: run `npm ci` at the repository root")
    log = tmp_path_factory.mktemp("azurite-q") / "azurite.log"
    ports = []
    for _ in range(3):  # Azurite reports the requested port, so ask for free ones (not 0)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(str(probe.getsockname()[1]))
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(AZURITE),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                ports[0],
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                ports[1],
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                ports[2],
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--silent",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                for port in ports[:2]:
                    socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Azurite did not start: {log.read_text()[-500:]}")
                time.sleep(0.05)
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{ports[0]}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{ports[1]}/{AZURITE_ACCOUNT};"
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
