"""A session's writer sends a run of queued frames in one turn of the loop (issue 14).

An event fan-out queues a burst of small frames in every subscribed session at
once (a node emits events in bursts, between two of its own checkpoints). A writer
that sends one frame per pass of the scheduler delivers one event per session per
pass, however many wait, while the node keeps producing: its clients idle, then
fall behind. These tests count scheduler passes, never time.
"""

from __future__ import annotations

import json

import trio
from stub_source import StubSource

from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.server import ServerConfig, open_introspection_server, session_io

LIMIT = 30  # seconds: a safety net, not an assertion


async def _subscribed(server, client):
    assert (await client.receive()).kind == "runtime"
    assert (await client.receive()).kind == "state"
    await client.send(Command.PUSH_ENABLE, Source.EVENTS)
    assert (await client.receive()).kind == "response"
    (handle,) = server.hub.sessions
    # Every task is asleep: the writer waits for frames, the reader for the client.
    await trio.testing.wait_all_tasks_blocked()
    return handle


async def _two_passes() -> None:
    # Two passes of the scheduler: whatever order trio runs a batch in, the writer
    # woken by the burst has had one whole turn (and perhaps part of a second).
    await trio.sleep(0)
    await trio.sleep(0)


async def test_a_burst_of_small_events_goes_out_in_one_writer_turn():
    source = StubSource()
    config = ServerConfig(port=0, interval_ms=60_000, queue_bound=256)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config) as server:
            async with connect(server.url) as client:
                handle = await _subscribed(server, client)
                for n in range(32):
                    source.emit(n)  # ~60 B each: the socket takes them all at once
                await _two_passes()
                # One frame per pass (main before this change) would have sent 1 or 2.
                assert handle.sent["event"] == 32
                got = []
                while len(got) < 32:
                    received = await client.receive()
                    assert received.kind == "event"
                    got.append(json.loads(received.message.event.content)["n"])
                assert got == list(range(32))  # whole frames, in order


async def test_one_writer_turn_is_bounded_so_a_burst_cannot_hold_the_loop():
    source = StubSource()
    config = ServerConfig(port=0, interval_ms=60_000, queue_bound=256)
    padding = 2_000
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config) as server:
            async with connect(server.url) as client:
                handle = await _subscribed(server, client)
                for n in range(200):  # ~400 KB: several turns' worth
                    source.emit(n, padding=padding)
                await _two_passes()
                # At most two turns of session_io.WRITER_TURN_BYTES (plus the frame that crossed each).
                per_turn = session_io.WRITER_TURN_BYTES // padding + 1
                assert handle.sent["event"] <= 2 * per_turn
                got = 0
                while got < 200:
                    received = await client.receive()
                    assert received.kind == "event"
                    assert json.loads(received.message.event.content)["n"] == got
                    got += 1
                assert handle.sent["event"] == 200


async def test_a_burst_larger_than_the_socket_takes_arrives_whole_and_in_order():
    # The writer's quick path stops where the socket is full (a write cut short, or
    # none): the rest of that frame goes out through flush, and no frame is split by
    # another. 800 events of 20 KB (16 MB) is more than loopback buffers hold (Linux's
    # largest autotuned ones: 4 MB to send, 6 MB to receive) while the client reads nothing.
    source = StubSource()
    config = ServerConfig(port=0, interval_ms=60_000, queue_bound=1024, write_timeout_s=60)
    padding = 20_000
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config) as server:
            async with connect(server.url) as client:
                handle = await _subscribed(server, client)
                for n in range(800):
                    source.emit(n, padding=padding)
                await trio.testing.wait_all_tasks_blocked()
                assert handle.sent["event"] < 800  # the socket pushed back: the writer waits
                for n in range(800):
                    received = await client.receive()
                    assert received.kind == "event"
                    content = json.loads(received.message.event.content)
                    assert (content["n"], len(content["pad"])) == (n, padding)
                assert handle.session.stats.dropped == 0
