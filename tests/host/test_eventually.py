"""The shared `eventually` helper: returns the first truthy value, fails naming what it waited for."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures.eventually import eventually, eventually_sync


async def test_returns_the_first_truthy_value() -> None:
    seen: list[int] = []

    async def later() -> None:
        await asyncio.sleep(0.05)
        seen.append(7)

    task = asyncio.create_task(later())
    assert await eventually(lambda: seen[:1]) == [7]
    await task


async def test_accepts_an_async_predicate() -> None:
    async def ready() -> str:
        return "yes"

    assert await eventually(ready) == "yes"


async def test_times_out_naming_the_predicate() -> None:
    with pytest.raises(AssertionError, match=r"still false after 0.05 s \(last value 0\).*never_true"):
        await eventually(lambda: 0 if "never_true" else 1, timeout=0.05)


def test_sync_twin() -> None:
    calls = iter([0, 0, 3])
    assert eventually_sync(lambda: next(calls), interval=0) == 3
    with pytest.raises(AssertionError, match="still false"):
        eventually_sync(lambda: None, timeout=0.03)
