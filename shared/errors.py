"""Domain errors, and the one table that maps them and Key Vault's errors to (status, code, message).

Triggers never invent statuses: the HTTP blueprints answer `error.status` with `error.body()`, the timer
and Event Grid blueprints log `error.code`. No message here ever contains a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any


@cache
def vault_failures() -> tuple[type[BaseException], ...]:
    """What the vault or the network can cause; anything else is a bug and must surface as one, unmapped.

    A function, not a constant, so importing this module does not import azure.core (cold start):
    `except vault_failures() as exc:` evaluates it only when an exception is being matched."""
    from azure.core.exceptions import AzureError

    return (AzureError, TimeoutError, OSError)


# The role a caller's managed identity needs for each kind of vault call (named in 403 mappings).
ROLE_FOR_ACCESS = {
    "metadata": "Key Vault Reader (or Key Vault Secrets User)",
    "read": "Key Vault Secrets User",
    "write": "Key Vault Secrets Officer",
    "purge": "Key Vault Secrets Officer with purge permission",
}


class DomainError(Exception):
    """An error a caller or the vault can cause: it has a status, a stable code and a message for humans."""

    status: int = 500
    code: str = "InternalError"
    # True when the same call may succeed later unchanged (an event trigger raises these so it is redelivered).
    transient: bool = False

    def __init__(self, message: str, *, field: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["target"] = self.field
        return {"error": error}


class InvalidRequest(DomainError):
    status, code = 400, "InvalidRequest"


class PayloadTooLarge(DomainError):
    status, code = 413, "PayloadTooLarge"


class UnsupportedMediaType(DomainError):
    status, code = 415, "UnsupportedMediaType"


class OutOfScope(DomainError):
    status, code = 403, "OutOfScope"


class SecretNotFound(DomainError):
    status, code = 404, "SecretNotFound"


class SecretConflict(DomainError):
    status, code = 409, "Conflict"


class SecretDeletedButRecoverable(SecretConflict):
    code = "SecretDeletedButRecoverable"


class SecretDisabled(DomainError):
    status, code = 409, "SecretDisabled"


class VaultAccessDenied(DomainError):
    """The app's identity lacks a role: our configuration problem, not the caller's, hence 502."""

    status, code = 502, "VaultAccessDenied"


class VaultThrottled(DomainError):
    status, code, transient = 503, "VaultThrottled", True


class VaultUnavailable(DomainError):
    status, code, transient = 502, "VaultUnavailable", True


class VaultRejectedRequest(DomainError):
    """The vault called a request invalid (a 4xx we have no better name for): repeating it cannot help."""

    status, code = 502, "VaultRejectedRequest"


class VaultTimeout(DomainError):
    status, code, transient = 504, "VaultTimeout", True


class ConfigurationError(DomainError):
    status, code = 500, "ConfigurationError"

    @classmethod
    def of(cls, problem: Exception) -> ConfigurationError:
        """A settings problem (its message names the setting) plus what to do: one wording for every caller."""
        return cls(f"{str(problem).rstrip('.')}. Fix the app setting and restart the app.")


@dataclass(frozen=True)
class VaultCall:
    """What we were doing when the vault failed: used to word the mapped error."""

    name: str | None
    access: str = "metadata"  # one of ROLE_FOR_ACCESS's keys


@dataclass(frozen=True)
class VaultErrorCodes:
    """What Key Vault said, read from the exception's status and its KeyVaultError body — never by
    searching the exception's text."""

    status: int
    code: str
    inner: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> VaultErrorCodes:
        error = getattr(exc, "error", None)
        inner = getattr(error, "innererror", None)
        if isinstance(inner, dict):
            inner_code = str(inner.get("code") or "")
        else:
            inner_code = str(getattr(inner, "code", "") or "")
        return cls(
            status=int(getattr(exc, "status_code", None) or 0),
            code=str(getattr(error, "code", "") or ""),
            inner=inner_code,
            message=str(getattr(error, "message", "") or ""),
        )

    @property
    def purge_protected(self) -> bool:
        # The one error Key Vault gives no inner code for: its message is the only signal.
        return self.status == 403 and "purge protection" in self.message.lower()


