"""A message that never ends cannot grow the server: its frames are counted, not only its bytes.

A client can start a binary message and send nothing but empty continuation
frames (6 bytes each on the wire, 0 bytes of message), answering pings so that
the session never dies. A byte limit alone never fires on that; the wire also
caps the frames of one message (:data:`MAX_MESSAGE_FRAMES`), keeps no empty
part, and the session closes with 1009 (§4.8), naming the frame limit.
"""

from __future__ import annotations

import contextlib

import trio
from raw_ws import frame, handshake, open_raw, parse_frames, read_to_eof, request
from stub_source import StubSource

from libp2p_introspection.client import connect
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.handshake import UpgradeRequested
from libp2p_introspection.server.wire import MAX_MESSAGE_FRAMES, ServerWire
from libp2p_introspection.server.wire_events import MessageReceived, MessageTooBig

LIMIT = 30
EMPTY_CONTINUATION = frame(0x0, b"", fin=False)


def open_wire(**options: int) -> ServerWire:
    """A wire past its handshake (the 101 queued), ready for frames."""
    wire = ServerWire(max_message_size=64 * 1024, **options)
    (event,) = wire.receive_data(request())
    assert isinstance(event, UpgradeRequested)
    wire.accept()
    return wire


def test_endless_empty_continuation_frames_are_stopped_at_the_frame_limit():
    wire = open_wire()
    events = wire.receive_data(frame(0x2, b"", fin=False))
    sent = 1
    # 100,000 empty fragments, fed as a client would send them (batches of 1,000).
    while sent < 100_000 and not events:
        events = wire.receive_data(EMPTY_CONTINUATION * 1000)
        sent += 1000
    (event,) = events
    assert isinstance(event, MessageTooBig)
    assert event.max_frames == MAX_MESSAGE_FRAMES
    assert event.frames == MAX_MESSAGE_FRAMES + 1
    assert event.size == 0
    assert sent <= MAX_MESSAGE_FRAMES + 1000  # stopped within the first batch past the cap
    # Nothing more is read, whatever still comes.
    assert wire.receive_data(EMPTY_CONTINUATION * 1000) == []


def test_empty_parts_are_not_kept():
    wire = open_wire()
    wire.receive_data(frame(0x2, b"", fin=False) + EMPTY_CONTINUATION * 50)
    assert wire._parts == []  # the buffer the flood used to grow


def test_a_message_in_as_many_frames_as_allowed_arrives_whole():
    wire = open_wire()
    parts = [bytes([n]) * 3 for n in range(MAX_MESSAGE_FRAMES)]
    data = frame(0x2, parts[0], fin=False)
    data += b"".join(frame(0x0, part, fin=False) for part in parts[1:-1])
    data += frame(0x0, parts[-1])
    assert wire.receive_data(data) == [MessageReceived(b"".join(parts))]


def test_a_large_frame_read_in_small_pieces_is_one_frame():
    # wsproto hands out a frame's payload as it arrives: those pieces are not frames.
    wire = open_wire()
    payload = b"x" * 60_000
    data = frame(0x2, payload)
    events = []
    for start in range(0, len(data), 100):  # 601 reads of one frame
        events += wire.receive_data(data[start : start + 100])
    assert events == [MessageReceived(payload)]


async def test_the_server_closes_an_endless_message_with_1009_and_goes_on():
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            stream = await open_raw(server.port)
            head = await handshake(stream)
            assert b" 101 " in head.split(b"\r\n")[0]
            await stream.send_all(frame(0x2, b"", fin=False))
            # Far more than the cap, in one write (a closing server may reset the rest).
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(EMPTY_CONTINUATION * 20_000)
            data = await read_to_eof(stream)
            await stream.aclose()
            frames, _ = parse_frames(data)
            close = frames[-1]
            assert close.opcode == 0x8
            assert close.code == 1009
            assert f"more than {MAX_MESSAGE_FRAMES} frames" in close.reason
            while not server.closed_sessions:
                await trio.sleep(0.01)
            ended = server.closed_sessions[-1]
            assert ended.close is not None and ended.close.code == 1009
            # The server goes on: a new session gets its Runtime.
            async with connect(server.url) as client:
                assert (await client.receive()).kind == "runtime"
