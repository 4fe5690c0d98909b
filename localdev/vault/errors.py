"""The service's error answers as typed exceptions: status, code, message, inner code, as the service sends.

Messages are the real service's texts where they are known (see shared/reference/keyvault-protocol.md §1.4);
the few marked "inferred" had no captured original.
"""

from __future__ import annotations

import json

REGION = "local"
GONE_HELP = "https://go.microsoft.com/fwlink/?linkid=2125182"


class ServiceError(Exception):
    """A Key Vault error response: `{"error": {"code", "message", "innererror"?}}` with an HTTP status."""

    status: int = 400
    code: str = "BadParameter"

    def __init__(self, message: str, *, inner_code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.inner_code = inner_code
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.inner_code:
            error["innererror"] = {"code": self.inner_code}
        return {"error": error}

    def json_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


class BadParameter(ServiceError):
    status, code = 400, "BadParameter"


class InvalidName(BadParameter):
    def __init__(self, name: str) -> None:
        super().__init__(f"The request URI contains an invalid name: {name}")


class UnsupportedApiVersion(BadParameter):
    def __init__(self, version: str, latest: str) -> None:
        super().__init__(
            f"The specified version ({version}) is not recognized. "
            f"Consider using the latest supported version ({latest})."
        )


class Unauthorized(ServiceError):
    """401; the wire layer adds the WWW-Authenticate challenge to every one of these, as the service does."""

    status, code = 401, "Unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "Forbidden"


class SecretDisabled(Forbidden):
    def __init__(self) -> None:
        super().__init__("Operation get is not allowed on a disabled secret.", inner_code="SecretDisabled")


class PurgeProtected(Forbidden):
    def __init__(self, vault: str) -> None:
        super().__init__(
            'Operation "purge" is not allowed because purge protection is enabled for this vault. '
            "Key Vault service will automatically purge it after the retention period has passed.\r\n"
            f"Vault: {vault};location={REGION}"
        )


class ForbiddenByRbac(Forbidden):
    def __init__(self, caller: str, action: str, resource: str, vault: str) -> None:
        super().__init__(
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, "
            "please observe propagation time.\r\n"
            f"Caller: {caller}\r\n"
            f"Action: '{action}'\r\n"
            f"Resource: '{resource}'\r\n"
            "Assignment: (not found)\r\n"
            "DenyAssignmentId: null\r\n"
            "DecisionReason: null \r\n"
            f"Vault: {vault};location={REGION}\r\n",
            inner_code="ForbiddenByRbac",
        )


class SecretNotFound(ServiceError):
    status, code = 404, "SecretNotFound"

    def __init__(self, name: str, version: str | None = None) -> None:
        what = f"{name}/{version}" if version else name
        super().__init__(
            f"A secret with (name/id) {what} was not found in this key vault. If you recently deleted this "
            "secret you may be able to recover it using the correct recovery command. For help resolving "
            f"this issue, please see {GONE_HELP}"
        )


class DeletedSecretNotFound(ServiceError):
    status, code = 404, "SecretNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(f"Deleted Secret not found: {name}")


class Conflict(ServiceError):
    status, code = 409, "Conflict"


class DeletedButRecoverable(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
            "in this state, the secret can only be recovered or purged.",
            inner_code="ObjectIsDeletedButRecoverable",
        )


class BeingRecovered(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"Secret {name} is currently being recovered and cannot be re-created; retry later.",
            inner_code="ObjectIsBeingRecovered",
        )


class BeingDeleted(Conflict):
    def __init__(self, name: str) -> None:
        # inferred: the service's text was not captured, only the inner code
        super().__init__(
            f"Secret {name} is currently being deleted and cannot be re-created; retry later.",
            inner_code="ObjectIsBeingDeleted",
        )


class AlreadyExists(Conflict):
    def __init__(self, name: str) -> None:
        # inferred: restoring over an existing name is a 409 (SDK docstring); the service's text is unknown
        super().__init__(f"Secret {name} already exists. Delete and purge it before restoring its backup.")


class Throttled(ServiceError):
    status, code = 429, "Throttled"

    def __init__(self, retry_after: float | None) -> None:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        super().__init__(
            "Request was not processed because too many requests were received. "
            "Reason: VaultRequestTypeLimitReached",
            headers=headers,
        )


class InternalError(ServiceError):
    status, code = 500, "InternalServerError"

    def __init__(self) -> None:
        super().__init__(
            "The local Key Vault failed on this request; its log has the details. Retry, or report it."
        )


class InjectedFault(ServiceError):
    """A failure the test controls asked for (not a service rule); the body follows the service's shape."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        self.status = status
        self.code = {429: "Throttled", 500: "InternalServerError", 503: "ServiceUnavailable"}.get(
            status, "InjectedFault"
        )
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        super().__init__(
            f"Fault injected by the local Key Vault test controls (HTTP {status}).", headers=headers
        )
