"""`python -m bench [NAME ...]`: run the benchmarks, each in its own process, and say which ran.

Each script prints its own figures and ratios against a baseline measured in the same run; this runner
only sequences them (`make bench`, or `make bench ARGS=vault_throughput` for one).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "vault_throughput": "local Key Vault: mixed get/set/list tx/s (SQLite) vs in-memory and trivial-endpoint baselines",
    "http_write": "PUT /api/secrets/{name} through the app vs a direct set_secret (p50/p99)",
    "cold_start": "process start → first successful write: app vs a bare SDK script",
    "sweep_rotation": "rotation sweep of 10,000 secrets (1% and 10% due) vs a naive sweep (about 6 minutes)",
    "sweep_postgres": "one sweep rotating 200 PostgreSQL users (real server) vs a hand-written floor",
    "fanout": "100,000 secrets in 4 vaults, 1% and 10% due: queue fan-out on 2 hosts vs the inline sweep (10+ minutes)",
    "azurite_stalls": "Azurite's queues under fan-out load vs its blob leases: throughput and stalls (5 minutes)",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    failed = []
    for index, name in enumerate(names, 1):
        print(f"\n=== [{index}/{len(names)}] {name}: {BENCHMARKS[name]}", flush=True)
        began = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py")])
        print(f"=== {name}: exit {code} after {time.perf_counter() - began:.0f} s", flush=True)
        if code:
            failed.append(name)
    print(
        f"\n{len(names) - len(failed)} of {len(names)} benchmarks ran to completion"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
