"""The one Retry-After parser: milliseconds first (Key Vault's own hint), then seconds or an HTTP date."""

from __future__ import annotations

import email.utils
import time

import pytest

from shared.vault.retry import RETRY_AFTER_CAP_SECONDS, retry_after_seconds


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        (
            {"retry-after-ms": "1500", "Retry-After": "9"},
            1.5,
        ),  # the finer hint wins (the two parsers disagreed)
        ({"x-ms-retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "86400"}, RETRY_AFTER_CAP_SECONDS),
        ({"Retry-After": "soon"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str] | None, expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_an_http_date_is_seconds_from_now() -> None:
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= (retry_after_seconds({"Retry-After": in_ten}) or 0) <= 10
