"""How long the node waits for the fan-out in one pass of the scheduler (§4.9).

A session's writer sends up to ``WRITER_TURN_BYTES`` in one turn without yielding
(``write_now``), so one subscriber delays the node's task by at most one such turn
per pass. With N subscribers each holding a burst, one pass holds N turns: the
node's next step waits for N x 16 KiB of writes (measured: 50 clients reading a
burst, the node's ``sleep(0)`` takes 30-70 ms at the median, 90-200 ms at p99,
against 1-2 ms and 12 ms before write_now), and anyone who may connect chooses N
up to ``max_sessions`` (64 by default). These tests count frames per pass, never
time.
"""

from __future__ import annotations

import trio
import trio.testing
from raw_ws import command, handshake, open_raw
from stub_source import StubSource

from libp2p_introspection.protocol import pb
from libp2p_introspection.server import ServerConfig, open_introspection_server

LIMIT = 30  # seconds: a safety net, not an assertion
EVENT_PADDING = 200  # an event frame of ~260 bytes
BURST = 64  # events: one writer turn's worth
TURN_BYTES = 16 * 1024  # session_io.WRITER_TURN_BYTES


async def _frames_in_one_pass(subscribers: int) -> int:
    """Event frames written (all sessions) in the node's first pass after a burst."""
    source = StubSource()
    config = ServerConfig(port=0, interval_ms=60_000, max_sessions=subscribers + 1)
    async with open_introspection_server(source, config) as server:
        streams = []
        for _ in range(subscribers):  # they read nothing: their socket buffers take the burst
            stream = await open_raw(server.port)
            await handshake(stream)
            await stream.send_all(command(pb.ClientCommand.PUSH_ENABLE, pb.ClientCommand.EVENTS))
            streams.append(stream)
        for _ in range(1000):  # bounded
            handles = list(server.hub.sessions)
            if len(handles) == subscribers and all(h.sent["response"] for h in handles):
                break
            await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        for n in range(BURST):
            source.emit(n, padding=EVENT_PADDING)  # the node publishes a burst...
        # ...and takes its next steps: whatever order trio runs a batch in, every woken
        # writer has had one whole turn within two passes (and perhaps part of a second).
        await trio.sleep(0)
        await trio.sleep(0)
        written = sum(h.sent["event"] for h in server.hub.sessions)
        for stream in streams:
            await stream.aclose()
        return written


async def test_the_node_waits_for_a_bounded_fan_out_per_pass_however_many_subscribe():
    with trio.fail_after(LIMIT):
        few = await _frames_in_one_pass(2)
        many = await _frames_in_one_pass(32)
    # A bound on the node's wait that does not grow with N: a few turns' worth of frames
    # in two passes.
    per_turn = TURN_BYTES // (EVENT_PADDING + 60) + 1
    assert many <= 8 * per_turn, (few, many)  # 32 subscribers x 2 passes x 1 turn fails
