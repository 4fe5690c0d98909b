"""The fan-out on Storage Queues vs the inline sweep, many vaults, same emulators, same run (issue 12).

    .venv/bin/python bench/fanout.py [--secrets 100000] [--vaults 4] [--due 0.01 0.1] [--latency 0.02]
                                     [--hosts 2] [--creates-per-second 28] [--quick]
    make bench ARGS=fanout        (the defaults: 100,000 secrets, 4 vaults, 1 % and 10 % due; ~10 minutes)

localdev/fleet.py starts K local vaults (one process, in memory) with the injected latency and Key Vault's
real limits (4,000 transactions and 300 creates per 10 s, 429 with Retry-After), and Azurite. For each due
fraction, with every vault freshly seeded through the control API (seeding is not a transaction; the due
secrets are spread evenly through each vault's listing):
  list    this process lists every vault through the app's pager (all at once): the machine's own cost of a
          page, a reference
  fanout  H host processes (SWEEP_MODE=queue), `scheduled_rotation` run through host 1's admin API; done
          when each vault has created a version per due secret and the scan and rotate queues are empty
  inline  one host process (SWEEP_MODE=inline), `scheduled_rotation` through its admin API; done when its
          invocation line (status=succeeded) is in the host's log (and the same vault check)
Each run: wall time from the admin call, the vaults' own transaction counts and 429s, the messages each
queue function processed (the hosts' invocation lines) and requeues; afterwards every due secret is checked
to carry a new expiry (listed at zero latency, outside the measurement).

floor  = the slowest vault's max(pages x latency, creates / 30 per s, budget transactions / 400 per s),
         pages = ceil(N_vault / 25)
budget = sum over vaults of ceil(N_vault / 25) + 3 x due_vault
Goals, printed PASS/FAIL: fan-out wall <= 1.25 x floor at every due fraction; fan-out transactions = budget;
fan-out at least 2x faster than inline at 10 % due (the largest fraction given, if 10 % is not).
FANOUT_CREATES_PER_SECOND is 28 here (the app's default is 20): the fan-out paces creates by it, just under
Key Vault's 30/s, so the floor's creates term is reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PAGE = 25
CREATES_PER_SECOND = 30.0  # Key Vault: 300 per 10 s per vault
TRANSACTIONS_PER_SECOND = 400.0  # Key Vault: 4,000 per 10 s per vault
DUE_DAYS, FAR_DAYS, VALIDITY_DAYS = 10, 50, 60  # due within min(30, 60/2) days of expiry
QUEUES = ("kv-scan", "kv-rotate", "kv-cleanup")
INVOCATION = re.compile(r"invocation: function=(\w+) invocation=\S+ status=(\w+)")
APP_SETTINGS = {
    "KEY_VAULT_RETRY_TOTAL": "4",
    "ROTATION_CONCURRENCY": "8",
    "ROTATION_BUDGET_SECONDS": "1800",
}


@dataclass
class Run:
    """One measured run: what it took and what the vaults and queues saw."""

    mode: str
    due_fraction: float
    wall: float = 0.0
    transactions: list[int] = field(default_factory=list)  # per vault
    creates: list[int] = field(default_factory=list)  # SetSecret calls per vault (429s included)
    throttled: list[int] = field(default_factory=list)  # 429 answers per vault
    invocations: Counter[str] = field(default_factory=Counter)  # function -> succeeded invocations
    failed: Counter[str] = field(default_factory=Counter)
    requeued: int = 0
    poisoned: int = 0
    rotated: int = 0  # due secrets found with a new expiry afterwards
    due: int = 0
    ok: bool = True
    note: str = ""


def due_fraction(text: str) -> float:
    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"--due {text!r}: a fraction in (0, 1] such as 0.01, or 1%")
    return value


def seed_groups(per_vault: int, due: int) -> list[dict[str, Any]]:
    """Names s-000000..., the due ones spread evenly (one at the end of every block of per_vault/due)."""
    tags = {"ValidityPeriodDays": str(VALIDITY_DAYS)}
    far = {"tags": tags, "expires_in_seconds": FAR_DAYS * 86400, "prefix": "s-", "digits": 6}
    near = {"tags": tags, "expires_in_seconds": DUE_DAYS * 86400, "prefix": "s-", "digits": 6}
    if due == 0:
        return [{**far, "count": per_vault, "start": 0}]
    groups: list[dict[str, Any]] = []
    block = per_vault // due
    for k in range(due):
        start = k * block
        if block > 1:
            groups.append({**far, "count": block - 1, "start": start})
        groups.append({**near, "count": 1, "start": start + block - 1})
    tail = due * block
    if tail < per_vault:
        groups.append({**far, "count": per_vault - tail, "start": tail})
    return groups


def due_names(per_vault: int, due: int) -> set[str]:
    if due == 0:
        return set()
    block = per_vault // due
    return {f"s-{k * block + block - 1:06d}" for k in range(due)}


class Bench:
    def __init__(self, fleet: Any, args: argparse.Namespace) -> None:
        self.fleet = fleet
        self.args = args
        self.controls = fleet.controls()
        self.per_vault = args.secrets // args.vaults

    # ------------------------------------------------------------ vault state

    async def stats(self) -> list[dict[str, Any]]:
        return await asyncio.gather(*(asyncio.to_thread(c.stats) for c in self.controls))

    async def reseed(self, due: int) -> None:
        began = time.perf_counter()

        def one(control: Any) -> None:
            control.reset()  # empty store, zero stats; latency and throttling as the fleet started them
            control.seed(seed_groups(self.per_vault, due))

        await asyncio.gather(*(asyncio.to_thread(one, c) for c in self.controls))
        print(
            f"  seeded {self.per_vault * len(self.controls):,} secrets ({due:,} due per vault) "
            f"in {time.perf_counter() - began:.1f} s",
            flush=True,
        )

    async def quiet_window(self) -> None:
        """An empty throttle window before a measurement (Key Vault counts per 10 s)."""
        await asyncio.sleep(10.5)

    async def set_latency(self, seconds: float) -> None:
        await asyncio.gather(*(asyncio.to_thread(c.set_latency, seconds) for c in self.controls))

    async def list_only(self) -> float:
        """Every vault listed page by page from this process through the app's pager, all vaults at
        once: seconds."""
        from shared.keyvault import get_secret_client
        from shared.vault.calls import VaultCalls
        from shared.vault.pager import pages, version_listing

        async def one(url: str) -> int:
            client = await get_secret_client(url)
            listed = 0
            async for page in pages(VaultCalls(), "GetSecrets", version_listing(client), vault_url=url):
                listed += len(page)
            return listed

        began = time.perf_counter()
        counts = await asyncio.gather(*(one(url) for url in self.fleet.vault_urls))
        seconds = time.perf_counter() - began
        assert all(c == self.per_vault for c in counts), counts
        return seconds

    async def verify(self, run: Run, due: int) -> None:
        """After the run (zero latency, not measured): each due secret has a new, far expiry."""
        from shared.keyvault import get_secret_client

        wanted = due_names(self.per_vault, due)
        limit = datetime.now(UTC) + timedelta(days=FAR_DAYS + 5)
        await self.set_latency(0)

        async def one(url: str) -> tuple[int, int]:
            client = await get_secret_client(url)
            rotated = stray = 0
            async for props in client.list_properties_of_secrets(max_page_size=PAGE):
                fresh = props.expires_on is not None and props.expires_on > limit
                if props.name in wanted:
                    rotated += fresh
                else:
                    stray += fresh
            return rotated, stray

        try:
            results = await asyncio.gather(*(one(url) for url in self.fleet.vault_urls))
        finally:
            await self.set_latency(self.args.latency)
        run.rotated = sum(r for r, _ in results)
        strays = sum(s for _, s in results)
        if run.rotated != run.due or strays:
            run.ok = False
            run.note += f" rotated {run.rotated}/{run.due} due, {strays} not-due rotated;"

    # ------------------------------------------------------------ queues

    async def queue_counts(self) -> dict[str, int]:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.queue.aio import QueueServiceClient

        counts: dict[str, int] = {}
        async with QueueServiceClient.from_connection_string(self.fleet.storage_connection_string) as service:
            for name in (*QUEUES, *(f"{q}-poison" for q in QUEUES)):
                try:
                    props = await service.get_queue_client(name).get_queue_properties()
                    counts[name] = int(props.approximate_message_count)
                except ResourceNotFoundError:
                    counts[name] = 0
        return counts

    # ------------------------------------------------------------ runs

    def host_env(self, mode: str) -> dict[str, str]:
        return {
            **APP_SETTINGS,
            "SWEEP_MODE": mode,
            "FANOUT_CREATES_PER_SECOND": str(self.args.creates_per_second),
        }

    async def measure(self, mode: str, fraction: float, due: int) -> Run:
        run = Run(mode, fraction, due=due * len(self.controls))
        hosts = []
        count = self.args.hosts if mode == "queue" else 1
        for _ in range(count):
            hosts.append(await self.fleet.start_host(extra_env=self.host_env(mode)))
        try:
            await self.quiet_window()
            before = await self.stats()
            began = time.perf_counter()
            await hosts[0].invoke("scheduled_rotation")
            deadline = began + self.args.timeout
            progress = began
            while True:
                await asyncio.sleep(0.25)  # the bench's own polling: ~20 control calls/s
                now_stats = await self.stats()
                creates = [
                    s["operations"].get("SetSecret", 0) - b["operations"].get("SetSecret", 0)
                    for s, b in zip(now_stats, before, strict=True)
                ]
                if mode == "queue":  # the queues are asked only once the creates are all there
                    finished = sum(creates) >= run.due
                    if finished:
                        counts = await self.queue_counts()
                        finished = all(counts[q] == 0 for q in QUEUES)
                else:
                    lines = hosts[0].log_text()
                    finished = "function=scheduled_rotation" in lines and bool(
                        re.search(r"invocation: function=scheduled_rotation \S+ status=", lines)
                    )
                if finished:
                    run.wall = time.perf_counter() - began
                    break
                now = time.perf_counter()
                if now - progress >= 10:
                    progress = now
                    print(
                        f"    {mode}: {now - began:5.0f} s, creates {sum(creates):,}/{run.due:,}",
                        flush=True,
                    )
                if now > deadline:
                    run.wall = now - began
                    run.ok = False
                    run.note += f" not done after {self.args.timeout:.0f} s;"
                    break
            after = await self.stats()
            run.transactions = [a["total"] - b["total"] for a, b in zip(after, before, strict=True)]
            run.creates = [
                a["operations"].get("SetSecret", 0) - b["operations"].get("SetSecret", 0)
                for a, b in zip(after, before, strict=True)
            ]
            run.throttled = [
                a["statuses"].get("429", 0) - b["statuses"].get("429", 0)
                for a, b in zip(after, before, strict=True)
            ]
            poison = await self.queue_counts()
            run.poisoned = sum(v for k, v in poison.items() if k.endswith("-poison"))
        finally:
            for host in hosts:
                await self.fleet.stop_host(host)
        for host in hosts:
            text = host.log_text()
            for function, status in INVOCATION.findall(text):
                (run.invocations if status == "succeeded" else run.failed)[function] += 1
            run.requeued += text.count('"outcome": "Requeued"')
        if mode == "inline" and run.failed.get("scheduled_rotation"):
            run.ok = False
            run.note += " the sweep's invocation failed;"
        await self.verify(run, due)
        return run


# ---------------------------------------------------------------------------------------- reporting


def floor_seconds(per_vault: int, due: int, latency: float) -> tuple[float, int, str]:
    """The slowest vault's floor (all vaults are alike here), the budget of one vault, the binding term."""
    pages = math.ceil(per_vault / PAGE)
    budget = pages + 3 * due
    terms = {
        "pages x RTT": pages * latency,
        "creates / 30/s": due / CREATES_PER_SECOND,
        "transactions / 400/s": budget / TRANSACTIONS_PER_SECOND,
    }
    binding = max(terms, key=lambda k: terms[k])
    return terms[binding], budget, binding


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def describe(run: Run, floor: float, budget: int) -> str:
    tx = sum(run.transactions)
    scans = run.invocations.get("fanout_scan", 0)
    rotates = run.invocations.get("fanout_rotate", 0)
    messages = f"scan {scans:,} rotate {rotates:,}" if run.mode == "queue" else "-"
    return (
        f"{run.due_fraction * 100:5.1f}% {run.mode:6s} {run.wall:8.2f} {floor:8.2f} {run.wall / floor:7.2f}x "
        f"{tx:8,} {budget:8,} {tx / budget:6.3f} {sum(run.throttled):5,} {sum(run.creates):7,} "
        f"{run.rotated:6,}/{run.due:<6,} {messages:24s} {run.requeued:5,} {run.poisoned:3}"
        + (f"  !{run.note}" if run.note else "")
    )


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--secrets", type=int, default=100_000, help="in all, spread over the vaults")
    parser.add_argument("--vaults", type=int, default=4)
    parser.add_argument("--due", type=due_fraction, nargs="+", default=[0.01, 0.1], help="fractions or N%%")
    parser.add_argument("--latency", type=float, default=0.02, help="injected per request, seconds")
    parser.add_argument("--hosts", type=int, default=2, help="host processes for the fan-out")
    parser.add_argument("--creates-per-second", type=float, default=28.0, help="FANOUT_CREATES_PER_SECOND")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up a run after this many seconds")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4,000 secrets")
    parser.add_argument(
        "--modes", nargs="+", choices=("queue", "inline"), default=["queue", "inline"], help="what to run"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the fleet's logs in this folder")
    args = parser.parse_args()
    if args.quick:
        args.secrets = min(args.secrets, 4_000)
    if args.vaults < 1 or args.hosts < 1 or args.secrets < args.vaults * PAGE:
        parser.error("--vaults and --hosts must be at least 1, --secrets at least 25 per vault")

    from localdev.fleet import FleetConfig, azurite_unavailable, start_fleet

    reason = azurite_unavailable()
    if reason:
        print(f"fanout bench needs Azurite: {reason}", file=sys.stderr)
        return 2
    per_vault = args.secrets // args.vaults
    print(
        f"fan-out bench: {per_vault * args.vaults:,} secrets in {args.vaults} vaults ({per_vault:,} each), "
        f"due {', '.join(f'{d * 100:g} %' for d in args.due)}, latency {args.latency * 1000:.0f} ms, real limits "
        f"(300 creates / 4,000 transactions per 10 s per vault), fan-out on {args.hosts} host processes, "
        f"FANOUT_CREATES_PER_SECOND={args.creates_per_second:g} (Key Vault's limit: 30/s)",
        flush=True,
    )
    keep = args.keep
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
        state = keep or Path(tmp)
        config = FleetConfig(
            state_dir=state,
            vaults=args.vaults,
            latency=args.latency,
            throttling=True,
        )
        results: list[tuple[Run, float, int, str]] = []
        list_seconds: dict[float, float] = {}
        async with start_fleet(config) as fleet:
            os.environ.update(fleet.vault_env)
            os.environ["KEY_VAULT_URLS"] = ",".join(fleet.vault_urls)
            bench = Bench(fleet, args)
            for fraction in args.due:
                due = round(per_vault * fraction)
                floor, budget, binding = floor_seconds(per_vault, due, args.latency)
                budget_all = budget * args.vaults
                print(f"\n== {fraction * 100:g} % due: {due:,} per vault; floor {floor:.2f} s ({binding})")
                await bench.reseed(due)
                await bench.quiet_window()
                list_seconds[fraction] = await bench.list_only()
                pages = math.ceil(per_vault / PAGE)
                print(
                    f"  list  : {list_seconds[fraction]:7.2f} s, {list_seconds[fraction] / pages * 1000:.1f} ms per "
                    f"page against {args.latency * 1000:.0f} ms injected (this process, every vault at once)",
                    flush=True,
                )
                for mode in args.modes:
                    if mode != args.modes[0]:
                        await bench.reseed(due)
                    run = await bench.measure(mode, fraction, due)
                    results.append((run, floor, budget_all, binding))
                    print(
                        f"  {'fanout' if mode == 'queue' else 'inline'}: {run.wall:7.2f} s = {run.wall / floor:.2f}x "
                        f"floor, {sum(run.transactions):,} transactions (budget {budget_all:,}), "
                        f"429s {sum(run.throttled)}, SetSecret calls {sum(run.creates):,}, rotated "
                        f"{run.rotated:,}/{run.due:,}, invocations {dict(run.invocations)}, requeued "
                        f"{run.requeued}, poisoned {run.poisoned}" + (f" !{run.note}" if run.note else ""),
                        flush=True,
                    )
            from shared.keyvault import close_secret_client

            await close_secret_client()

    print(
        "\nSummary (wall from the admin call to done; transactions = the vaults' own count, seeding excluded)"
    )
    print(
        "  due   mode       wall    floor   ratio        tx   budget  tx/bud  429s SetSec rotated/due   "
        "messages processed       requeue poison"
    )
    for run, floor, budget, _ in results:
        print("  " + describe(run, floor, budget))
    print("\nGoals")
    goals: list[bool] = []
    for run, floor, budget, binding in results:
        if run.mode != "queue":
            continue
        inline = next(
            (r for r, *_ in results if r.mode == "inline" and r.due_fraction == run.due_fraction), None
        )
        tx = sum(run.transactions)
        wall_ok = run.ok and run.wall <= 1.25 * floor
        tx_ok = run.ok and tx == budget
        goals += [wall_ok, tx_ok]
        print(
            f"  {verdict(wall_ok)} {run.due_fraction * 100:g} % due: fan-out wall {run.wall:.2f} s <= 1.25 x floor "
            f"{floor:.2f} s ({binding}) -> {run.wall / floor:.2f}x; list-only here "
            f"{list_seconds[run.due_fraction]:.2f} s = {list_seconds[run.due_fraction] / floor:.2f}x floor"
        )
        print(
            f"  {verdict(tx_ok)} {run.due_fraction * 100:g} % due: fan-out transactions {tx:,} = budget {budget:,}"
        )
        if inline is not None:
            print(
                f"         (inline: {inline.wall:.2f} s = {inline.wall / floor:.2f}x floor, "
                f"{sum(inline.transactions):,} transactions)"
            )
    target = min(args.due, key=lambda d: abs(d - 0.1)) if 0.1 in args.due else max(args.due)
    fan = next((r for r, *_ in results if r.mode == "queue" and r.due_fraction == target), None)
    slow = next((r for r, *_ in results if r.mode == "inline" and r.due_fraction == target), None)
    if fan is not None and slow is not None:
        speed_ok = fan.ok and slow.ok and slow.wall >= 2 * fan.wall
        goals.append(speed_ok)
        print(
            f"  {verdict(speed_ok)} {target * 100:g} % due: fan-out {fan.wall:.2f} s at least 2x faster than "
            f"inline {slow.wall:.2f} s -> {slow.wall / fan.wall:.2f}x"
        )
    print(f"\n{sum(goals)} of {len(goals)} goals met" + ("" if all(goals) else " (FAIL above)"))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
