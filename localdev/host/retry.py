"""Time spans, and `@app.retry(...)` read once at load with the worker's rules, with the host's delays.

The worker (azure-functions-runtime) turns the decorator into the retry options it sends the host, and fails
indexing of the whole app if it cannot: intervals are read with `time.strptime(text, "%H:%M:%S")` (so
"00:30" and "1.00:00:00" are refused), a `fixed_delay` policy needs `delay_interval`, and the strategy must be
exactly `fixed_delay` or `exponential_backoff` (the protocol's enum labels). Refusing the same definitions
here, with the worker's reason, means an app that loads locally also indexes in Azure.

Delays are the host's: fixed_delay waits `delay_interval` every time; exponential_backoff follows the
WebJobs SDK's randomized exponential backoff (minimum first, then minimum + 2^(n-1) x minimum x a random
factor in [0.8, 1.2], capped at the maximum, and staying there once reached).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("fixed_delay", "exponential_backoff")
RANDOMIZATION_FACTOR = 0.2
_INT32_MAX = 2147483647  # the worker's default maximum_interval, in seconds


class RetryPolicyError(ValueError):
    """A retry setting the worker would refuse; the message names the field and the worker's reason."""


def parse_timespan(text: object, field: str) -> float:
    """`hh:mm:ss` in seconds, read exactly as the worker reads it (time.strptime with %H:%M:%S)."""
    if not isinstance(text, str):
        raise RetryPolicyError(
            f"retry {field} is {text!r}: write it as hh:mm:ss, e.g. 00:00:30 (the worker's strptime "
            "fails on anything else, and Azure then indexes none of the app's functions)"
        )
    try:
        parsed = time.strptime(text, "%H:%M:%S")
    except ValueError as exc:
        raise RetryPolicyError(
            f"retry {field} {text!r}: {exc} - write it as hh:mm:ss, e.g. 00:00:30 (hours 0-23; no days, "
            "no shorter forms)"
        ) from None
    return float(parsed.tm_hour * 3600 + parsed.tm_min * 60 + parsed.tm_sec)


_DOTNET_TIMESPAN = re.compile(r"^\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")


def parse_host_timespan(text: str, field: str) -> float:
    """A host.json time span ([d.]hh:mm:ss[.fff], a .NET TimeSpan) in seconds.

    The host, not the worker, reads host.json, so days are allowed here (functionTimeout "1.00:00:00")
    where a retry interval refuses them.
    """
    match = _DOTNET_TIMESPAN.match(text)
    if match is None:
        raise ValueError(f"{field} {text!r}: write it as hh:mm:ss or d.hh:mm:ss, e.g. 00:05:00")
    days, hours, minutes, seconds = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or float(seconds) >= 60:
        raise ValueError(f"{field} {text!r}: hours 0-23, minutes and seconds 0-59")
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """A function's retry policy; max_retry_count -1 retries forever."""

    strategy: str
    max_retry_count: int
    delay: float = 0.0
    minimum: float = 0.0
    maximum: float = float(_INT32_MAX)

    @classmethod
    def from_setting(cls, setting: Mapping[str, Any] | None) -> RetryPolicy | None:
        """The policy from get_settings_dict("retry_policy"); RetryPolicyError where the worker refuses it."""
        if not setting:
            return None
        strategy = setting.get("strategy")
        if strategy not in STRATEGIES:
            raise RetryPolicyError(
                f'retry strategy {strategy!r}: unknown enum label "{strategy}" - use fixed_delay or '
                "exponential_backoff, lower case"
            )
        try:
            max_retry_count = int(setting.get("max_retry_count"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RetryPolicyError(
                f"retry max_retry_count {setting.get('max_retry_count')!r}: use a whole number "
                "(-1 retries forever)"
            ) from None
        if strategy == "fixed_delay":
            if setting.get("delay_interval") is None:
                raise RetryPolicyError(
                    "a fixed_delay retry needs delay_interval (hh:mm:ss, e.g. 00:00:30); without it the "
                    "worker's strptime gets None and Azure indexes none of the app's functions"
                )
            return cls(
                strategy, max_retry_count, delay=parse_timespan(setting["delay_interval"], "delay_interval")
            )
        minimum = setting.get("minimum_interval")
        maximum = setting.get("maximum_interval")
        policy = cls(
            strategy,
            max_retry_count,
            minimum=parse_timespan(minimum, "minimum_interval") if minimum else 0.0,
            maximum=parse_timespan(maximum, "maximum_interval") if maximum else float(_INT32_MAX),
        )
        if policy.minimum > policy.maximum:
            raise RetryPolicyError(
                f"retry minimum_interval {minimum!r} is greater than maximum_interval {maximum!r} (the host "
                "refuses it: The minimumInterval must not be greater than the maximumInterval.)"
            )
        return policy

    def allows(self, retry_count: int) -> bool:
        """Whether retry number `retry_count` (1-based) may run."""
        return self.max_retry_count < 0 or retry_count <= self.max_retry_count

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The seconds to wait before retry 1, 2, ... of one invocation."""
        if self.strategy == "fixed_delay":
            while True:
                yield self.delay
        draw = rng or random.Random()
        current, exponent = 0.0, 0
        while True:
            if current != self.maximum:
                backoff = self.minimum
                if exponent > 0:
                    factor = draw.uniform(1.0 - RANDOMIZATION_FACTOR, 1.0 + RANDOMIZATION_FACTOR)
                    backoff += factor * (2.0 ** (exponent - 1)) * self.minimum
                if backoff < self.maximum:
                    current = backoff
                    exponent += 1
                else:
                    current = self.maximum
            yield current
