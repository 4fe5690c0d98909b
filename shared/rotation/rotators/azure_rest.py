"""Resource Manager and Microsoft Graph over azure-core's async pipeline, as the app's managed identity.

One pipeline per (service, event loop) per process, built on first use: the credential (shared.keyvault's
builder: managed identity, AZURE_CLIENT_ID for a user-assigned one), the pooled verifying transport, retries
that honour Retry-After (429 on every method; 5xx only where repeating is safe) and bearer tokens for
`https://management.azure.com/.default` / `https://graph.microsoft.com/.default`. Base URLs come from
AZURE_RESOURCE_MANAGER_URL and MICROSOFT_GRAPH_URL (the local control plane in tests).

Every failure leaves here as TargetUnavailable (retry later) or TargetRefused (the message says what to
grant or fix). Bodies are never logged; messages quote the service's error code and text, never a value.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...errors import TargetRefused, TargetUnavailable
from ...settings import Settings

if TYPE_CHECKING:
    from azure.core import AsyncPipelineClient
    from azure.core.credentials_async import AsyncTokenCredential

_log = logging.getLogger(__name__)

ARM_SCOPE = "https://management.azure.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_ROLE = (
    "the Microsoft Graph application permission Application.ReadWrite.OwnedBy (with admin consent) and "
    "ownership of the application (add the identity's service principal as an owner)"
)
USER_AGENT = "keyvault-secrets-functions-rotator"
MAX_ERROR_TEXT = 300

Sleep = Callable[[float], Awaitable[None]]


class ServiceRefused(TargetRefused):
    """A TargetRefused from an answer of ARM or Graph, keeping the service's status and error code."""

    def __init__(self, message: str, *, http_status: int, service_code: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.service_code = service_code


@dataclass
class Reply:
    """A 2xx answer: status, parsed JSON body (or None) and headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallContext:
    """What a call is about, to word a refusal: the operation, the resource and the role that allows it."""

    operation: str
    resource: str
    role: str


_pipelines: dict[tuple[int, str], AsyncPipelineClient[Any, Any]] = {}
_credentials: dict[int, AsyncTokenCredential] = {}


def _pipeline(
    settings: Settings, base_url: str, scope: str, retry_total: int
) -> AsyncPipelineClient[Any, Any]:
    from azure.core import AsyncPipelineClient
    from azure.core.pipeline.policies import (
        AsyncBearerTokenCredentialPolicy,
        AsyncRetryPolicy,
        HeadersPolicy,
        RequestIdPolicy,
        UserAgentPolicy,
    )

    from ...keyvault import build_credential
    from ...transport import build_transport

    loop = id(asyncio.get_running_loop())
    key = (loop, f"{base_url}|{scope}|{retry_total}")
    client = _pipelines.get(key)
    if client is not None:
        return client
    if not any(k[0] == loop for k in _pipelines):  # a new loop (tests): forget clients of the old one
        _pipelines.clear()
        _credentials.clear()
    credential = _credentials.get(loop)
    if credential is None:
        credential = _credentials[loop] = build_credential(settings)
    policies = [
        RequestIdPolicy(),
        HeadersPolicy({"Accept": "application/json"}),
        UserAgentPolicy(user_agent=USER_AGENT),
        AsyncRetryPolicy(retry_total=retry_total, retry_backoff_factor=0.5, retry_backoff_max=8),
        AsyncBearerTokenCredentialPolicy(credential, scope),
    ]
    transport = build_transport(settings.ca_bundle, connection_timeout=10, read_timeout=30)
    client = AsyncPipelineClient(base_url=base_url, policies=policies, transport=transport)
    _pipelines[key] = client
    return client


async def close_azure_clients() -> None:
    """Close every pipeline and credential (host shutdown, tests)."""
    clients, credentials = list(_pipelines.values()), list(_credentials.values())
    _pipelines.clear()
    _credentials.clear()
    for client in clients:
        await client.close()
    for credential in credentials:
        await credential.close()


def _base(url: str, setting: str) -> str:
    parsed = urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise TargetRefused(
            f"App setting {setting} must be an https:// URL, got {url!r}; fix it and restart."
        )
    return url.rstrip("/")


def _service_error(body: Any) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")[:MAX_ERROR_TEXT]
    return "", ""


def _retry_after(headers: Any) -> float | None:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class AzureRest:
    """ARM and Graph calls for the rotators; `sleep` is injected so tests never wait on the wall clock."""

    def __init__(self, settings: Settings, *, retry_total: int = 3, sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self.retry_total = retry_total
        self.sleep = sleep
        self.arm_url = _base(settings.resource_manager_url, "AZURE_RESOURCE_MANAGER_URL")
        self.graph_url = _base(settings.graph_url, "MICROSOFT_GRAPH_URL")

    async def arm(
        self, method: str, path: str, api_version: str, call: CallContext, body: Any = None
    ) -> Reply:
        url = f"{self.arm_url}{path}?api-version={api_version}"
        return await self._send(self.arm_url, ARM_SCOPE, method, url, body, call, "Azure Resource Manager")

    async def arm_url_get(self, url: str, call: CallContext) -> Reply:
        """GET an absolute URL ARM handed back (a long-running operation's status); only on ARM's own host."""
        if urlsplit(url).netloc.lower() != urlsplit(self.arm_url).netloc.lower():
            raise TargetRefused(
                f"Resource Manager pointed {call.operation} at another host ({urlsplit(url).netloc}); "
                "refusing to send the identity's token there. Check AZURE_RESOURCE_MANAGER_URL."
            )
        return await self._send(self.arm_url, ARM_SCOPE, "GET", url, None, call, "Azure Resource Manager")

    async def graph(self, method: str, path: str, call: CallContext, body: Any = None) -> Reply:
        url = f"{self.graph_url}/v1.0{path}"
        return await self._send(self.graph_url, GRAPH_SCOPE, method, url, body, call, "Microsoft Graph")

    async def _send(
        self, base: str, scope: str, method: str, url: str, body: Any, call: CallContext, service: str
    ) -> Reply:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
        from azure.core.rest import HttpRequest

        client = _pipeline(self.settings, base, scope, self.retry_total)
        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        try:
            response = await client.send_request(request)  # not streamed: the body is read here
        except ClientAuthenticationError as exc:
            raise TargetRefused(
                f"The app's managed identity could not get a token for {service} to {call.operation} "
                f"({type(exc).__name__}). Check that the identity is enabled (and AZURE_CLIENT_ID names "
                "it, for a user-assigned identity)."
            ) from None
        except (TimeoutError, HttpResponseError, OSError) as exc:
            raise self._transport_error(exc, service, call) from None
        except Exception as exc:  # azure-core's ServiceRequestError & co. are AzureErrors
            from azure.core.exceptions import AzureError

            if isinstance(exc, AzureError):
                raise self._transport_error(exc, service, call) from None
            raise
        headers = {k: v for k, v in response.headers.items()}
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = None
        if 200 <= response.status_code < 300:
            return Reply(response.status_code, parsed, headers)
        raise self._status_error(response.status_code, parsed, headers, service, call)

    @staticmethod
    def _transport_error(exc: BaseException, service: str, call: CallContext) -> Exception:
        text = f"{exc!s} {getattr(exc, 'inner_exception', '')!s}"
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                break
            cause = cause.__cause__ or getattr(cause, "inner_exception", None)
        if cause is not None or "CERTIFICATE_VERIFY_FAILED" in text:
            return TargetRefused(
                f"TLS verification of {service} failed while trying to {call.operation}; the app never "
                "falls back to an unverified connection. Check the URL setting and the CA bundle."
            )
        return TargetUnavailable(
            f"{service} could not be reached to {call.operation} on {call.resource} ({type(exc).__name__}); "
            "retry later."
        )

    @staticmethod
    def _status_error(
        status: int, body: Any, headers: dict[str, str], service: str, call: CallContext
    ) -> Exception:
        code, message = _service_error(body)
        said = f" ({service} said {code}: {message})" if code else f" (HTTP {status})"
        if status in (408, 429) or status >= 500:
            return TargetUnavailable(
                f"{service} answered HTTP {status} to {call.operation} on {call.resource}{said}; "
                "retry later.",
                retry_after=_retry_after(headers),
            )
        if status == 401:
            return ServiceRefused(
                f"{service} rejected the app's managed identity token to {call.operation}{said}. Check "
                "that the identity belongs to the resource's tenant and that the URL settings "
                "name the right cloud.",
                http_status=status,
                service_code=code,
            )
        if status == 403:
            return ServiceRefused(
                f"The app's managed identity may not {call.operation} on {call.resource}{said}. "
                f"Grant it {call.role}.",
                http_status=status,
                service_code=code,
            )
        if status == 404:
            return ServiceRefused(
                f"{call.resource} was not found when trying to {call.operation}{said}. Check the secret's "
                "ProviderAddress tag.",
                http_status=status,
                service_code=code,
            )
        return ServiceRefused(
            f"{service} refused to {call.operation} on {call.resource}{said}; repeating will not help.",
            http_status=status,
            service_code=code,
        )
