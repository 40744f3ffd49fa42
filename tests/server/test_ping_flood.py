"""A client that floods WebSocket pings cannot make the server hold more than it bounds.

The server answers only the most recent unanswered ping (RFC 6455 §5.5.3), at a
frame boundary, so the pongs a client causes are at most two frames; it reads
nothing more while a pong is owed or its outgoing backlog is over
``MAX_READ_BACKLOG``, so TCP pushes back on the flood; and a client that reads
nothing is closed by the write timeout even though the only bytes waiting for
it are pongs. The bound checked here is on the transport's own queues, sampled
while the flood runs: the frame being written, plus one ping of ours and two
pongs.
"""

from __future__ import annotations

import struct
from contextlib import AsyncExitStack

import multiaddr
import pytest
import trio
from libp2p import new_host
from raw_ws import Frame, command, frame, handshake, open_raw
from stub_source import StubSource

from libp2p_introspection.attach import attach_introspection
from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol import pb
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.websocket import RECEIVE_SIZE
from libp2p_introspection.server.wire import MAX_PONG_FRAME

LIMIT = 60
#: A ping of ours (2 + 8 bytes), two pongs (one written, one owed) and the close frame.
SLACK = 10 + 2 * MAX_PONG_FRAME + 127
PAD = 6 * 1024 * 1024  # more than the kernel buffers a 4 KiB receiver: the write stalls


class BigStateSource(StubSource):
    """Snapshots of about ``PAD`` bytes: the connect snapshot stalls a slow reader's writer."""

    def state(self) -> pb.State:
        state = super().state()
        state.subsystems.connections[0].peer_id = "x" * PAD
        return state


def ping(number: int) -> bytes:
    """A masked ping whose 125-byte payload starts with ``number``."""
    return frame(0x9, struct.pack("!I", number) + b"P" * 121)


def take_frame(buffer: bytearray) -> Frame | None:
    """The first whole server frame of ``buffer``, removed from it; ``None`` if none is
    whole yet (without copying a large frame before it is)."""
    if len(buffer) < 2:
        return None
    size, offset = buffer[1] & 0x7F, 2
    if size == 126:
        if len(buffer) < 4:
            return None
        size, offset = struct.unpack("!H", buffer[2:4])[0], 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        size, offset = struct.unpack("!Q", buffer[2:10])[0], 10
    if len(buffer) < offset + size:
        return None
    taken = Frame(buffer[0] & 0x0F, bytes(buffer[offset : offset + size]))
    del buffer[: offset + size]
    return taken


class Peak:
    """The largest sizes seen of what a connection's transport holds."""

    def __init__(self) -> None:
        self.backlog = 0
        self.events = 0
        self.samples = 0

    def sample(self, transport) -> None:
        self.backlog = max(self.backlog, transport.wire.backlog)
        self.events = max(self.events, transport.events_waiting)
        self.samples += 1


async def _sample(server, peak: Peak, done: trio.Event) -> None:
    while not done.is_set():  # bounded by the test's fail_after
        for transport in server.connections:
            peak.sample(transport)
        await trio.sleep(0)


