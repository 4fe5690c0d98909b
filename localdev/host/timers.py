"""Timer triggers: NCRONTAB schedules, one run at a time per function, past-due detection.

Like the Functions timer listener: schedules in NCRONTAB (localdev.host.ncrontab), UTC, `%SETTING%`
resolved from app settings anywhere in the expression, `run_on_startup`, and a run that overruns its next
occurrence skips it (the next run is the next occurrence after it finished). A timer whose schedule
cannot be resolved or parsed is put in error (logged, listed with its error by the admin API, never
fired) while the app's other functions run, as the host does. With a schedule monitor (use_monitor,
default for schedules slower than once a minute) the last and next occurrences are kept in
<state-dir>/timers.json, so an occurrence missed while the host was down runs at start-up with
`past_due=True`, as the storage-backed monitor does in Azure.

All time comes from an injected Clock: the scheduler sleeps on it, so tests advance a fake one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions import meta

from .clock import Clock, SystemClock
from .invocation import Invoker
from .ncrontab import NCrontab, ScheduleError, resolve_settings
from .registry import RegisteredFunction

_log = logging.getLogger("localdev.host")

_MAX_SLEEP = 30.0  # re-read the clock at least this often (laptops sleep, clocks jump)

__all__ = ["ScheduleError", "TimerService", "resolve_schedule", "timer_request"]


def resolve_schedule(function_name: str, schedule: str | None, environ: Mapping[str, str]) -> NCrontab:
    """The parsed schedule of a timer function; ScheduleError naming the function otherwise."""
    if not schedule or not schedule.strip():
        raise ScheduleError(f"timer function {function_name} has no schedule")
    try:
        return NCrontab.parse(resolve_settings(schedule.strip(), environ))
    except ScheduleError as exc:
        raise ScheduleError(f"timer function {function_name}: {exc}") from None


class ScheduleMonitor:
    """Last/next occurrences per timer in <state-dir>/timers.json (Azure keeps them in storage blobs)."""

    def __init__(self, path: Path | None, clock: Clock) -> None:
        self._path = path
        self._clock = clock
        self._status: dict[str, dict[str, str]] = {}
        if path and path.is_file():
            try:
                self._status = json.loads(path.read_text())
            except ValueError:
                _log.warning("ignoring unreadable %s (schedule status starts afresh)", path)

    def get(self, name: str) -> dict[str, str] | None:
        return self._status.get(name)

    def record(self, name: str, last: datetime, next_due: datetime) -> dict[str, str]:
        status = {
            "Last": last.isoformat(),
            "Next": next_due.isoformat(),
            "LastUpdated": self._clock.now().isoformat(),
        }
        self._status[name] = status
        if self._path:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._status, indent=2))
            tmp.replace(self._path)
        return status


def timer_request(past_due: bool, schedule_status: dict[str, Any] | None) -> Any:
    """A TimerRequest built by azure.functions' converter from the payload the host sends the worker."""
    payload = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": schedule_status, "IsPastDue": past_due}
    converter = meta.get_binding_registry().get("timerTrigger")
    return converter.decode(meta.Datum(type="json", value=json.dumps(payload)), trigger_metadata={})


@dataclass
class Timer:
    function: RegisteredFunction
    crontab: NCrontab
    use_monitor: bool


class TimerService:
    """Fires the app's timer functions; one lock per function keeps runs from overlapping."""

    def __init__(
        self,
        functions: list[RegisteredFunction],
        invoker: Invoker,
        environ: Mapping[str, str],
        state_dir: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._invoker = invoker
        self._clock = clock or SystemClock()
        self._timers: dict[str, Timer] = {}
        self.errors: dict[str, str] = {}  # function name -> why it is in error (not scheduled)
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._monitor = ScheduleMonitor(state_dir / "timers.json" if state_dir else None, self._clock)
        for function in functions:
            try:
                crontab = resolve_schedule(function.name, function.schedule, environ)
            except ScheduleError as exc:
                self.errors[function.name] = str(exc)
                function.extra["error"] = str(exc)
                _log.error("function %s is in error and will not run: %s", function.name, exc)
                continue
            function.extra["resolved_schedule"] = crontab.expression
            first = crontab.next_after(self._clock.now())
            second = crontab.next_after(first) if first else None
            every_minute_or_faster = bool(first and second and second - first <= timedelta(minutes=1))
            use_monitor = function.binding.get("useMonitor")
            self._timers[function.name] = Timer(
                function, crontab, (not every_minute_or_faster) if use_monitor is None else bool(use_monitor)
            )

    def lock_for(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def start(self) -> None:
        for timer in self._timers.values():
            if timer.function.disabled:
                _log.info(
                    "timer %s is disabled (AzureWebJobs.%s.Disabled)",
                    timer.function.name,
                    timer.function.name,
                )
                continue
            self._tasks.append(asyncio.create_task(self._run(timer), name=f"timer:{timer.function.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def next_occurrence(self, name: str) -> datetime | None:
        timer = self._timers.get(name)
        return timer.crontab.next_after(self._clock.now()) if timer else None

    async def fire(self, timer: Timer, *, past_due: bool, scheduled: datetime | None) -> None:
        """One run, with its retry policy, never concurrently with another run of the same function."""
        name = timer.function.name
        async with self.lock_for(name):
            status = self._monitor.get(name) if timer.use_monitor else None
            await self._invoker.invoke(timer.function, lambda: timer_request(past_due, status), retry=True)
            upcoming = timer.crontab.next_after(self._clock.now())
            if timer.use_monitor and scheduled is not None and upcoming is not None:
                self._monitor.record(name, scheduled, upcoming)

    async def _sleep_until(self, moment: datetime) -> None:
        while (remaining := (moment - self._clock.now()).total_seconds()) > 0:
            await self._clock.sleep(min(remaining, _MAX_SLEEP))

    async def _run(self, timer: Timer) -> None:
        name = timer.function.name
        try:
            status = self._monitor.get(name) if timer.use_monitor else None
            now = self._clock.now()
            missed = status and status.get("Next") and datetime.fromisoformat(status["Next"]) < now
            if missed:
                _log.info("timer %s missed an occurrence while stopped; running now (past due)", name)
                await self.fire(timer, past_due=True, scheduled=now)
            elif timer.function.run_on_startup:
                await self.fire(timer, past_due=False, scheduled=now)
            next_due = timer.crontab.next_after(self._clock.now())
            if next_due is None:
                _log.warning(
                    "timer %s: schedule %s never occurs; it will not run", name, timer.crontab.expression
                )
                return
            if timer.use_monitor:
                self._monitor.record(
                    name, datetime.fromisoformat(status["Last"]) if status else self._clock.now(), next_due
                )
            _log.info(
                "timer %s: schedule %s, next run %s", name, timer.crontab.expression, next_due.isoformat()
            )
            while next_due is not None:
                await self._sleep_until(next_due)
                await self.fire(timer, past_due=False, scheduled=next_due)
                # An overrun skips the occurrences it covered, as the Functions timer listener does.
                next_due = timer.crontab.next_after(max(next_due, self._clock.now()))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a scheduler bug must be logged, not kill the host silently
            _log.exception("timer %s stopped unexpectedly", name)
