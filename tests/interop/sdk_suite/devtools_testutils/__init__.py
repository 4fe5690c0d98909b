"""A stand-in for the Azure SDK repository's `devtools_testutils`, live mode only, written for this project.

The official `azure-keyvault-secrets` tests (shipped in its sdist on PyPI) import their harness from
`devtools_testutils`, which lives in the Azure SDK repository and is not on PyPI. Live against the local
Key Vault they need only a little of it: no recording proxy (the sanitizer and matcher calls configure that
proxy, so here they do nothing), a managed-identity credential, and clients that verify the local CA.

Environment (set by tests/interop/test_official_sdk_suite.py): AZURE_TEST_RUN_LIVE=true,
AZURE_KEYVAULT_URL, IDENTITY_ENDPOINT, IDENTITY_HEADER, LOCALDEV_CA_BUNDLE.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

__all__ = [
    "AzureMgmtPreparer",
    "AzureRecordedTestCase",
    "add_body_key_sanitizer",
    "add_general_regex_sanitizer",
    "add_oauth_response_sanitizer",
    "add_remove_header_sanitizer",
    "is_live",
    "recorded_by_proxy",
    "remove_batch_sanitizers",
    "set_custom_default_matcher",
    "test_proxy",
]


def is_live() -> bool:
    return os.environ.get("AZURE_TEST_RUN_LIVE", "").lower() in ("true", "yes", "1")


def _no_proxy(*args: Any, **kwargs: Any) -> None:
    """Recording-proxy configuration: there is no proxy in a live run."""


add_body_key_sanitizer = add_general_regex_sanitizer = add_oauth_response_sanitizer = _no_proxy
add_remove_header_sanitizer = remove_batch_sanitizers = set_custom_default_matcher = _no_proxy


@pytest.fixture(scope="session")
def test_proxy() -> None:
    """The recording proxy's fixture; a live run has none."""


def recorded_by_proxy(test: Callable[..., Any]) -> Callable[..., Any]:
    """Live: run the test as it is (no recording)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        return test(*args, **kwargs)

    return run


class AzureRecordedTestCase:
    """The base class the official tests derive from: names, credentials and clients for a live run."""

    @property
    def is_live(self) -> bool:
        return is_live()

    @staticmethod
    def await_prepared_test(test: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        """An async test (with its preparer) as a sync one, on an event loop of its own."""

        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(test(*args, **kwargs))

        return run

    def get_resource_name(self, name: str) -> str:
        return f"{name}{secrets.token_hex(4)}"

    def get_credential(self, client_class: type, is_async: bool = False, **kwargs: Any) -> Any:
        if is_async:
            from azure.identity.aio import ManagedIdentityCredential as AsyncCredential

            return AsyncCredential()
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential()

    def create_client_from_credential(self, client_class: type, credential: Any, **kwargs: Any) -> Any:
        # the local vault's CA, verified like any other; its URL is loopback: no challenge resource check
        kwargs.setdefault("connection_verify", os.environ["LOCALDEV_CA_BUNDLE"])
        kwargs.setdefault("verify_challenge_resource", False)
        # as the Azure SDK's harness does: HTTP bodies logged at DEBUG unless a test says otherwise
        kwargs.setdefault("logging_enable", True)
        return client_class(credential=credential, **kwargs)

    def fail(self, message: str) -> None:
        pytest.fail(message)


class AzureMgmtPreparer:
    """Imported by a helper module of the official tests that no live secrets test uses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("resource preparers are not part of this live stand-in")
