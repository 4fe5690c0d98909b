"""Host keys, generated once into <state-dir>/keys.json, and Azure's auth-level rules.

Azure accepts the key in `x-functions-key` or `?code=`. Function level: any function or host key
(or the master key); admin level: the master key only; system level (extension webhooks such as
Event Grid): the extension's system key or the master key. Anonymous: nothing.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from ..statedir import write_private

KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"


def _new_key() -> str:
    # Same shape as the host's generated keys: 40 random bytes, URL-safe base64, with '==' trimmed.
    return base64.urlsafe_b64encode(secrets.token_bytes(40)).decode().rstrip("=")


@dataclass(frozen=True)
class HostKeys:
    """The keys this host accepts; field names are the keys.json names."""

    masterKey: str
    defaultFunctionKey: str
    eventGridSystemKey: str

    @classmethod
    def load_or_create(cls, state_dir: Path) -> HostKeys:
        """Read keys.json, or create it (0600) on first start; missing fields are added, existing kept."""
        path = state_dir / "keys.json"
        existing: dict[str, str] = {}
        if path.exists():
            try:
                existing = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise RuntimeError(
                    f"{path} is not valid JSON ({exc}); delete it to generate new keys"
                ) from None
            if not isinstance(existing, dict) or not all(isinstance(v, str) for v in existing.values()):
                raise RuntimeError(
                    f"{path} is not an object of key names to strings; delete it to generate new keys"
                )
        values = {name: existing.get(name) or _new_key() for name in cls.__dataclass_fields__}
        keys = cls(**values)
        if values != existing:
            write_private(path, json.dumps(asdict(keys), indent=2).encode())
        return keys

    def allows(self, level: str, presented: str | None) -> bool:
        """Whether `presented` satisfies auth `level` (anonymous, function, admin, system)."""
        if level == "anonymous":
            return True
        if not presented:
            return False
        accepted: tuple[str, ...]
        if level == "function":
            accepted = (self.defaultFunctionKey, self.masterKey)
        elif level == "system":
            accepted = (self.eventGridSystemKey, self.masterKey)
        else:  # admin, and anything unknown: the strictest
            accepted = (self.masterKey,)
        try:  # a header may carry any bytes (aiohttp hands them on surrogate-escaped): not a key of ours
            offered = presented.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return any(hmac.compare_digest(offered, key.encode()) for key in accepted)