def from_vault_error(exc: BaseException, call: VaultCall) -> DomainError:
    """Map an azure-core / Key Vault exception to a DomainError with a message that says what to do."""
    from azure.core.exceptions import (  # lazily: the common path never needs them
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceRequestTimeoutError,
        ServiceResponseError,
        ServiceResponseTimeoutError,
    )

    from .vault.retry import retry_after_of

    if isinstance(exc, DomainError):
        return exc
    what = f"secret '{call.name}'" if call.name else "the vault"
    # The transport's read/connect timeouts are timeouts too (504), not an unreachable vault (502).
    timeouts = (TimeoutError, ServiceRequestTimeoutError, ServiceResponseTimeoutError)
    if isinstance(exc, timeouts):
        return VaultTimeout(f"Key Vault did not answer in time for {what}; retry later.")
    if isinstance(exc, ResourceNotFoundError):
        return SecretNotFound(f"Secret '{call.name}' was not found in the vault.")
    codes = VaultErrorCodes.of(exc)
    inner = codes.inner
    if isinstance(exc, ResourceExistsError):
        if inner == "ObjectIsDeletedButRecoverable":
            return SecretDeletedButRecoverable(
                f"Secret '{call.name}' is deleted but recoverable, so its name cannot be reused. Recover it with "
                f"POST /api/secrets/{call.name}/recover (or repeat this write with ?recover=true to recover and "
                "then write), or purge it in the vault first."
            )
        if inner == "ObjectIsBeingRecovered":
            return SecretConflict(f"Secret '{call.name}' is being recovered; retry in a few seconds.")
        if inner == "ObjectIsBeingDeleted":
            return SecretConflict(f"Secret '{call.name}' is being deleted; retry in a few seconds.")
        return SecretConflict(f"Key Vault reported a conflict for {what}; retry later.")
    if isinstance(exc, ClientAuthenticationError):
        return VaultAccessDenied(
            "The app's managed identity could not authenticate to Key Vault. Check that the identity is enabled "
            "(and AZURE_CLIENT_ID names it, for a user-assigned identity) and that KEY_VAULT_URL is right."
        )
    if isinstance(exc, HttpResponseError):
        status = codes.status
        if status == 403 and inner == "SecretDisabled":
            return SecretDisabled(
                f"The current version of secret '{call.name}' is disabled; enable it or write a new one."
            )
        if codes.purge_protected:
            return SecretConflict(
                f"Secret '{call.name}' cannot be purged: the vault has purge protection on."
            )
        if status == 403:
            role = ROLE_FOR_ACCESS.get(call.access, ROLE_FOR_ACCESS["write"])
            return VaultAccessDenied(
                f"The app's managed identity is not allowed this operation on {what}. "
                f"Grant it the '{role}' role on the vault."
            )
        if status == 429:
            return VaultThrottled(
                "Key Vault is throttling requests; retry later.", retry_after=retry_after_of(exc) or 10
            )
        if status in (408, 504):
            return VaultTimeout(f"Key Vault timed out on {what}; retry later.")
        if status == 404:
            return SecretNotFound(f"Secret '{call.name}' was not found in the vault.")
        if status == 409:
            return SecretConflict(f"Key Vault reported a conflict for {what}; retry later.")
        if 400 <= status < 500:
            return VaultRejectedRequest(
                f"Key Vault refused the request for {what} (HTTP {status}); repeating it will not help. "
                "Check the request against Key Vault's limits, and report it if this app sent it as asked."
            )
        return VaultUnavailable(f"Key Vault answered HTTP {status} for {what}; retry later.")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, OSError)):
        return VaultUnavailable(
            f"Key Vault could not be reached for {what}; check KEY_VAULT_URL and the network."
        )
    return VaultUnavailable(f"Unexpected failure talking to Key Vault for {what} ({type(exc).__name__}).")


# ------------------------------------------------------------------ rotation targets
# Every rotator of an external target (a database, an Azure resource, an Entra app) maps its failures to
# exactly one of these three, so the engine knows whether to retry, stop, or draw a new value.


class TargetUnavailable(DomainError):
    """The target could not be reached or answered 429/5xx/timeout: the same step may succeed later.

    Never taken as "the pending credential is not applied": the engine keeps the pending version and retries."""

    status, code, transient = 503, "TargetUnavailable", True


class TargetRefused(DomainError):
    """The target refused us for a reason repeating cannot fix: no credential logs in, TLS verification
    failed, a privilege or role is missing. The message names what to grant or fix."""

    status, code = 502, "TargetRefused"


class CredentialRejected(DomainError):
    """The target's password policy refused the drawn value: the engine draws a new one (bounded)."""

    status, code = 502, "CredentialRejected"


class CrossInstanceLockRequired(DomainError):
    """A rotator that changes an external target runs only under the cross-instance lease."""

    status, code = 503, "CrossInstanceLockRequired"


class BudgetSpent(DomainError):
    """A run's time budget ended before this call could start: the next run does it."""

    status, code, transient = 503, "BudgetSpent", True


# ------------------------------------------------------------------ rotation and its locks


class RotationNotConfigured(DomainError):
    status, code = 409, "RotationNotConfigured"


class RotationPolicyInvalid(DomainError):
    status, code = 409, "RotationPolicyInvalid"


class SecretBusy(DomainError):
    """Another instance holds the secret's lease for longer than we wait."""

    status, code = 409, "SecretBusy"


class LockUnavailable(DomainError):
    """The lease store (AzureWebJobsStorage) cannot be reached or refuses us."""

    status, code, transient = 503, "LockUnavailable", True


def transient_codes() -> frozenset[str]:
    """The codes of every DomainError that may succeed later unchanged (`transient`)."""
    found: set[str] = set()
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        if cls.transient:
            found.add(cls.code)
        pending.extend(cls.__subclasses__())
    return frozenset(found)
