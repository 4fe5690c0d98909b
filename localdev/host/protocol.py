"""The host's HTTP connections: malformed requests refused without echoing them, stalled headers cut off.

aiohttp answers a request line or header that is too long (or otherwise unparsable) with a 400 whose body
is the start of the offending line, and logs that line at ERROR - for `?code=<master key>&pad=...` that is
the master key, in the log and back on the wire. Here such a request gets a fixed 400 and one INFO line
naming only the error's kind. A connection that has not finished its first request's headers within
`header_timeout` seconds is closed (aiohttp waits forever); idle keep-alive connections are closed by
aiohttp's keepalive_timeout, and bodies by FunctionHost.read_body's timeout.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

_log = logging.getLogger("localdev.host.requests")

HEADER_TIMEOUT = 10.0  # first request: headers complete within this
KEEPALIVE_TIMEOUT = (
    15.0  # later requests: aiohttp closes a connection idle (or stalled mid-headers) this long
)


class GuardedRequestHandler(RequestHandler):  # type: ignore[misc]
    __slots__ = ("_header_timer",)
    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._header_timer: asyncio.TimerHandle | None = loop.call_later(
            self.header_timeout, self._headers_overdue
        )

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self._request_count == 0 and self.transport is not None:
            _log.info("closed a connection that sent no complete request within %gs", self.header_timeout)
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400:
            return super().handle_error(request, status, exc, None)
        _log.info(
            "refused a malformed request from %s: %s (its text is not logged: it may carry a key)",
            request.remote,
            type(exc).__name__ if exc else "bad request",
        )
        response = web.Response(
            status=400,
            text="Bad request: the request line or a header is too long or malformed.",
            headers={"Connection": "close"},
        )
        response.force_close()
        return response


class GuardedServer(web.Server):  # type: ignore[misc]
    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections are GuardedRequestHandlers."""

    async def _make_server(self) -> web.Server:
        server: Any = await super()._make_server()
        # aiohttp builds the Server inside Application._make_handler; only its protocol factory changes.
        server.__class__ = GuardedServer
        return server  # type: ignore[no-any-return]
