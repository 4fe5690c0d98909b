"""A small sync client for the local Key Vault's test controls (/_emulator), for tests and benchmarks.

It is what runs in the test process; the routes it calls live in `control.py`, on the vault's side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .control import CONTROL_KEY_HEADER
from .runtime import CONTROL_KEY_FILE


class ControlClient:
    """Sync client for /_emulator (tests and benchmarks); verifies the vault's CA like every other client.

    `ControlClient(running.vault_url, running.ca_bundle, running.control_key)` for a vault in this process,
    `ControlClient.for_state_dir(Path(".localdev"))` for one started elsewhere (its vault.env, control.key);
    `for_state_dir(dir, vault=i)` for the i-th vault (0-based) of a multi-vault process (KEY_VAULT_URLS).
    """

    def __init__(self, vault_url: str, ca_bundle: str, control_key: str, timeout: float = 10.0) -> None:
        import requests

        self.base = vault_url.rstrip("/") + "/_emulator"
        self.session = requests.Session()
        self.session.headers[CONTROL_KEY_HEADER] = control_key
        self.ca_bundle = ca_bundle
        self.timeout = timeout

    @classmethod
    def for_state_dir(cls, state_dir: Path, timeout: float = 10.0, vault: int = 0) -> ControlClient:
        """The client for the vault running in `state_dir` (its vault.env and control.key)."""
        env_file, key_file = state_dir / "vault.env", state_dir / CONTROL_KEY_FILE
        if not env_file.exists():
            raise FileNotFoundError(
                f"no {env_file}: no local Key Vault runs with --state-dir {state_dir}; start one (make run)"
            )
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        urls = env.get("KEY_VAULT_URLS", env["KEY_VAULT_URL"]).split(",")
        if not 0 <= vault < len(urls):
            raise ValueError(f"vault {vault}: the local Key Vault in {state_dir} serves {len(urls)} vault(s)")
        return cls(urls[vault], env["KEY_VAULT_CA_BUNDLE"], key_file.read_text().strip(), timeout)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        # verify per request: a session-level verify loses to REQUESTS_CA_BUNDLE in the environment
        response = self.session.request(
            method, f"{self.base}/{path}", json=body, timeout=self.timeout, verify=self.ca_bundle
        )
        if response.status_code >= 400:
            raise RuntimeError(f"control call {method} {path} failed: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def reset(self) -> None:
        self._call("POST", "reset")

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self._call("POST", "clock", {"advance_seconds": seconds})

    def set_faults(
        self,
        operation: str | None,
        status: int,
        rate: float = 1.0,
        retry_after: float | None = None,
        drop: bool = False,
        latency: float = 0.0,
        count: int | None = None,
        drop_response: bool = False,
    ) -> dict[str, Any]:
        return self._call(
            "PUT",
            "faults",
            {
                "operation": operation,
                "status": status,
                "rate": rate,
                "retry_after": retry_after,
                "drop": drop,
                "drop_response": drop_response,
                "latency": latency,
                "count": count,
            },
        )

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def seed_faults(self, seed: int | None) -> None:
        """Make the fault rules' random choices repeatable (None: fresh randomness)."""
        self._call("PUT", "faults/seed", {"seed": seed})

    def set_latency(self, seconds: float) -> None:
        self._call("PUT", "latency", {"seconds": seconds})

    def set_throttling(
        self,
        enabled: bool,
        transactions_per_10s: int = 4000,
        creates_per_10s: int = 300,
        retry_after: float | None = 1.0,
        window_seconds: float = 10.0,
    ) -> dict[str, Any]:
        return self._call(
            "PUT",
            "throttling",
            {
                "enabled": enabled,
                "transactions_per_10s": transactions_per_10s,
                "creates_per_10s": creates_per_10s,
                "retry_after": retry_after,
                "window_seconds": window_seconds,
            },
        )

    def set_soft_delete(self, retention_days: int = 90, purge_protection: bool = False) -> dict[str, Any]:
        return self._call(
            "PUT", "soft-delete", {"retention_days": retention_days, "purge_protection": purge_protection}
        )

    def set_operation_latency(
        self, delete: float | None = None, recover: float | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("delete", delete), ("recover", recover)) if v is not None}
        return self._call("PUT", "operation-latency", body)

    def issue_token(
        self, identity: str | None = None, audience: str | None = None, lifetime_seconds: float = 3600
    ) -> str:
        body: dict[str, Any] = {"lifetime_seconds": lifetime_seconds}
        if identity:
            body["identity"] = identity
        if audience:
            body["audience"] = audience
        return self._call("POST", "tokens", body)["access_token"]

    def seed(self, groups: list[dict[str, Any]], timeout: float | None = None) -> dict[str, Any]:
        """Bulk-insert new secrets (POST /_emulator/seed; its docstring has the group fields). The answer
        names the first and last secret of each group and never a value."""
        response = self.session.post(
            f"{self.base}/seed",
            json={"groups": groups},
            timeout=timeout or max(self.timeout, 120.0),
            verify=self.ca_bundle,
        )
        if response.status_code >= 400:
            raise RuntimeError(f"control call POST seed failed: {response.status_code} {response.text}")
        return response.json()

    def check_events(self) -> int:
        return int(self._call("POST", "events/check")["queued"])

    def close(self) -> None:
        self.session.close()