async def test_a_ping_flood_while_the_writer_is_stalled_holds_at_most_two_pongs():
    pings = 20_000  # 2.6 MB of pings, sent while a 6 MB snapshot is being read slowly
    source = BigStateSource()
    cfg = ServerConfig(port=0, ping_interval_s=0.2, pong_timeout_s=LIMIT)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, cfg) as server:
            stream = await open_raw(server.port, receive_buffer=4096)
            assert b" 101 " in await handshake(stream)
            (transport,) = server.connections
            largest = len(server.hub.latest.frame) + 10  # its WebSocket header included
            send_lock = trio.Lock()
            peak = Peak()
            done = trio.Event()
            received: list[Frame] = []
            sender_done = trio.Event()

            async def send(data: bytes) -> None:
                async with send_lock:
                    await stream.send_all(data)

            async def flood() -> None:
                for start in range(0, pings, 200):
                    await send(b"".join(ping(n) for n in range(start, start + 200)))
                    peak.sample(transport)
                sender_done.set()

            async def read_slowly() -> None:
                buffer = bytearray()
                last = struct.pack("!I", pings - 1)
                while not (sender_done.is_set() and any(
                    f.opcode == 0xA and f.payload[:4] == last for f in received[-3:]
                )):  # fmt: skip
                    chunk = await stream.receive_some(8192)
                    assert chunk, "the server closed the connection"
                    buffer += chunk
                    while (taken := take_frame(buffer)) is not None:
                        received.append(taken)
                        if taken.opcode == 0x9:  # the server's ping: answer it
                            await send(frame(0xA, taken.payload))
                    await trio.sleep(0.001)  # a slow reader, never a stuck one
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_sample, server, peak, done)
                nursery.start_soon(flood)
                nursery.start_soon(read_slowly)

            wire = transport.wire
            assert peak.samples > 100
            assert peak.backlog <= largest + SLACK, (
                f"the transport held {peak.backlog} bytes for a {largest}-byte frame"
            )
            # Read one receive at a time at most: what a read can hold.
            assert peak.events <= RECEIVE_SIZE // 6
            kinds = [f.opcode for f in received]
            assert kinds[:2] == [0x2, 0x2]  # the Runtime, then the 6 MB snapshot, whole
            assert len(received[1].payload) > PAD
            pongs = [f for f in received if f.opcode == 0xA]
            assert wire.pings_received == pings
            assert len(pongs) == wire.pongs_sent < pings  # only the latest unanswered ping
            numbers = [struct.unpack("!I", f.payload[:4])[0] for f in pongs]
            assert numbers == sorted(set(numbers)) and numbers[-1] == pings - 1
            assert 0x9 in kinds, "the server's own ping was starved by the flood"
            # A slow reader is kept (§4.6: bytes accepted are progress).
            assert [h.session.close for h in server.hub.sessions] == [None]
            await stream.aclose()


@pytest.mark.parametrize("requests", [50, 0], ids=["stalled-replies", "only-pongs-wait"])
async def test_a_ping_flood_that_reads_nothing_is_closed_and_the_node_goes_on(requests):
    # With no request, the only bytes waiting for the client are the pongs (and our ping).
    cfg = ServerConfig(
        port=0, interval_ms=100, write_timeout_s=0.5, close_grace_s=0.5, ping_interval_s=0.2
    )
    with trio.fail_after(LIMIT):
        async with AsyncExitStack() as stack:
            host = new_host()
            await stack.enter_async_context(host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]))
            server = await stack.enter_async_context(attach_introspection(host, config=cfg))
            stream = await open_raw(server.port, receive_buffer=4096)
            assert b" 101 " in await handshake(stream)
            # Ask for Runtimes and never read them, then flood pings.
            await stream.send_all(b"".join(command(Command.REQUEST, Source.RUNTIME, i)
                                           for i in range(requests)))  # fmt: skip
            assert len(server.connections) == 1
            largest = max(len(server.hub.runtime_frame), len(server.hub.latest.frame)) + 10
            first_snapshot = server.hub.latest.number
            peak = Peak()
            done = trio.Event()
            batches = 0

            async def flood() -> None:
                nonlocal batches
                try:
                    for start in range(0, 200_000, 200):  # bounded; the close ends it first
                        await stream.send_all(b"".join(ping(n) for n in range(start, start + 200)))
                        batches += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_sample, server, peak, done)
                nursery.start_soon(flood)
                while not server.closed_sessions:
                    await trio.sleep(0.01)
                stream.socket.close()  # the flood ends with the socket
            closed = server.closed_sessions[-1]
            assert closed.close is not None and closed.close.code == 1008
            assert "read nothing for 0.5 s" in closed.close.reason
            assert peak.backlog <= largest + SLACK
            assert batches < 1000, "the flood was never pushed back"
            assert server.hub.latest.number > first_snapshot  # the node's clock went on
            async with connect(server.url) as client:  # and it serves the next client
                assert (await client.receive()).kind == "runtime"
                assert (await client.receive()).kind == "state"


