"""Azurite under the fan-out's kind of load: its queue service stalls in memory, not on disk (issue 12).

    .venv/bin/python bench/azurite_stalls.py [--seconds 130] [--delay 60] [--workers 4]
    make bench ARGS=azurite_stalls        (about 7 minutes)

Why it exists: bench/fanout.py's runs showed every host idle at the same moments for 25-240 s. This isolates
the cause with nothing but Azurite (the pinned one) and the Python storage SDK on the app's transport:

  queue    `--workers` producers send 300-byte messages with a visibility delay of 0-`--delay` s (as the
           scan's pacing does) while as many consumers receive 8 at a time and delete them (as the host does),
           on an Azurite started `--inMemoryPersistence` (memory) and on one started `--location` (disk)
  blob     the same number of workers create an empty blob, lease it and delete it under the lease (as the
           rotation lease does), in memory: the same kind of request mix against Azurite's blob service

Each prints its operations per 5 s; a window with no operation is a stall. Printed: the longest stall and
the stalled share of the run for each, and each queue run's rate against the blob baseline's.

The cause, read in Azurite's source: in memory every message is an extent of its own, and the queue's GC
(every 60 s) deletes the unreferenced ones one `findAndRemove` at a time from a LokiJS collection with a
binary index on `id`; each removal rebuilds the data array and walks the whole index
(`removeBatchByPositions`), so a sweep is quadratic in the extents, and Node's one thread serves nothing
meanwhile. On disk, messages share extent files, so the GC has few to delete. The fleet
(bench/fanout.py, tests/fanout) and `make run` therefore start Azurite on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WINDOW = 5.0


class Meter:
    """Operations per WINDOW seconds, and the windows in which none completed."""

    def __init__(self) -> None:
        self.count = 0
        self.windows: list[int] = []

    async def report(self, label: str, stop: float) -> None:
        last = 0
        while time.monotonic() < stop:
            await asyncio.sleep(WINDOW)
            self.windows.append(self.count - last)
            last = self.count
            print(f"  {label:12s} {len(self.windows) * WINDOW:4.0f} s: {self.windows[-1]:5d} ops", flush=True)

    def summary(self, label: str) -> tuple[float, float]:
        longest = run = 0
        for ops in self.windows:
            run = run + 1 if ops == 0 else 0
            longest = max(longest, run)
        stalled = sum(1 for ops in self.windows if ops == 0) / max(1, len(self.windows))
        rate = self.count / max(1e-9, len(self.windows) * WINDOW)
        print(
            f"{label:12s} {self.count:7,} ops, {rate:6.1f} ops/s, longest stall {longest * WINDOW:4.0f} s, "
            f"stalled {stalled * 100:4.1f} % of the run"
        )
        return rate, longest * WINDOW


async def queue_load(connection: str, seconds: float, delay: int, workers: int, label: str) -> Meter:
    from azure.storage.queue.aio import QueueServiceClient

    from shared.transport import client_options

    meter = Meter()
    service = QueueServiceClient.from_connection_string(connection, **client_options("http://127.0.0.1"))
    queue = service.get_queue_client(f"stall-{uuid.uuid4().hex[:8]}")
    await queue.create_queue()
    stop = time.monotonic() + seconds
    rng = random.Random(7)

    async def producer() -> None:
        while time.monotonic() < stop:
            await queue.send_message("x" * 300, visibility_timeout=rng.randint(0, delay) or None)
            meter.count += 1

    async def consumer() -> None:
        while time.monotonic() < stop:
            async for page in queue.receive_messages(messages_per_page=8, visibility_timeout=60).by_page():
                for message in [m async for m in page]:
                    await queue.delete_message(message)
                    meter.count += 1
                break
            meter.count += 1  # the receive itself

    try:
        await asyncio.gather(
            meter.report(label, stop),
            *(producer() for _ in range(workers)),
            *(consumer() for _ in range(workers)),
        )
    finally:
        await service.close()
    return meter


async def blob_load(connection: str, seconds: float, workers: int) -> Meter:
    from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient

    from shared.transport import client_options

    meter = Meter()
    service = BlobServiceClient.from_connection_string(connection, **client_options("http://127.0.0.1"))
    container = service.get_container_client(f"stall-{uuid.uuid4().hex[:8]}")
    await container.create_container()
    stop = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop:
            blob: Any = container.get_blob_client(uuid.uuid4().hex)
            await blob.upload_blob(b"", overwrite=False)
            lease = BlobLeaseClient(blob)
            await lease.acquire(lease_duration=15)
            await blob.delete_blob(lease=lease)
            meter.count += 3

    try:
        await asyncio.gather(meter.report("blob", stop), *(worker() for _ in range(2 * workers)))
    finally:
        await service.close()
    return meter


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=130.0, help="each load; Azurite's queue GC runs every 60 s"
    )
    parser.add_argument("--delay", type=int, default=60, help="largest visibility delay of a sent message, s")
    parser.add_argument("--workers", type=int, default=4, help="queue producers (and as many consumers)")
    args = parser.parse_args()

    from localdev.azurite import AzuriteError, azurite_unavailable, start_azurite

    reason = azurite_unavailable()
    if reason:
        print(f"azurite_stalls needs Azurite: {reason}", file=sys.stderr)
        return 2
    print(
        f"Azurite stalls: {args.seconds:g} s of queue load ({args.workers} producers with 0-{args.delay} s "
        f"visibility delays, {args.workers} consumers) in memory and on disk, vs {args.seconds:g} s of blob "
        "lease load in memory, each on a fresh Azurite",
        flush=True,
    )
    results = {}
    for name in ("queue-memory", "queue-disk", "blob"):
        with tempfile.TemporaryDirectory(prefix="azurite-stalls-") as tmp:
            location = Path(tmp) / "data" if name == "queue-disk" else None
            try:
                running = start_azurite(Path(tmp), location=location)
            except AzuriteError as exc:
                print(f"could not start Azurite: {exc}", file=sys.stderr)
                return 2
            try:
                if name.startswith("queue"):
                    results[name] = await queue_load(
                        running.connection_string, args.seconds, args.delay, args.workers, name
                    )
                else:
                    results[name] = await blob_load(running.connection_string, args.seconds, args.workers)
            finally:
                running.stop()
    print("\nSummary")
    summaries = {name: meter.summary(name) for name, meter in results.items()}
    blob_rate, blob_stall = summaries["blob"]
    for name in ("queue-memory", "queue-disk"):
        rate, stall = summaries[name]
        print(
            f"{name} vs blob baseline: {rate / blob_rate:.2f}x the operations per second; longest stall "
            f"{stall:.0f} s vs {blob_stall:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
