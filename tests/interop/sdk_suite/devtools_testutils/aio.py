"""`devtools_testutils.aio`: the async twin of `recorded_by_proxy` (live: run the test as it is)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any


def recorded_by_proxy_async(test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        return await test(*args, **kwargs)

    return run