def test_the_write_timeout_counts_while_only_pongs_wait():
    from libp2p_introspection.protocol.session import Session, SessionLimits, Snapshot

    session = Session(SessionLimits(write_timeout_s=10), b"r", frozenset(), Snapshot(1, b"s"), 0.0)
    while session.next_frame() is not None:
        session.frame_sent(0.0)
    session.write_pending(True, 1.0)  # a pong the client does not read
    session.tick(10.5)
    assert session.close is None
    session.tick(11.0)
    assert session.close is not None and session.close.code == 1008


def test_the_wire_owes_one_pong_for_the_latest_ping_and_sends_it_between_frames():
    from raw_ws import parse_frames, request

    from libp2p_introspection.server.wire import ServerWire

    wire = ServerWire(max_message_size=1024)
    assert wire.receive_data(request())
    wire.accept()
    wire.sent(len(wire.data_to_send()))  # the 101
    written = bytearray()

    def write(count: int) -> None:
        """Let the socket take ``count`` bytes (fewer if less is queued), piece by piece."""
        while count and wire.has_data_to_send:
            view = wire.data_to_send()[:count]
            written.extend(view)
            wire.sent(len(view))
            count -= len(view)

    big = b"x" * 100_000
    wire.send_binary(big)
    wire.send_binary(b"second")
    write(1000)  # the first frame is partly written
    for n in range(1000):
        assert wire.receive_data(ping(n)) == []
    assert wire.backlog == 100_010 - 1000 + 8 + MAX_PONG_FRAME  # one pong owed, no queue
    assert wire.pings_received == 1000 and wire.pong_owed and not wire.pong_due
    write(100_010 - 1000 - 1)
    assert not wire.at_boundary and not wire.pong_due  # never inside a frame
    write(1)  # the rest of the first frame
    assert wire.at_boundary and wire.pong_due
    write(50)
    assert wire.writing_pong and not wire.at_boundary
    write(MAX_PONG_FRAME - 50)  # the rest of the pong (its payload is 125 bytes)
    assert not wire.writing_pong and wire.at_boundary
    wire.receive_data(ping(1000))  # owed, but the queue's frame goes first
    assert wire.pong_owed and not wire.pong_due
    while wire.has_data_to_send:
        write(4096)
    frames, rest = parse_frames(bytes(written))
    assert rest == b""
    assert [f.opcode for f in frames] == [0x2, 0xA, 0x2, 0xA]
    assert frames[0].payload == big and frames[2].payload == b"second"
    assert [struct.unpack("!I", frames[i].payload[:4])[0] for i in (1, 3)] == [999, 1000]
    assert wire.pongs_sent == 2 and wire.bytes_sent == wire.bytes_queued


async def test_pongs_are_not_progress_for_the_write_timeout():
    from raw_ws import request

    from libp2p_introspection.server.websocket import WebSocketTransport

    ours, theirs = trio.socket.socketpair()
    progress: list[int] = []
    pending: list[bool] = []
    transport = WebSocketTransport(
        trio.SocketStream(ours),
        peer="test",
        max_message_size=1024,
        on_progress=lambda: progress.append(transport.wire.bytes_sent),
        on_pending=pending.append,
    )
    peer = trio.SocketStream(theirs)
    with trio.fail_after(LIMIT):
        await peer.send_all(request())
        assert await transport.read_upgrade() is not None
        assert await transport.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += await peer.receive_some(1)
        progress.clear()
        await peer.send_all(b"".join(ping(n) for n in range(50)) + frame(0x2, b"x"))
        assert (await transport.next_event()).data == b"x"  # the pings were read on the way
        received = b""
        while len(received) < MAX_PONG_FRAME:
            received += await peer.receive_some(4096)
        assert received[:2] == bytes([0x8A, 125])  # one pong, for the latest ping read
        assert struct.unpack("!I", received[2:6])[0] == 49
        assert progress == []  # written, but not progress: a client cannot buy time with pings
        assert pending == [True, False]  # it waited for the socket, then nothing did
        assert transport.wire.pongs_sent == 1 and transport.wire.pings_received == 50
    transport.abort()
    await peer.aclose()
