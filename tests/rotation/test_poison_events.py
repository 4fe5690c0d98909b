"""Poison input never becomes a 500 or a redelivery loop: a Key Vault event the app cannot use is logged
and acknowledged (handle returns), and an HTTP body nested too deep is a 400.

Before: EXP 1e20 / inf / NaN raised OverflowError outside the parser's try, garbage JSON nested 100,000
deep raised RecursionError, and "x\\n" passed the name check ($ matches before a trailing newline)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import InvalidRequest
from shared.rotation.events import NEAR_EXPIRY, EventError, handle, parse_event
from shared.validation import require_json, validate_name

DEEP = ("[" * 100_000 + "]" * 100_000).encode()


@pytest.mark.parametrize("raw", [1e20, float("inf"), float("nan"), "1e400", "yesterday", [1], {"a": 1}])
def test_an_impossible_time_is_an_event_error(raw: Any) -> None:
    with pytest.raises(EventError, match="EXP"):
        parse_event(NEAR_EXPIRY, {"ObjectName": "db", "Version": "v1", "EXP": raw})


@pytest.mark.parametrize("name", ["x\n", "x\r\n", "bad_name", "é", "-" * 128])
def test_names_key_vault_cannot_hold_are_refused_whole(name: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_name(name)
    with pytest.raises(EventError):  # events strip surrounding blanks first; a newline inside stays a newline
        parse_event(NEAR_EXPIRY, {"ObjectName": name.replace("x", "x\ny"), "Version": "v1"})


def test_json_nested_too_deep_is_a_400_not_a_recursion_error() -> None:
    with pytest.raises(InvalidRequest, match="not valid UTF-8 JSON"):
        require_json("application/json", DEEP)
    with pytest.raises(EventError):
        parse_event(NEAR_EXPIRY, DEEP)


_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_event_data = (
    st.fixed_dictionaries(
        {},
        optional={
            "ObjectName": st.text(max_size=12) | _json,
            "Version": st.text(max_size=8) | _json,
            "ObjectType": st.sampled_from(["Secret", "Key", "Certificate"]) | _json,
            "NBF": _json | st.floats(),
            "EXP": _json | st.floats(),
            "Id": st.text(max_size=40) | _json,
        },
    )
    | _json
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    event_type=st.sampled_from(
        [NEAR_EXPIRY, "Microsoft.KeyVault.SecretExpired", "Microsoft.KeyVault.SecretNewVersionCreated", ""]
    )
    | st.text(max_size=30),
    data=_event_data,
)
def test_parsing_any_event_body_either_succeeds_or_says_why(event_type: str, data: Any) -> None:
    """The parser's only failure is EventError (which handle() logs and acknowledges): nothing else escapes."""
    try:
        parse_event(event_type, data, subject=None, event_id="fuzz")
    except EventError:
        pass


async def test_handle_acknowledges_poison_events_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shared.rotation.events")
    for data in (
        {"ObjectName": "db", "Version": "v1", "EXP": 1e20},
        DEEP,
        {"ObjectName": "x\ny", "Version": "1"},
    ):
        await handle(NEAR_EXPIRY, data, event_id="poison")  # returns: Event Grid gets its 200 and stops
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("ignoring event poison" in r.getMessage() for r in warnings)


async def test_an_event_that_needs_no_action_is_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shared.rotation.events")
    await handle("Microsoft.KeyVault.SecretNewVersionCreated", {"ObjectName": "db", "Version": "v2"})
    [line] = [r for r in caplog.records if r.name == "shared.rotation.events"]
    assert line.levelno == logging.DEBUG and "needs no action" in line.getMessage()
