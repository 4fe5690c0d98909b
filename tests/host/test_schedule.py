"""NCRONTAB grammar, %SETTING% anywhere, the scheduler and retries on a fake clock (no real cron seconds)."""

from __future__ import annotations

import logging
import random
import re
from datetime import UTC, datetime

import pytest

from localdev.host.ncrontab import NCrontab, ScheduleError, resolve_settings
from localdev.host.retry import RetryPolicy

from ..fixtures.eventually import eventually
from .conftest import app_module
from .fakeclock import FakeClock

START = datetime(2026, 12, 2, 18, 0, 0, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    "expression,expected",
    [
        ("0 */5 * * * *", datetime(2026, 12, 2, 18, 5, tzinfo=UTC)),
        ("0 30 9 * * 1-5", datetime(2026, 12, 3, 9, 30, tzinfo=UTC)),
        ("0 0 12 * * 0", datetime(2026, 12, 6, 12, tzinfo=UTC)),  # 0 = Sunday
        ("0 0 12 * * SUN,SAT", datetime(2026, 12, 5, 12, tzinfo=UTC)),
        ("5/15 * * * * *", datetime(2026, 12, 2, 18, 0, 5, tzinfo=UTC)),
        ("0 0 0 1 JAN *", datetime(2027, 1, 1, tzinfo=UTC)),
        ("0 0 0 13 * 5", datetime(2027, 8, 13, tzinfo=UTC)),  # Friday the 13th: day AND day of week
        ("*/20 * * * *", datetime(2026, 12, 2, 18, 20, tzinfo=UTC)),  # five fields: second 0
    ],
)
def test_ncrontab_next_occurrence(expression: str, expected: datetime) -> None:
    assert NCrontab.parse(expression).next_after(START) == expected


@pytest.mark.parametrize(
    "expression", ["0 0 0 L * *", "0 0 0 ? * *", "0 0 0 * * MON#1", "0 0 0 * * 7", "0 0 0 * *"]
)
def test_ncrontab_refuses_what_ncrontab_refuses(expression: str) -> None:
    with pytest.raises(ScheduleError):
        NCrontab.parse(expression)


def test_settings_are_resolved_anywhere_in_the_expression() -> None:
    assert resolve_settings("0 %MIN% %HOUR% * * *", {"MIN": "15", "HOUR": "3"}) == "0 15 3 * * *"
    with pytest.raises(ScheduleError, match="HOUR"):
        resolve_settings("0 %MIN% %HOUR% * * *", {"MIN": "15"})


def test_exponential_backoff_is_jittered_like_the_host() -> None:
    policy = RetryPolicy.from_setting(
        {
            "strategy": "exponential_backoff",
            "max_retry_count": "5",
            "minimum_interval": "00:00:30",
            "maximum_interval": "00:05:00",
        }
    )
    assert policy is not None
    seen = set()
    for seed in range(50):
        delays = policy.delays(random.Random(seed))
        first, second, third = next(delays), next(delays), next(delays)
        assert first == 30
        assert 30 + 0.8 * 30 <= second <= 30 + 1.2 * 30
        assert 30 + 0.8 * 60 <= third <= 30 + 1.2 * 60
        seen.add(round(second, 3))
    assert len(seen) > 40  # jittered, not a fixed 30 s then 60 s
    capped = policy.delays(random.Random(1))
    assert [round(next(capped)) for _ in range(8)][-1] == 300


async def test_timer_fires_on_the_fake_clock(host_factory, clean_environ) -> None:
    clean_environ["HOURLY_MINUTE"] = "7"
    clock = FakeClock(START)
    running = await host_factory("clocked", clock=clock)
    calls = app_module(running).CALLS
    assert running.host.timers.next_occurrence("hourly") == datetime(2026, 12, 2, 18, 7, tzinfo=UTC)
    await eventually(lambda: clock.sleeping)
    clock.advance(6 * 60)
    assert calls["hourly"] == []
    clock.advance(60)
    await eventually(lambda: calls["hourly"] == [False])
    clock.advance(3600)
    await eventually(lambda: len(calls["hourly"]) == 2)


async def test_a_timer_that_returns_a_value_fails_and_is_retried(
    host_factory, http, clean_environ, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="localdev.host")
    clean_environ["HOURLY_MINUTE"] = "7"
    clock = FakeClock(START)
    running = await host_factory("clocked", clock=clock)
    calls = app_module(running).CALLS
    async with http.post(
        f"{running.base_url}/admin/functions/returns",
        json={"input": ""},
        headers={"x-functions-key": running.keys.masterKey},
    ) as resp:
        assert resp.status == 202
    await eventually(lambda: calls["returns"] == [0] and 5.0 in clock.slept)
    clock.advance(5)
    await eventually(lambda: calls["returns"] == [0, 1])
    await eventually(lambda: "status=failed" in caplog.text)
    assert "function failed: function=returns" in caplog.text and "error=RuntimeError" in caplog.text


async def test_retry_delays_sleep_on_the_clock_with_jitter(host_factory, http, clean_environ, caplog) -> None:
    caplog.set_level(logging.INFO, logger="localdev.host")
    clean_environ["HOURLY_MINUTE"] = "7"
    clock = FakeClock(START)
    running = await host_factory("clocked", clock=clock, rng=random.Random(7))
    calls = app_module(running).CALLS
    async with http.post(
        f"{running.base_url}/admin/functions/backoff",
        json={"input": ""},
        headers={"x-functions-key": running.keys.masterKey},
    ) as resp:
        assert resp.status == 202

    def advanced() -> bool:
        clock.advance(130)
        return calls["backoff"] == [0, 1, 2, 3, 4]

    await eventually(advanced)
    delays = [float(d) for d in re.findall(r"function=backoff .* retry=\d in ([\d.]+)s", caplog.text)]
    assert len(delays) == 4
    assert delays[0] == 30.0
    assert 54.0 <= delays[1] <= 66.0 and delays[1] != 60.0  # 30 + 30 x [0.8, 1.2]
    assert 78.0 <= delays[2] <= 102.0
    assert delays[3] == 120.0  # capped at maximum_interval
