"""The leak guard itself can fail: a value logged anywhere (any logger, any level, any field) is found."""

from __future__ import annotations

import logging

import pytest

from tests.fixtures.app import SecretValues, _log_texts


@pytest.mark.parametrize("how", ["message", "args", "extra", "exception"])
def test_a_logged_value_is_detected(caplog: pytest.LogCaptureFixture, how: str) -> None:
    guard = SecretValues()  # not the fixture's registry: this test's leak is deliberate
    value = guard.new()
    logger = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    caplog.set_level(logging.DEBUG)
    if how == "message":
        logger.debug("body: " + value)
    elif how == "args":
        logger.debug("body: %s", value)
    elif how == "extra":
        logger.debug("request", extra={"payload": {"value": value}})
    else:
        try:
            raise ValueError(value)
        except ValueError:
            logger.debug("failed", exc_info=True)
    assert any(guard.leaked_into(text) for text in _log_texts(caplog))
    caplog.clear()


def test_a_value_in_a_response_is_detected() -> None:
    guard = SecretValues()
    value = guard.new()
    assert guard.leaked_into(f'{{"value": "{value}"}}') and not guard.leaked_into('{"value": null}')
