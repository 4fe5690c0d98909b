"""The retry policy both sweeps' timers declare.

A sweep that fails (e.g. the vault cannot be listed) is worth two more tries within minutes rather than
waiting for the next schedule; the sweeps are idempotent, so a retry only converges further.
"""

from typing import TypedDict


class RetryOptions(TypedDict):
    strategy: str
    max_retry_count: str
    minimum_interval: str
    maximum_interval: str


TIMER_RETRY: RetryOptions = {
    "strategy": "exponential_backoff",
    "max_retry_count": "2",
    "minimum_interval": "00:00:30",
    "maximum_interval": "00:05:00",
}
