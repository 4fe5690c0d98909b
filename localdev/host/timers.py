"""Timer triggers: NCRONTAB schedules, one run at a time per function, past-due detection.

Like the Functions timer listener: six fields with seconds first (five-field expressions run at second
0), UTC, `%SETTING%` schedules resolved from app settings, `run_on_startup`, and a run that overruns
its next occurrence skips it (the next run is the next occurrence after it finished). With a schedule
monitor (use_monitor, default for schedules slower than once a minute) the last and next occurrences are
kept in <state-dir>/timers.json, so an occurrence missed while the host was down runs at start-up with
`past_due=True`, as the storage-backed monitor does in Azure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions import meta
from croniter import croniter

from .invocation import Invoker
from .registry import RegisteredFunction

_log = logging.getLogger("localdev.host")

_SETTING = re.compile(r"^%([^%]+)%$")
_MAX_SLEEP = 30.0  # re-check the wall clock at least this often (laptops sleep, clocks jump)


class ScheduleError(ValueError):
    """A timer's schedule is missing or invalid; the message names the function and the setting."""


def resolve_schedule(function_name: str, schedule: str | None, environ: Mapping[str, str]) -> str:
    """The NCRONTAB expression of a schedule, with `%SETTING%` looked up in the app settings."""
    if not schedule:
        raise ScheduleError(f"timer function {function_name} has no schedule")
    match = _SETTING.match(schedule.strip())
    if match:
        setting = match.group(1)
        value = environ.get(setting)
        if value is None or not value.strip():
            raise ScheduleError(
                f"timer function {function_name}: schedule {schedule} names app setting {setting}, which is "
                f'not set. Add "{setting}": "0 */5 * * * *" (an NCRONTAB expression) to local.settings.json '
                "Values or the environment."
            )
        return value.strip()
    return schedule.strip()


class NCrontab:
    """An NCRONTAB expression ({second} {minute} {hour} {day} {month} {day-of-week}), evaluated in UTC."""

    def __init__(self, expression: str, function_name: str = "?") -> None:
        fields = expression.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ScheduleError(
                f"timer function {function_name}: schedule {expression!r} must have six fields "
                "{second} {minute} {hour} {day} {month} {day-of-week}, e.g. '0 */5 * * * *'"
            )
        self.expression = " ".join(fields)
        # NCRONTAB needs both day-of-month and day-of-week to match (cron's OR does not apply).
        if not croniter.is_valid(self.expression, second_at_beginning=True):
            raise ScheduleError(
                f"timer function {function_name}: schedule {expression!r} is not valid NCRONTAB"
            )

    def next_after(self, moment: datetime) -> datetime:
        it = croniter(self.expression, moment, second_at_beginning=True, day_or=False)
        return it.get_next(datetime)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class ScheduleMonitor:
    """Last/next occurrences per timer in <state-dir>/timers.json (Azure keeps them in storage blobs)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
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
            "LastUpdated": _utcnow().isoformat(),
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
    ) -> None:
        self._invoker = invoker
        self._timers: dict[str, Timer] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._monitor = ScheduleMonitor(state_dir / "timers.json" if state_dir else None)
        for function in functions:
            crontab = NCrontab(resolve_schedule(function.name, function.schedule, environ), function.name)
            function.extra["resolved_schedule"] = crontab.expression
            first = crontab.next_after(_utcnow())
            every_minute_or_faster = (crontab.next_after(first) - first) <= timedelta(minutes=1)
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
        return timer.crontab.next_after(_utcnow()) if timer else None

    async def fire(self, timer: Timer, *, past_due: bool, scheduled: datetime | None) -> None:
        """One run (with the function's retry policy), never concurrently with another of the same function."""
        name = timer.function.name
        async with self.lock_for(name):
            status = self._monitor.get(name) if timer.use_monitor else None
            await self._invoker.invoke(timer.function, lambda: timer_request(past_due, status), retry=True)
            if timer.use_monitor and scheduled is not None:
                self._monitor.record(name, scheduled, timer.crontab.next_after(_utcnow()))

    async def _run(self, timer: Timer) -> None:
        name = timer.function.name
        try:
            status = self._monitor.get(name) if timer.use_monitor else None
            missed = status and status.get("Next") and datetime.fromisoformat(status["Next"]) < _utcnow()
            if missed:
                _log.info("timer %s missed an occurrence while stopped; running now (past due)", name)
                await self.fire(timer, past_due=True, scheduled=_utcnow())
            elif timer.function.run_on_startup:
                await self.fire(timer, past_due=False, scheduled=_utcnow())
            next_due = timer.crontab.next_after(_utcnow())
            if timer.use_monitor:
                self._monitor.record(
                    name, datetime.fromisoformat(status["Last"]) if status else _utcnow(), next_due
                )
            _log.info(
                "timer %s: schedule %s, next run %s", name, timer.crontab.expression, next_due.isoformat()
            )
            while True:
                while (remaining := (next_due - _utcnow()).total_seconds()) > 0:
                    await asyncio.sleep(min(remaining, _MAX_SLEEP))
                await self.fire(timer, past_due=False, scheduled=next_due)
                # An overrun skips the occurrences it covered, as the Functions timer listener does.
                next_due = timer.crontab.next_after(max(next_due, _utcnow()))
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("timer %s stopped unexpectedly", name)
