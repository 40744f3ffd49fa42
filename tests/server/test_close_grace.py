"""§4.6 write timeout and close grace: a stuck client learns why it was closed.

On the timeout the server finishes the frame in flight, sends nothing more of
the queue, then the close frame with 1008 and its reason; only if that has not
gone out within the close grace is the TCP connection closed under it. Bytes
the socket accepts count as progress.
"""

from __future__ import annotations

import socket

import trio
from raw_ws import command, frame, handshake, open_raw, parse_frames, read_to_eof, request
from stub_source import StubSource

from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.closecodes import CLOSE_POLICY_VIOLATION
from libp2p_introspection.protocol.framing import decode_frame
from libp2p_introspection.protocol.session import Session, SessionLimits
from libp2p_introspection.protocol.session import Snapshot as SessionSnapshot
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.websocket import WebSocketTransport

LIMIT = 60


def config(**kw) -> ServerConfig:
    return ServerConfig(port=0, interval_ms=50, **kw)


async def _stall_until_closed(server, source: StubSource, stream: trio.SocketStream):
    """Subscribe to events, then read nothing while big events pile up, until the
    server decides the session is stuck. Returns the session's handle."""
    assert b" 101 " in await handshake(stream)
    await stream.send_all(command(Command.PUSH_ENABLE, Source.EVENTS))
    while not any(h.session.stats.commands for h in server.hub.sessions):
        await trio.sleep(0.01)
    (handle,) = server.hub.sessions
    while handle.session.close is None:  # bounded by the caller's fail_after
        source.emit(0, padding=50_000)
        await trio.sleep(0.005)
    return handle


async def test_a_stuck_client_that_resumes_reads_whole_frames_then_1008_and_the_reason():
    source = StubSource()
    # A long grace: the client resumes well within it however slow the machine is.
    cfg = config(write_timeout_s=0.5, close_grace_s=30, queue_bound=4)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, cfg) as server:
            stream = await open_raw(server.port, receive_buffer=4096)
            handle = await _stall_until_closed(server, source, stream)
            assert handle.session.close.code == CLOSE_POLICY_VIOLATION
            # It stays stuck a while longer (past the write timeout; the grace is 30 times
            # as long), then resumes: whole frames, then the close frame.
            await trio.sleep(1)
            data = b""
            frames: list = []
            while not frames or frames[-1].opcode != 0x8:
                chunk = await stream.receive_some(65536)
                assert chunk, "EOF before the close frame"
                data += chunk
                frames, _ = parse_frames(data)
            await stream.send_all(frame(0x8, frames[-1].payload[:2]))  # answer the close
            rest = await read_to_eof(stream)
            assert rest == b"", "the server sent something after its close frame"
            _, incomplete = parse_frames(data)
            assert incomplete == b"", "half a frame"
            *messages, close = frames
            assert close.code == 1008
            assert "read nothing for 0.5 s" in close.reason
            assert messages and all(f.opcode == 0x2 for f in messages)
            kinds = []
            for message in messages:  # every message is a whole ServerMessage
                parsed = pb.ServerMessage()
                parsed.ParseFromString(decode_frame(message.payload))
                kinds.append(parsed.WhichOneof("payload"))
            assert kinds[:2] == ["runtime", "state"] and "event" in kinds
            while not server.closed_sessions:
                await trio.sleep(0.01)
            assert server.closed_sessions[-1].close.code == 1008
            await stream.aclose()


async def test_a_client_that_never_resumes_is_cut_off_after_the_close_grace():
    source = StubSource()
    cfg = config(write_timeout_s=0.3, close_grace_s=0.3, queue_bound=4)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, cfg) as server:
            stream = await open_raw(server.port, receive_buffer=4096)
            await _stall_until_closed(server, source, stream)
            while not server.closed_sessions:  # the TCP close under the stuck writes
                await trio.sleep(0.01)
            assert "did not go out in 0.3 s" in server.closed_sessions[-1].ended
            await read_to_eof(stream)  # what got through, then the connection ends
            await stream.aclose()


def test_bytes_accepted_count_as_progress_for_the_write_timeout():
    limits = SessionLimits(write_timeout_s=10)
    session = Session(limits, b"runtime", frozenset(), SessionSnapshot(1, b"state"), 0.0)
    assert session.next_frame() == b"runtime"  # in flight, and never finished
    session.write_progress(8.0)  # part of it went out
    session.tick(17.0)
    assert session.close is None  # 9 s since the last progress
    session.tick(18.0)
    assert session.close is not None and session.close.code == 1008


async def test_the_transport_reports_progress_within_one_large_frame():
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    progress = []
    transport = WebSocketTransport(
        trio.SocketStream(ours),
        peer="test",
        max_message_size=1024,
        on_progress=lambda: progress.append(transport.wire.bytes_sent),
    )
    peer = trio.SocketStream(theirs)
    with trio.fail_after(LIMIT):
        await peer.send_all(request())
        assert await transport.read_upgrade() is not None
        assert await transport.accept()
        big = bytes(4 * 1024 * 1024)
        done = trio.Event()

        async def send() -> None:
            mark = transport.queue_binary(big)
            assert mark is not None
            await transport.flush(mark)
            assert not transport.lost
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            received = 0
            while received < 256 * 1024:  # read a part of the frame only
                received += len(await peer.receive_some(65536))
            while not progress or progress[-1] < 200 * 1024:
                await trio.sleep(0.001)  # let the writer see the socket drain
            assert not done.is_set() and len(progress) > 1  # progress, frame still in flight
            while not done.is_set():
                await peer.receive_some(65536)
        transport.abort()
        await peer.aclose()
