"""The control plane's error answers as typed exceptions, in each service's own envelope.

ARM: `{"error": {"code", "message"}}`. Graph: `{"error": {"code", "message", "innerError": {...}}}`.
Entra's token endpoint: `{"error", "error_description", "error_codes", ...}`. Texts are the services' where
known (shared/reference/rotation-targets.md B.1, C.1); those marked "emulator" had no captured original.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


class CloudError(Exception):
    """One error answer: the status, the service's code and message, optional headers."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def arm_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def graph_body(self) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": request_id,
                    "client-request-id": request_id,
                },
            }
        }


def authorization_failed(client_id: str, object_id: str, action: str, scope: str) -> CloudError:
    return CloudError(
        403,
        "AuthorizationFailed",
        f"The client '{client_id}' with object id '{object_id}' does not have authorization to "
        f"perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently "
        "granted, please refresh your credentials.",
    )


def resource_not_found(resource_type: str, name: str, group: str) -> CloudError:
    return CloudError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{group}' was not found. For more "
        "details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def graph_denied() -> CloudError:
    return CloudError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def graph_not_found(object_id: str) -> CloudError:
    return CloudError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not "
        "present.",
    )


class TokenError(Exception):
    """An answer of Entra's token endpoint (OAuth 2.0 error JSON)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self) -> dict[str, Any]:
        trace = str(uuid.uuid4())
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace}",
            "error_codes": [self.code],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        }
