"""A hostile server's message that never ends cannot grow our clients.

After the Runtime and a snapshot, the server starts a binary message and sends
nothing but empty continuation frames (2 bytes each on the wire, 0 bytes of
message). trio-websocket counts bytes only; our client also counts frames, keeps
no empty part, and closes with 1009 past :func:`max_message_frames`, so
``record`` ends with a clear error and keeps what came before.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from functools import partial

import h11
import trio
from trio_websocket import ConnectionClosed

from libp2p_introspection.client.connection import (
    BYTES_PER_FRAME,
    Received,
    connect,
    max_message_frames,
)
from libp2p_introspection.client.recorder import Outcome, Recorder
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_server_message
from libp2p_introspection.protocol.recording import RecordingReader

LIMIT = 30
MAX_SIZE = 1024 * 1024  # the clients' limit here: 1,024 frames per message
#: Empty fragments the server sends at most (~4 MB on the wire), far past the cap.
FLOOD = 2_000_000


def _unmasked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    assert len(payload) < 1 << 16
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return bytes([first, len(payload)]) + payload
    return bytes([first, 126]) + len(payload).to_bytes(2, "big") + payload


def _opening() -> bytes:
    runtime = pb.ServerMessage()
    runtime.runtime.implementation = "hostile"
    state = pb.ServerMessage()
    state.state.instant_ts = 1
    return b"".join(_unmasked(0x2, encode_server_message(m)) for m in (runtime, state))


class EndlessMessageServer:
    """Answers one upgrade, sends the Runtime and a snapshot, then one binary message of
    empty continuation frames, until the client closes or :data:`FLOOD` were sent."""

    def __init__(self) -> None:
        self.sent = 0
        self.close_code: int | None = None

    async def handle(self, stream: trio.SocketStream) -> None:
        http = h11.Connection(h11.SERVER)
        request = None
        while request is None:
            http.receive_data(await stream.receive_some(4096))
            event = http.next_event()
            if isinstance(event, h11.Request):
                request = event
        key = dict(request.headers)[b"sec-websocket-key"]
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await stream.send_all(_opening() + _unmasked(0x2, b"", fin=False))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_close, stream, nursery.cancel_scope)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                batch = b"\x00\x00" * 10_000
                while self.sent < FLOOD:
                    await stream.send_all(batch)
                    self.sent += 10_000
                await trio.sleep_forever()  # the message never ends

    async def _read_close(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        data = b""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                data += chunk
                if len(data) >= 8 and data[0] & 0x0F == 0x8:  # a masked close frame
                    mask, payload = data[2:6], data[6 : 6 + (data[1] & 0x7F)]
                    code = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:2]))
                    self.close_code = int.from_bytes(code, "big")
                    break
        scope.cancel()


async def _serving(nursery: trio.Nursery, server: EndlessMessageServer) -> str:
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    return f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/introspect"


def test_the_frame_cap_follows_the_size_limit():
    assert max_message_frames(64 * 1024 * 1024) == 64 * 1024 * 1024 // BYTES_PER_FRAME
    assert max_message_frames(1) == 64


async def test_the_client_closes_an_endless_message_with_1009():
    server = EndlessMessageServer()
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            url = await _serving(nursery, server)
            received: list[Received] = []
            reason = None
            async with connect(url, max_message_size=MAX_SIZE) as client:
                with contextlib.suppress(ConnectionClosed):
                    received.append(await client.receive())
                    received.append(await client.receive())
                    try:
                        await client.receive()
                    except ConnectionClosed as closed:
                        reason = closed.reason
            nursery.cancel_scope.cancel()
    assert [r.kind for r in received] == ["runtime", "state"]
    assert reason is not None and reason.code == 1009
    assert f"more than {max_message_frames(MAX_SIZE)} frames" in reason.reason
    assert server.close_code == 1009  # the server was told
    assert server.sent < FLOOD  # stopped long before the flood ran out


async def test_record_ends_with_a_clear_error_and_keeps_what_came_before(tmp_path):
    server = EndlessMessageServer()
    path = tmp_path / "endless.mock"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            url = await _serving(nursery, server)
            recorder = Recorder(url, path, events=False, max_message_size=MAX_SIZE)
            await recorder.run()
            nursery.cancel_scope.cancel()
    result = recorder.result()
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert f"more than {max_message_frames(MAX_SIZE)} frames" in result.detail
    with RecordingReader(path) as reader:
        assert [r.message().WhichOneof("payload") for r in reader] == ["runtime", "state"]
