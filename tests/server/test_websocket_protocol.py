"""RFC 6455 at the byte level: the handshake, extensions, and protocol violations (§4.6).

A protocol violation is answered with the close frame PROTOCOL.md §4.6 names
(1002, or 1007 for invalid UTF-8) before the TCP close; the server negotiates no
extension, so a compressed (RSV1) frame is a violation too. Every client here is
a raw socket; afterwards the server still serves a normal client.
"""

from __future__ import annotations

import logging

import pytest
import trio
from raw_ws import (
    command,
    frame,
    handshake,
    open_raw,
    parse_frames,
    read_to_eof,
    request,
)
from stub_source import StubSource

from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import decode_frame
from libp2p_introspection.server import ServerConfig, open_introspection_server

LIMIT = 30


async def _still_serving(server) -> None:
    async with connect(server.url) as client:
        assert (await client.receive()).kind == "runtime"


async def _violate(port: int, bad: bytes, head_request: bytes | None = None):
    """Open a session, read the runtime and snapshot, send ``bad``; return the frames
    that followed and the head of the 101."""
    stream = await open_raw(port)
    head = await handshake(stream, head_request)
    assert b" 101 " in head.split(b"\r\n")[0], head
    await stream.send_all(bad)
    data = await read_to_eof(stream)
    await stream.aclose()
    frames, rest = parse_frames(data)
    assert rest == b"", "the server ended on half a frame"
    return frames, head


@pytest.mark.parametrize(
    ("bad", "code", "words"),
    [
        (frame(0x2, b"\x08\x01", rsv1=True), 1002, "reserved bit"),
        (frame(0x2, b"\x08\x01", masked=False), 1002, "mask"),
        (frame(0x1, b"caf\xc3"), 1007, "utf-8"),  # a text frame cut inside a character
        (frame(0x1, b"\xff\xfe"), 1007, "utf-8"),
        (frame(0x3, b"x"), 1002, "opcode"),  # reserved opcode
        (frame(0x9, b"x" * 126), 1002, "control frame"),  # a ping too long
        (frame(0x9, b"x", fin=False), 1002, "fragment"),
    ],
    ids=["rsv1", "unmasked", "cut-utf8", "bad-utf8", "bad-opcode", "long-ping", "split-ping"],
)
async def test_a_protocol_violation_gets_its_close_frame_then_the_tcp_close(bad, code, words):
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            frames, _ = await _violate(server.port, bad)
            *messages, close = frames
            assert [m.opcode for m in messages] == [0x2, 0x2]  # runtime and snapshot, whole
            assert close.opcode == 0x8
            assert close.code == code
            assert words in close.reason.lower()
            while not server.closed_sessions:
                await trio.sleep(0.01)
            assert server.closed_sessions[-1].close.code == code
            await _still_serving(server)


