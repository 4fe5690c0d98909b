"""NCRONTAB, the schedule language of the Functions timer trigger, parsed and evaluated here (no croniter).

`{second} {minute} {hour} {day} {month} {day-of-week}` (a five-field expression has no seconds and
runs at second 0). Each field is a comma list of `*`, `n`, `a-b`, each optionally `/step`; months may
be JAN-DEC and days of week SUN-SAT, with day of week 0-6 (0 = Sunday). Quartz and cron extensions
(`L`, `W`, `?`, `#`, day of week 7) are refused, as NCrontab refuses them. A time matches when every
field matches (the day of month and the day of week both, unlike cron's either). Times are UTC.

`%NAME%` anywhere in the expression is replaced by the app setting NAME, as the host resolves it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_SETTING = re.compile(r"%([^%\s]+)%")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS = (  # name, low, high, names (index 0 = low)
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)
_SEARCH_DAYS = 366 * 5  # "0 0 0 29 2 1" (29 February on a Monday) may be years away; beyond this: never


class ScheduleError(ValueError):
    """A schedule that is missing, names an unset setting, or is not NCRONTAB; the message says which."""


def resolve_settings(expression: str, environ: Mapping[str, str]) -> str:
    """Replace every `%NAME%` with the app setting NAME; ScheduleError naming the first one not set."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        value = environ.get(name)
        if value is None or not value.strip():
            raise ScheduleError(
                f"schedule {expression} names app setting {name}, which is not set. Add "
                f'"{name}": "0 */5 * * * *" (an NCRONTAB expression) to local.settings.json Values or '
                "the environment"
            )
        return value.strip()

    return _SETTING.sub(lookup, expression).strip()


def _number(text: str, low: int, high: int, names: tuple[str, ...], field: str) -> int:
    if text.isdigit():
        value = int(text)
    elif names and text.upper() in names:
        value = names.index(text.upper()) + low
    else:
        raise ScheduleError(f"{field} field: {text!r} is not a number{' or a name' if names else ''}")
    if not low <= value <= high:
        raise ScheduleError(f"{field} field: {value} is outside {low}-{high}")
    return value


def _parse_field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{field} field {text!r} has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{field} field: step {step_text!r} must be a whole number above 0")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _number(first, low, high, names, field)
            end = _number(last, low, high, names, field)
            if start > end:
                raise ScheduleError(f"{field} field: range {base!r} runs backwards")
        else:
            start = _number(base, low, high, names, field)
            end = high if slash else start  # NCrontab reads "5/15" as 5-max every 15
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class NCrontab:
    """A parsed expression; `next_after(t)` is the first matching time strictly after t."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> NCrontab:
        fields = expression.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ScheduleError(
                f"schedule {expression!r} must have six fields {{second}} {{minute}} {{hour}} {{day}} "
                "{month} {day-of-week}, e.g. '0 */5 * * * *'"
            )
        parsed = []
        for text, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
            try:
                parsed.append(_parse_field(text, name, low, high, names))
            except ScheduleError as exc:
                raise ScheduleError(f"schedule {expression!r} is not NCRONTAB: {exc}") from None
        return cls(" ".join(fields), *parsed)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence after `moment` (UTC), or None if none within five years."""
        start = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        day = start.date()
        for offset in range(_SEARCH_DAYS):
            candidate = day + timedelta(days=offset)
            # Python: Monday=0 ... Sunday=6; NCRONTAB: Sunday=0 ... Saturday=6.
            if (
                candidate.month not in self.months
                or candidate.day not in self.days
                or (candidate.weekday() + 1) % 7 not in self.weekdays
            ):
                continue
            floor = (start.hour, start.minute, start.second) if offset == 0 else (0, 0, 0)
            found = self._first_time(floor)
            if found is not None:
                return datetime(candidate.year, candidate.month, candidate.day, *found, tzinfo=UTC)
        return None

    def _first_time(self, floor: tuple[int, int, int]) -> tuple[int, int, int] | None:
        for hour in sorted(h for h in self.hours if h >= floor[0]):
            for minute in sorted(self.minutes):
                if (hour, minute) < floor[:2]:
                    continue
                for second in sorted(self.seconds):
                    if (hour, minute, second) >= floor:
                        return hour, minute, second
        return None
