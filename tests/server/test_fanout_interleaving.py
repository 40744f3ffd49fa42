"""Hostile readers of an event fan-out: whatever they do, every frame arrives whole.

The session's writer sends runs of frames synchronously (``write_now``) and falls
back to ``flush`` when the socket is full, the turn is spent, or another task (the
pinger, the reader answering a ping) holds the write lock. These clients make all
of those happen at once: a tiny receive window read a few bytes at a time, pings
sent mid-burst, the server's own pings every millisecond, events small and large
(a large one is queued as a header and a payload that the socket may cut anywhere).
"""

from __future__ import annotations

import json
import struct

import trio
import trio.testing
from raw_ws import Frame, command, frame, handshake, open_raw, parse_frames
from stub_source import StubSource

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import parse_server_message
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.websocket import WebSocketTransport

LIMIT = 60  # seconds: a safety net, not an assertion
EVENTS = 400


def _payload(frame_: Frame) -> pb.ServerMessage:
    # §2 framing, checksum and length checked: a cut or spliced frame raises FrameError.
    return parse_server_message(frame_.payload)


_send_lock = trio.Lock()  # the client's two tasks take turns to send


async def send(stream: trio.SocketStream, data: bytes) -> None:
    async with _send_lock:
        await stream.send_all(data)


async def _hostile_reader(stream: trio.SocketStream, frames: list[Frame], pings: list[bytes],
                          done: trio.Event) -> None:  # fmt: skip
    buffer = b""
    reads = 0
    while not done.is_set() and reads < 200_000:
        reads += 1
        chunk = await stream.receive_some(97)  # an odd size: cuts frames anywhere
        if not chunk:
            break
        buffer += chunk
        got, buffer = parse_frames(buffer)
        for f in got:
            frames.append(f)
            if f.opcode == 0x9:  # the server's ping: answer it
                await send(stream, frame(0xA, f.payload))
            if f.opcode == 0x8:
                done.set()
        if reads % 7 == 0:  # our own pings, mid-burst
            payload = struct.pack("!Q", reads)
            pings.append(payload)
            await send(stream, frame(0x9, payload))


async def test_pings_both_ways_mid_burst_never_cut_or_interleave_a_frame():
    source = StubSource()
    config = ServerConfig(port=0, interval_ms=60_000, ping_interval_s=0.001, pong_timeout_s=30)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config) as server:
            stream = await open_raw(server.port, receive_buffer=2048)
            await handshake(stream)
            frames: list[Frame] = []
            pings: list[bytes] = []
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_hostile_reader, stream, frames, pings, done)
                await send(stream, command(pb.ClientCommand.PUSH_ENABLE, pb.ClientCommand.EVENTS))
                for _ in range(200):
                    if (
                        server.hub.sessions
                        and next(iter(server.hub.sessions)).session.stats.commands
                    ):
                        break
                    await trio.sleep(0.01)
                for n in range(EVENTS):
                    # Mostly small events, every 10th larger than the turn and the
                    # coalescing threshold (header and payload queued apart).
                    source.emit(n, padding=20_000 if n % 10 == 0 else 50)
                    if n % 25 == 0:
                        await send(
                            stream,
                            command(pb.ClientCommand.REQUEST, pb.ClientCommand.STATE, cid=n + 2),
                        )
                        await trio.sleep(0)
                (handle,) = server.hub.sessions
                for _ in range(6000):  # until every event was written (bounded)
                    if handle.sent["event"] + handle.session.stats.dropped >= EVENTS:
                        break
                    await trio.sleep(0.005)
                await send(stream, frame(0x8, struct.pack("!H", 1000)))
                with trio.move_on_after(20):
                    await done.wait()
                done.set()
                nursery.cancel_scope.cancel()
    opcodes = {f.opcode for f in frames}
    assert opcodes <= {0x2, 0x8, 0x9, 0xA}, opcodes
    seen = []
    for f in frames:
        if f.opcode == 0x2:
            message = _payload(f)  # a cut or interleaved frame does not parse
            if message.WhichOneof("payload") == "event":
                seen.append(json.loads(message.event.content)["n"])
        elif f.opcode == 0xA:
            assert f.payload in pings  # a pong echoes one of our pings, whole
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert len(seen) + handle.session.stats.dropped >= EVENTS
    assert seen  # the burst reached the client


async def _open_transport(nursery: trio.Nursery) -> tuple[WebSocketTransport, trio.SocketStream]:
    """A server transport past its 101 on a loopback connection, and the client's end."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = await open_raw(listener.getsockname()[1])
    accepted, _ = await listener.accept()
    listener.close()
    transport = WebSocketTransport(trio.SocketStream(accepted), peer="test", max_message_size=1024)
    nursery.start_soon(handshake, client)
    await transport.read_upgrade()
    assert await transport.accept()
    return transport, client


async def test_write_now_never_writes_while_another_task_is_inside_its_send():
    # The pinger holds the write lock across trio's send: the socket has taken the
    # ping, and the wire learns it only when the send returns (after a checkpoint).
    # A synchronous write in between would send the ping's bytes again and the wire
    # would then count them twice: the next frame arrives cut.
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            transport, client = await _open_transport(nursery)
            caught = False
            started = 0
            for _ in range(50):  # tries: trio runs a batch in either order (bounded)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(transport.ping, b"ping")
                started += 1
                await trio.sleep(0)
                if transport._lock.locked():  # the ping's send returned, not yet resumed
                    caught = True
                    break
            assert caught
            mark = transport.queue_binary(b"after the ping")
            assert mark is not None
            if not transport.write_now(mark):  # it must wait for the lock...
                await transport.flush(mark)  # ...and the frame goes out after the ping
            await trio.testing.wait_all_tasks_blocked()
            transport.abort()
            data = b""
            for _ in range(100):
                chunk = await client.receive_some(4096)
                if not chunk:
                    break
                data += chunk
    frames, rest = parse_frames(data)
    pings = [f for f in frames[:-1] if (f.opcode, f.payload) == (0x9, b"ping")]
    assert len(pings) == len(frames) - 1 == started, frames  # each ping once, whole
    assert (frames[-1].opcode, frames[-1].payload) == (0x2, b"after the ping")
    assert rest == b""
