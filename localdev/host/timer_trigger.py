"""Timer triggers as the admin API sees them: schedule facts and manual runs (timers.py schedules them)."""

from __future__ import annotations

from typing import Any

from .context import FunctionHost, ManualInputError
from .registry import RegisteredFunction
from .timers import timer_request


class TimerTriggers:
    def __init__(self, host: FunctionHost) -> None:
        self.host = host

    def describe(self, function: RegisteredFunction, base_url: str) -> dict[str, Any]:
        timers = self.host.timers
        upcoming = timers.next_occurrence(function.name)
        entry: dict[str, Any] = {
            "schedule": function.schedule,
            "resolvedSchedule": function.extra.get("resolved_schedule"),
            "runOnStartup": function.run_on_startup,
            "retryPolicy": function.retry_policy,
            "nextRun": upcoming.isoformat() if upcoming else None,
        }
        if function.name in timers.errors:
            entry["error"] = timers.errors[function.name]
        return entry

    def manual_input(self, function: RegisteredFunction, value: Any) -> Any:
        if function.name in self.host.timers.errors:
            raise ManualInputError(
                f"{function.name} is in error and does not run: {self.host.timers.errors[function.name]}"
            )
        return value  # a timer's manual input is not passed to it (as in Azure)

    async def manual_run(self, function: RegisteredFunction, value: Any, invocation_id: str) -> None:
        """Under the timer's singleton lock (never beside a scheduled run), with its retry policy."""
        async with self.host.timers.lock_for(function.name):
            await self.host.invoker.invoke(
                function, lambda: timer_request(False, None), invocation_id, retry=True
            )
