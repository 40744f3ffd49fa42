"""Clients that misbehave at the socket level: the server drops them and goes on."""

from __future__ import annotations

import trio
from stub_source import StubSource

from libp2p_introspection.client import connect
from libp2p_introspection.server import ServerConfig, open_introspection_server

LIMIT = 30
HANDSHAKE = (
    b"GET /introspect HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


async def _still_serving(url: str) -> None:
    async with connect(url) as client:
        assert (await client.receive()).kind == "runtime"


async def test_client_vanishing_mid_frame():
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(HANDSHAKE)
            assert b" 101 " in await stream.receive_some(1024)
            # A masked binary frame announcing 100 bytes, of which 10 arrive.
            await stream.send_all(bytes([0x82, 0x80 | 100]) + b"\x01\x02\x03\x04" + b"x" * 10)
            while not server.hub.sessions:
                await trio.sleep(0.01)
            await stream.aclose()
            while server.hub.sessions:
                await trio.sleep(0.01)
            assert server.closed_sessions[-1].stats.commands == 0  # nothing half-parsed
            await _still_serving(server.url)


async def test_not_http_at_all():
    with trio.fail_after(LIMIT):
        cfg = ServerConfig(port=0, handshake_timeout_s=1)
        async with open_introspection_server(StubSource(), cfg) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 500)
            with trio.fail_after(5):
                while await stream.receive_some(1024):
                    pass  # the server answers (400) and/or hangs up
            await stream.aclose()
            assert not server.hub.sessions
            await _still_serving(server.url)


async def test_many_connections_opened_and_dropped_at_once():
    with trio.fail_after(LIMIT):
        cfg = ServerConfig(port=0, handshake_timeout_s=1)
        async with open_introspection_server(StubSource(), cfg) as server:
            streams = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(50)]
            for i, stream in enumerate(streams):
                await stream.send_all(HANDSHAKE[: 20 + i])  # half-open handshakes
            for stream in streams:
                await stream.aclose()
            await _still_serving(server.url)
            while len(server.hub.sessions) > 0:
                await trio.sleep(0.01)
