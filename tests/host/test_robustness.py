"""Hostile or broken clients get a clean 400/401/408/413, the connection is closed, and no key leaks.

Raw sockets where aiohttp's client would refuse to send the request (non-UTF-8 header bytes, an
oversized request line, a stalled request). Each case was a 500, a leak or a hang before.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from localdev.host.protocol import GuardedRequestHandler


@pytest.fixture
async def host(host_factory):
    return await host_factory("http")


async def raw(running, data: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh connection; the host's first answer (the status line and headers at least)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), read_timeout)
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_non_utf8_key_is_a_401_not_a_500(host, caplog) -> None:
    caplog.set_level(logging.INFO, logger="localdev.host")
    answer = await raw(
        host,
        b"GET /api/echo/Bob HTTP/1.1\r\nHost: x\r\nx-functions-key: \xff\xfe\r\nConnection: close\r\n\r\n",
    )
    assert status_of(answer) == 401
    assert "Traceback" not in caplog.text
    assert "auth='wrong key for function'" in caplog.text


async def test_a_401_says_whether_the_key_was_missing_or_wrong_never_the_key(host, http, caplog) -> None:
    caplog.set_level(logging.INFO, logger="localdev.host")
    async with http.get(f"{host.base_url}/api/echo/Bob") as resp:
        assert resp.status == 401
    async with http.get(
        f"{host.base_url}/api/echo/Bob", headers={"x-functions-key": "not-the-key-zzz"}
    ) as resp:
        assert resp.status == 401
    async with http.get(
        f"{host.base_url}/admin/functions", headers={"x-functions-key": host.keys.defaultFunctionKey}
    ) as resp:
        assert resp.status == 401
    assert "auth='no key'" in caplog.text
    assert "auth='wrong key for function'" in caplog.text
    assert "auth='wrong key for admin'" in caplog.text
    assert "not-the-key-zzz" not in caplog.text and host.keys.defaultFunctionKey not in caplog.text


@pytest.mark.parametrize("target", ["admin", "eventgrid"])
async def test_json_nested_100000_deep_is_a_400(host_factory, http, target: str) -> None:
    running = await host_factory("triggers")
    body = b"[" * 100_000 + b"]" * 100_000
    master = {"x-functions-key": running.keys.masterKey, "Content-Type": "application/json"}
    if target == "admin":
        url = f"{running.base_url}/admin/functions/manual_timer"
    else:
        url = f"{running.base_url}/runtime/webhooks/eventgrid?functionName=on_event"
        master["aeg-event-type"] = "Notification"
    async with http.post(url, data=body, headers=master) as resp:
        assert resp.status == 400
        assert "error" in await resp.json()


async def test_an_oversized_request_line_never_logs_or_echoes_the_key(host, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    master = host.keys.masterKey
    line = f"GET /api/echo/Bob?code={master}&pad={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    answer = await raw(host, line)
    assert status_of(answer) == 400
    assert master.encode() not in answer
    assert "refused a malformed request" in caplog.text
    assert master not in caplog.text
    assert master[:16] not in caplog.text


async def test_a_body_over_the_limit_is_refused_from_content_length_before_it_is_sent(
    host_factory, clean_environ
) -> None:
    clean_environ["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] = str(256 * 1024)
    running = await host_factory("http")
    key = running.keys.defaultFunctionKey
    head = (
        f"POST /api/echo/Bob HTTP/1.1\r\nHost: x\r\nx-functions-key: {key}\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    # Not one byte of the 50 MB body is sent: the answer comes from the header alone.
    answer = await raw(running, head, read_timeout=5.0)
    assert status_of(answer) == 413


async def test_a_stalled_body_is_cut_off_with_a_408(host) -> None:
    host.host.body_timeout = 0.2
    key = host.keys.defaultFunctionKey
    head = (
        f"POST /api/echo/Bob HTTP/1.1\r\nHost: x\r\nx-functions-key: {key}\r\nContent-Length: 100\r\n\r\n"
        "only part of it"
    ).encode()
    started = time.monotonic()
    answer = await raw(host, head, read_timeout=5.0)
    assert status_of(answer) == 408
    assert time.monotonic() - started < 3


async def test_a_connection_stalled_mid_headers_is_closed(host, monkeypatch) -> None:
    monkeypatch.setattr(GuardedRequestHandler, "header_timeout", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
    writer.write(b"GET /api/echo/Bob HTTP/1.1\r\nHost: x\r\nx-functi")
    await writer.drain()
    try:
        # Closed by the host: read() returns b"" (EOF) well before the 5 s the test allows.
        assert await asyncio.wait_for(reader.read(), 5.0) == b""
    finally:
        writer.close()


async def test_a_kept_alive_connection_stalled_mid_headers_is_closed(host_factory, monkeypatch) -> None:
    from localdev.host import protocol

    monkeypatch.setattr(protocol, "KEEPALIVE_TIMEOUT", 0.3)
    running = await host_factory("http")
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    key = running.keys.defaultFunctionKey
    writer.write(f"GET /api/echo/Bob HTTP/1.1\r\nHost: x\r\nx-functions-key: {key}\r\n\r\n".encode())
    await writer.drain()
    assert status_of(await reader.readuntil(b"\r\n\r\n")) == 200
    writer.write(b"GET /api/echo/Bob HTTP/1.1\r\nHost: x\r\nx-funct")  # the second request stalls
    await writer.drain()
    try:
        data = await asyncio.wait_for(reader.read(), 5.0)  # the first body, then EOF when the host closes
        assert b"HTTP/1.1" not in data
    finally:
        writer.close()
