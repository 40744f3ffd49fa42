"""Counting on a live node whose peer resets streams mid-transfer (real py-libp2p hosts).

The counting wrappers (``Counter.took``/``gave``, in C where built) sit in every read
and write of the node's streams and raw connections. Whatever happens to the counts, the
node's calls must behave as py-libp2p's own: the data a read returns, the exceptions a
reset raises (``StreamReset`` and its kin), nothing from the counting (a count the C
counter refuses because it would pass 2**63 - 1 is dropped, not raised). Meanwhile the
snapshot clock runs (sliced builds, sliced FNV-1a) and every frame it makes is whole.
"""

from __future__ import annotations

import struct
from contextlib import AsyncExitStack
from typing import Any

import trio
from introspector_harness import LOOPBACK, connect
from libp2p import new_host
from libp2p.network.stream.exceptions import StreamError
from libp2p.stream_muxer.exceptions import MuxedStreamError

from libp2p_introspection.attach import attach_introspection
from libp2p_introspection.protocol.framing import HEADER_SIZE, fnv1a32_reference

SINK = "/introspection-test/sink-then-reset/1.0.0"
SPEW = "/introspection-test/spew-then-reset/1.0.0"
CHUNK = 1_000
#: Near the top of an int64: the next read or write of a chunk would pass 2**63 - 1.
NEAR_TOP = 2**63 - 1 - CHUNK // 2
ROUNDS = 12
#: py-libp2p's own stream failures (what a reset raises into the node's code).
LIBP2P_ERRORS = (StreamError, MuxedStreamError, EOFError, trio.BrokenResourceError)


class Frames:
    """The snapshot clock's outlet stand-in for a direct call: the frames, in order."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def publish_snapshot(self, frame: bytes) -> None:
        self.frames.append(frame)


def assert_whole(frame: bytes) -> None:
    _version, checksum, size = struct.unpack_from("<III", frame)
    assert size == len(frame) - HEADER_SIZE
    assert checksum == fnv1a32_reference(frame[HEADER_SIZE:])


async def sink_then_reset(stream: Any) -> None:
    try:
        await stream.read(CHUNK * 3)
    finally:
        await stream.reset()


async def spew_then_reset(stream: Any) -> None:
    try:
        for _ in range(4):
            await stream.write(b"s" * CHUNK)
            await trio.sleep(0)
    finally:
        await stream.reset()


async def test_a_peer_resetting_mid_transfer_never_meets_a_counting_error() -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            us, peer = new_host(), new_host()
            for host in (us, peer):
                await stack.enter_async_context(host.run([LOOPBACK]))
            server = await stack.enter_async_context(
                attach_introspection(us, port=0, interval_ms=10)
            )
            intro = server.introspector
            peer.set_stream_handler(SINK, sink_then_reset)
            peer.set_stream_handler(SPEW, spew_then_reset)
            await connect(us, peer)

            failures: list[BaseException] = []
            exact: list[tuple[Any, int, int]] = []  # counter, bytes read, bytes written
            pinned: list[Any] = []  # counters set near the top: they must stay there
            for turn in range(ROUNDS):
                protocol = SINK if turn % 2 == 0 else SPEW
                stream = await us.new_stream(peer.get_id(), [protocol])
                record = intro._registry.stream_record(stream)
                assert record is not None
                counter = record.traffic
                if turn % 4 >= 2:
                    for name in ("in_bytes", "out_bytes"):
                        setattr(counter, name, NEAR_TOP)
                    pinned.append(counter)
                read = written = 0
                try:
                    for _ in range(50):  # bounded: the peer resets long before
                        if protocol == SINK:
                            await stream.write(b"x" * CHUNK)
                            written += CHUNK
                        else:
                            data = await stream.read(CHUNK * 4)
                            if not data:
                                break
                            read += len(data)
                        await trio.sleep(0)
                except LIBP2P_ERRORS as failure:
                    failures.append(failure)
                if counter not in pinned:
                    exact.append((counter, read, written))

            # Every stream ended by the peer's reset, seen as py-libp2p's own failure
            # (or an EOF): nothing else reached the node's code (it would have raised).
            assert failures
            # Counted exactly what the node's calls moved, resets or not.
            for counter, read, written in exact:
                assert (counter.in_bytes, counter.out_bytes) == (read, written)
            # A count that would pass 2**63 - 1 is dropped, never wrapped or raised.
            for counter in pinned:
                assert counter.in_bytes <= 2**63 - 1 and counter.out_bytes <= 2**63 - 1
                assert counter.in_bytes >= NEAR_TOP and counter.out_bytes >= NEAR_TOP

            frames = Frames()
            intro.take_snapshot(frames)
            await intro.take_snapshot_async(frames)
            for frame in frames.frames:
                assert_whole(frame)
