"""Chaos: 10% of every kind of call fails (429 with and without Retry-After, 500, 503, dropped connections)
during sweeps of 1,000 secrets; every due secret is still rotated exactly once.

The vault's fault plan is seeded (CHAOS_SEED): the same sequence of transactions meets the same faults on
every run, so a failure here reproduces (concurrency can still reorder which secret a transaction is for)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from tests.fixtures.rotation import seed, versions_of

pytestmark = [pytest.mark.usefixtures("more_retries", "rotation_env"), pytest.mark.slow]


@pytest.fixture
def more_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 10 % faults on every call, the default 4 retries leave a one-sweep run a few-percent chance of one
    exhausted call (then the next sweep converges); 8 make one sweep's outcome certain enough to assert."""
    monkeypatch.setenv("KEY_VAULT_RETRY_TOTAL", "8")


TOTAL, PER_BATCH = 1000, 100
CHAOS_SEED = 9
# Two sweeps, each with a different fault on each operation. Each kind lands on at least one operation
# that a sweep calls 100 times (once per due secret), so at 10 % no kind can go unexercised by chance
# (0.9**100 < 3e-5); the 40 list pages alone would miss a kind 1.5 % of the time.
FAULTS = [
    {
        "GetSecrets": dict(status=500),
        "GetSecretVersions": dict(status=0, drop=True),
        "SetSecret": dict(status=429, retry_after=0.05),
        "UpdateSecret": dict(status=429),
    },
    {
        "GetSecrets": dict(status=429),
        "GetSecretVersions": dict(status=500),
        "SetSecret": dict(status=0, drop=True),
        "UpdateSecret": dict(status=503),
    },
]


async def test_sweeps_of_1000_secrets_under_10_percent_faults_rotate_each_due_secret_once(
    kv_client: Any, make_engine: Any, vault_clock: Any, vault_control: Any
) -> None:
    now = vault_clock.now()

    def expiry(i: int) -> Any:
        if i % 10 == 0:
            return now + timedelta(days=10)  # batch A: due now
        if i % 10 == 5:
            return now + timedelta(days=35)  # batch B: due after the clock moves 10 days
        return now + timedelta(days=50)

    specs = [
        dict(name=f"chaos-{i:04d}", value="seed", tags={"ValidityPeriodDays": "60"}, expires_on=expiry(i))
        for i in range(TOTAL)
    ]
    batches = [[s["name"] for i, s in enumerate(specs) if i % 10 == k] for k in (0, 5)]
    await seed(kv_client, specs, concurrency=32)

    seen: dict[str, int] = {}
    for batch, faults in zip(batches, FAULTS, strict=True):
        vault_control.seed_faults(CHAOS_SEED)
        for operation, rule in faults.items():
            vault_control.set_faults(operation, rate=0.1, **rule)
        started = time.perf_counter()
        summary = await make_engine().sweep()
        elapsed = time.perf_counter() - started
        stats = vault_control.stats()
        vault_control.clear_faults()
        assert summary.errors == [], summary.errors[:5]
        assert summary.outcomes == {"Rotated": PER_BATCH, "NotDue": TOTAL - PER_BATCH}, dict(summary.outcomes)
        for name in batch:
            versions = await versions_of(kv_client, name)
            assert len(versions) == 2 and all(v.enabled for v in versions), name
        print(
            f"chaos sweep: {TOTAL} secrets, {PER_BATCH} due, {elapsed:.2f} s, transactions "
            f"{summary.transactions}, engine retries {summary.retries}, statuses {stats['statuses']}, "
            f"dropped {stats['dropped']}"
        )
        seen = {**stats["statuses"], "dropped": stats["dropped"]}  # cumulative over both sweeps
        if batch is batches[0]:
            vault_clock.days(10)
    assert all(seen.get(kind, 0) > 0 for kind in ("429", "500", "503", "dropped")), seen
    again = await make_engine().sweep()
    assert again.outcomes == {"NotDue": TOTAL}
