"""The pytest side of the stand-in (`-p devtools_testutils.plugin`).

- the harness's markers; in a live run, tests marked `playback_test_only` skip (as in Azure's own harness);
- `--default-version-only`: deselect the runs at other API versions (the official preparer skips them
  in a live run anyway), so the counts are those of tests that really run;
- waits the official tests make for the real service's eventual consistency (the samples sleep 60 s after
  a purge) are cut when longer than LOCALDEV_MAX_SLEEP_SECONDS (default 5): the local vault purges at
  once. Shorter waits stay (the CRUD tests sleep 1 s so that `updated` differs from `created`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from . import is_live


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--default-version-only", action="store_true", help="only the default API version")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "playback_test_only(reason): runs only against recordings")
    config.addinivalue_line("markers", "live_test_only(reason): runs only against a live vault")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from azure.keyvault.secrets._shared.client_base import DEFAULT_VERSION

    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        version = callspec.params.get("api_version") if callspec is not None else None
        if config.getoption("default_version_only") and version is not None and version != DEFAULT_VERSION:
            dropped.append(item)
            continue
        kept.append(item)
        if is_live() and item.get_closest_marker("playback_test_only"):
            item.add_marker(pytest.mark.skip(reason="playback only: not run against a live vault"))
        if not is_live() and item.get_closest_marker("live_test_only"):
            item.add_marker(pytest.mark.skip(reason="live only"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def _short_waits() -> Iterator[None]:
    limit = float(os.environ.get("LOCALDEV_MAX_SLEEP_SECONDS", "5"))
    sleep, async_sleep = time.sleep, asyncio.sleep

    def capped(seconds: float) -> None:
        if seconds <= limit:
            sleep(seconds)

    async def async_capped(seconds: float, *args: Any, **kwargs: Any) -> Any:
        return await async_sleep(seconds if seconds <= limit else 0, *args, **kwargs)

    time.sleep, asyncio.sleep = capped, async_capped  # type: ignore[assignment]
    try:
        yield
    finally:
        time.sleep, asyncio.sleep = sleep, async_sleep
