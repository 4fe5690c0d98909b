"""One HTTP transport for every Azure SDK client the app builds (Key Vault, queues, blob leases, ARM).

azure-core's default aiohttp transport costs, per request, what a busy worker cannot afford: given
`connection_verify=<CA file>` it builds a new SSLContext each time (and aiohttp pools connections per
context, so every request pays a TCP and TLS handshake), and with `trust_env` aiohttp reads ~/.netrc and
the proxy variables in a worker thread. On bench/fanout.py (20,000 secrets, 10 % due, 2 cores) giving the
storage clients this transport too took the inline sweep from 37.8 s to 23.8 s and the fan-out from 60.7 s
to 47-58 s. Here the proxy variables are read once, when a client is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.pipeline.transport import AsyncHttpTransport


def environment_proxies(url: str) -> dict[str, str] | None:
    """HTTPS_PROXY / HTTP_PROXY / NO_PROXY for `url`, read once: the transport below does not re-read them."""
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return {scheme: proxy}


def build_transport(ca_bundle: str | None, **timeouts: float) -> AsyncHttpTransport[Any, Any]:
    """azure-core's aiohttp transport on a session with ONE verifying TLS context, so connections are pooled,
    and no per-request environment lookups (pass `environment_proxies` to the client instead). Verification
    is unchanged: CERT_REQUIRED with hostname checks, against the CA bundle when one is set (the local Key
    Vault) and the system store otherwise."""
    import ssl

    import aiohttp
    from azure.core.pipeline.transport._aiohttp import AioHttpTransport

    context = ssl.create_default_context(cafile=ca_bundle)

    class PooledTransport(AioHttpTransport):
        """Opens its session on first use, on the running loop, as azure-core's own transport does."""

        _closed = False

        async def open(self) -> None:
            if self.session is None and not self._closed:
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=context),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    auto_decompress=False,
                    trust_env=False,
                )
            await super().open()  # type: ignore[no-untyped-call]

        async def close(self) -> None:
            self._closed = True
            await super().close()  # type: ignore[no-untyped-call]

    return PooledTransport(**timeouts)  # type: ignore[arg-type]  # connection/read timeouts, as azure-core takes them


def client_options(url: str, ca_bundle: str | None = None, **timeouts: float) -> dict[str, Any]:
    """`transport=` (and `proxies=` when the environment names one for `url`) for an SDK client of `url`."""
    options: dict[str, Any] = {"transport": build_transport(ca_bundle, **timeouts)}
    proxies = environment_proxies(url)
    if proxies:
        options["proxies"] = proxies
    return options


def from_connection_string(client_type: Any, connection: str, **kwargs: Any) -> Any:
    """`client_type.from_connection_string(connection)` (a storage service client) on this transport, with the
    proxies for the endpoint the string names (parsed first, without a request)."""
    endpoint = client_type.from_connection_string(connection).url
    return client_type.from_connection_string(connection, **kwargs, **client_options(endpoint))
