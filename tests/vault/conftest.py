"""Helpers for the emulator's own tests: raw HTTPS calls (to see exact wire shapes) and extra vaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from localdev.vault.server import RunningVault


class RawVault:
    """Plain HTTPS to the vault with a real token from the identity endpoint (CA-verified, like the SDK)."""

    def __init__(self, vault: RunningVault) -> None:
        self.vault = vault
        self.session = requests.Session()
        self._token: str | None = None

    def token(self, **params: str) -> str:
        response = requests.get(
            self.vault.identity_endpoint,
            params={"api-version": "2019-08-01", "resource": "https://vault.azure.net", **params},
            headers={"X-IDENTITY-HEADER": self.vault.identity_header, "Metadata": "true"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def call(
        self,
        method: str,
        path: str,
        *,
        api_version: str | None = "2026-04-01",
        token: str | None = "auto",
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        if token == "auto":
            self._token = self._token or self.token()
            token = self._token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        query = dict(params or {})
        if api_version is not None:
            query["api-version"] = api_version
        url = path if path.startswith("https://") else self.vault.vault_url + path
        return self.session.request(
            method, url, params=query, json=json, headers=headers, timeout=10, verify=self.vault.ca_bundle
        )


@pytest.fixture
def raw(vault: RunningVault, vault_control) -> Iterator[RawVault]:
    client = RawVault(vault)
    yield client
    client.session.close()


@pytest.fixture(autouse=True)
def _fresh_vault(vault_control) -> None:
    """Every emulator test starts from an empty vault with startup settings."""


class EitherClient:
    """One awaitable surface over the sync SDK (run in a worker thread) or the aio SDK, so each rule is
    checked through both clients. Names follow the aio client; `delete`/`recover` wait for their pollers."""

    def __init__(self, kind: str, client: Any) -> None:
        self.kind = kind
        self.client = client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        if self.kind == "aio":
            if method.startswith("list_"):
                return [item async for item in getattr(self.client, method)(*args, **kwargs)]
            return await getattr(self.client, method)(*args, **kwargs)

        def run() -> Any:
            if method in ("delete_secret", "recover_deleted_secret"):
                poller = getattr(self.client, f"begin_{method}")(*args, **kwargs)
                poller.wait()
                return poller.result()
            result = getattr(self.client, method)(*args, **kwargs)
            return list(result) if method.startswith("list_") else result

        return await asyncio.to_thread(run)


@pytest.fixture(params=["sync", "aio"])
async def kv(request, vault, vault_env) -> Any:
    from tests.fixtures.vault import aclose_client, make_aio_client, make_sync_client

    if request.param == "sync":
        with make_sync_client(vault) as client:
            yield EitherClient("sync", client)
    else:
        client = make_aio_client(vault)
        try:
            yield EitherClient("aio", client)
        finally:
            await aclose_client(client)
