"""Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.

The key is the base64 part of a ``whsec_`` secret. Several space-separated signatures may be sent (key
rotation); a receiver accepts any one and rejects timestamps more than five minutes off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


class SigningKeyError(ValueError):
    """The signing key is not a whsec_ base64 secret; the message says what is expected (never the key)."""


def decode_key(secret: str) -> bytes:
    raw = secret.strip()
    if raw.startswith(PREFIX):
        raw = raw[len(PREFIX) :]
    try:
        key = base64.b64decode(raw, validate=True)
    except (ValueError, TypeError):
        raise SigningKeyError(
            "the webhook signing key must be 'whsec_' followed by base64 (e.g. 24-64 random bytes); "
            "store such a value in the Key Vault secret NOTIFY_WEBHOOK_KEY_SECRET names"
        ) from None
    if len(key) < 16:
        raise SigningKeyError("the webhook signing key is shorter than 16 bytes; store a longer whsec_ key")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one key."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str, headers: dict[str, str], body: bytes, *, now: int, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """Receiver side (tests; for users to copy): constant-time check of any v1 signature and the timestamp."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id, stamp, signatures = (
        lowered.get("webhook-id"),
        lowered.get("webhook-timestamp"),
        lowered.get("webhook-signature", ""),
    )
    if not message_id or not stamp or not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = sign(secret, message_id, int(stamp), body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split())
