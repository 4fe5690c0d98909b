"""Running one function: argument binding, context, sync vs async, retry policy.

As in the Python worker: `async def` functions run on the host's one event loop (so the app's shared
aio client is reused across invocations), plain functions in a thread pool; the trigger value is passed
by the binding's name and `context` is injected when the function declares it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from .clock import Clock, SystemClock
from .registry import RegisteredFunction

_log = logging.getLogger("localdev.host")


@dataclass(frozen=True)
class TraceContext:
    """W3C trace context of the invocation (a fresh traceparent per invocation), as the worker passes it."""

    trace_parent: str
    trace_state: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryContext:
    """Where the invocation stands in its retry policy (retry_count 0 = first attempt)."""

    retry_count: int
    max_retry_count: int
    exception: Any = None


class InvocationContext(func.Context):
    """The `context` argument, with the attributes the worker's Context has."""

    _thread_local = threading.local()

    def __init__(
        self,
        invocation_id: str,
        function_name: str,
        function_directory: str,
        trace_context: TraceContext,
        retry_context: RetryContext,
    ) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = trace_context
        self._retry_context = retry_context

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:  # type: ignore[override]
        return self._trace_context

    @property
    def retry_context(self) -> RetryContext:  # type: ignore[override]
        return self._retry_context

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._thread_local


class FunctionTimeout(TimeoutError):
    """The invocation ran longer than host.json's functionTimeout."""


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame: enough to find the bug, without the message (it may carry data)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


@dataclass
class InvocationResult:
    """What happened: the return value or the exception, with the ids for the log."""

    invocation_id: str
    function_name: str
    value: Any = None
    error: BaseException | None = None
    duration_ms: float = 0.0
    attempts: int = 1

    @property
    def succeeded(self) -> bool:
        return self.error is None


class Invoker:
    """Runs functions on the host loop or in the thread pool and logs one line per invocation."""

    def __init__(
        self,
        function_directory: str,
        max_workers: int | None = None,
        timeout_seconds: float | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._directory = function_directory
        self._clock = clock or SystemClock()  # retry delays sleep on it
        self._rng = rng or random.Random()  # the exponential backoff's jitter
        # host.json functionTimeout: the invocation fails after it (a sync function's thread runs on).
        self._timeout = timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="localdev-fn")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _context(
        self, function: RegisteredFunction, invocation_id: str, retry: RetryContext
    ) -> InvocationContext:
        trace_parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
        return InvocationContext(
            invocation_id, function.name, self._directory, TraceContext(trace_parent), retry
        )

    async def _call_once(
        self, function: RegisteredFunction, trigger_value: Any, context: InvocationContext
    ) -> Any:
        kwargs: dict[str, Any] = {function.trigger_name: trigger_value}
        if function.wants_context:
            kwargs["context"] = context
        if function.is_async:
            running: Awaitable[Any] = function.user_function(**kwargs)
        else:
            call: Callable[[], Any] = functools.partial(function.user_function, **kwargs)
            running = asyncio.get_running_loop().run_in_executor(self._pool, call)
        if self._timeout is None:
            value = await running
        else:
            try:
                value = await asyncio.wait_for(running, self._timeout)
            except TimeoutError:
                raise FunctionTimeout(f"functionTimeout of {self._timeout:g}s exceeded") from None
        if value is not None and not function.has_return:
            # The worker's rule: a value from a function with no $return binding (a timer, an Event Grid
            # function) fails the invocation, so its retry policy applies.
            raise RuntimeError(
                f"function {function.name!r} without a $return binding returned a non-None value"
            )
        return value

    async def invoke(
        self,
        function: RegisteredFunction,
        make_trigger_value: Callable[[], Any],
        invocation_id: str | None = None,
        retry: bool = False,
    ) -> InvocationResult:
        """Invoke once, or under the function's retry policy when `retry`; never raises its error."""
        invocation_id = invocation_id or str(uuid.uuid4())
        policy = function.retry if retry else None
        max_retries = policy.max_retry_count if policy else 0
        delays = policy.delays(self._rng) if policy else iter(())
        result = InvocationResult(invocation_id, function.name)
        started = time.perf_counter()
        attempt = 0
        last_error: BaseException | None = None
        while True:
            context = self._context(function, invocation_id, RetryContext(attempt, max_retries, last_error))
            try:
                result.value = await self._call_once(function, make_trigger_value(), context)
                result.error = None
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the function's own failure: logged by type, never by message
                result.error = last_error = exc
                _log.error(
                    "function failed: function=%s invocation=%s attempt=%d error=%s at=%s",
                    function.name,
                    invocation_id,
                    attempt + 1,
                    type(exc).__name__,
                    _where(exc),
                )
                if policy is None or not policy.allows(attempt + 1):
                    break
                attempt += 1
                delay = next(delays)
                _log.info(
                    "retrying: function=%s invocation=%s retry=%d in %.3fs",
                    function.name,
                    invocation_id,
                    attempt,
                    delay,
                )
                await self._clock.sleep(delay)
        result.attempts = attempt + 1
        result.duration_ms = (time.perf_counter() - started) * 1000
        _log.info(
            "invocation: function=%s invocation=%s status=%s duration_ms=%.1f attempts=%d",
            function.name,
            invocation_id,
            "succeeded" if result.succeeded else "failed",
            result.duration_ms,
            result.attempts,
        )
        return result