async def test_permessage_deflate_is_never_negotiated_and_a_compressed_frame_is_refused():
    offer = request(headers=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")])
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            # A compressed frame: RSV1 set on a message the client deflated.
            compressed = frame(0x2, b"\x4b\x04\x00", rsv1=True)
            frames, head = await _violate(server.port, compressed, offer)
            assert b"sec-websocket-extensions" not in head.lower()
            assert frames[-1].opcode == 0x8 and frames[-1].code == 1002
            await _still_serving(server)


async def test_frames_sent_with_the_request_are_not_lost():
    # A client may send its first frame right behind the request, before the 101.
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            stream = await open_raw(server.port)
            await stream.send_all(request() + command(Command.REQUEST, Source.RUNTIME, cid=3))
            data = b""
            frames: list = []
            while len(frames) < 3:
                chunk = await stream.receive_some(65536)
                assert chunk
                data += chunk
                _, _, body = data.partition(b"\r\n\r\n")
                frames, _ = parse_frames(body)
            kinds = []
            for f in frames[:3]:
                message = pb.ServerMessage()
                message.ParseFromString(decode_frame(f.payload))
                kinds.append(message.WhichOneof("payload"))
            assert kinds == ["runtime", "state", "runtime"]
            await stream.aclose()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request(headers=[("Host2", "x")]).replace(b"Host: 127.0.0.1", b"Host: \xff\xfe"), 101),
        (b"GET /introspect HTTP/1.1\r\nHost: x\r\n\r\n", 426),  # plain HTTP, no upgrade
        (request().replace(b"GET", b"POST"), 405),
        (request().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), 426),
        (request().replace(b"Sec-WebSocket-Key: ", b"Sec-WebSocket-Key: not-base64-"), 400),
        (request().replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
        (request(headers=[("X-Pad", "a" * 20_000)]), 431),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 500 + b"\r\n\r\n", 400),
        (request(headers=[("Origin", "http://\xff\xfe.example")]), 403),
        (request("/introspect?token=%ff%fe"), 101),  # no token configured: any is fine
    ],
    ids=["non-ascii-host", "no-upgrade", "post", "version-8", "bad-key", "http-1.0",
         "huge-headers", "tls-hello", "non-ascii-origin", "non-utf8-token"],
)  # fmt: skip
async def test_a_bad_upgrade_request_gets_an_http_status_and_the_server_goes_on(data, status):
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            stream = await open_raw(server.port)
            head = await handshake(stream, data)
            assert head.split(b"\r\n")[0].split(b" ")[1] == str(status).encode(), head
            if status == 426:
                assert b"sec-websocket-version: 13" in head.lower()
            await stream.aclose()
            await _still_serving(server)
            assert getattr(server, "connection_faults", 0) == 0


async def test_a_client_that_closes_is_answered_and_recorded_as_leaving():
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            frames, _ = await _violate(server.port, frame(0x8, b"\x03\xe8done"))
            assert frames[-1].opcode == 0x8 and frames[-1].code == 1000  # the answer
            while not server.closed_sessions:
                await trio.sleep(0.01)
            closed = server.closed_sessions[-1]
            assert closed.close is None  # the client left; the server closed nothing
            assert closed.ended.startswith("closed by the client (1000 done)")


async def test_a_client_that_leaves_right_after_a_command_is_logged_as_leaving(caplog):
    # The command and the close frame arrive in one read: the session may be cut short
    # (its writer finds the connection closed) before it gets to the close event.
    caplog.set_level(logging.INFO, logger="libp2p_introspection.server")
    tries = 12
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            for _ in range(tries):
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                assert b" 101 " in await handshake(stream)
                hello = command(Command.HELLO)
                await stream.send_all(hello + frame(0x8, b"\x03\xe8bye"))
                await read_to_eof(stream)
                await stream.aclose()
            while len(server.closed_sessions) < tries:
                await trio.sleep(0.01)
    endings = [closed.ended for closed in server.closed_sessions]
    assert all(e.startswith("closed by the client (1000 bye)") for e in endings), endings
    assert "stopping" not in caplog.text


async def test_a_ctrl_c_cannot_land_between_a_write_and_its_accounting(monkeypatch):
    # Bytes the socket took but the wire does not know of would be written again by the
    # close (a server stopped with Ctrl-C sent its clients garbage, 1 run in ~30): every
    # send runs under KI protection, so KeyboardInterrupt arrives at a checkpoint.
    from libp2p_introspection.server import websocket

    protected: list[bool] = []
    original = websocket.WebSocketTransport._write_one_frame

    async def watched(self, target):
        send = self._socket.send

        async def send_and_look(view, flags=0):
            protected.append(trio.lowlevel.currently_ki_protected())
            return await send(view, flags)

        self._socket.send = send_and_look
        try:
            await original(self, target)
        finally:
            self._socket.send = send

    monkeypatch.setattr(websocket.WebSocketTransport, "_write_one_frame", watched)
    # The writer's other path: frames the socket takes at once (write_now).
    written_now: list[bool] = []
    send_now = websocket._send_now

    def write_and_look(sock, view):
        written_now.append(trio.lowlevel.currently_ki_protected())
        return send_now(sock, view)

    monkeypatch.setattr(websocket, "_send_now", write_and_look)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            await _still_serving(server)
    assert protected and all(protected)
    assert written_now and all(written_now)
