"""A Ctrl-C never lands in the middle of the server's bookkeeping.

trio raises ``KeyboardInterrupt`` wherever unprotected code happens to run. In
the server that could be between a socket write and the wire's note of it: the
close path then wrote part of a frame again, and the client read "Invalid
opcode" or a frame of a foreign protocol version instead of the server's 1001
(about one ``serve`` in three, stopped with SIGINT while pushing every 50 ms).
Every task of the server runs KI-protected, so the interrupt reaches the
application's main task at a checkpoint and the server closes cleanly.
"""

from __future__ import annotations

import trio
from stub_source import StubSource

from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol.session import Session
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.wire import ServerWire

LIMIT = 30  # seconds: a safety net, not an assertion


async def test_the_wire_and_the_hub_are_only_touched_with_ki_protection(monkeypatch):
    seen: dict[str, list[bool]] = {}

    def spy(cls, name):
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):
            seen.setdefault(name, []).append(trio.lowlevel.currently_ki_protected())
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for name in ("receive_data", "sent", "send_binary", "close"):
        spy(ServerWire, name)
    # What the hub does for a snapshot or an event, wherever it is called from (an
    # event comes from the node's own task, here the test's).
    for name in ("snapshot_produced", "event_produced"):
        spy(Session, name)

    source = StubSource()
    config = ServerConfig(port=0, interval_ms=20)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config) as server:
            async with connect(server.url) as client:
                await client.receive()  # the runtime
                await client.receive()  # the first snapshot
                await client.send(Command.PUSH_ENABLE, Source.EVENTS)
                await client.receive_kind("response", limit=10)  # subscribed
                source.emit(1)
                await client.receive_kind("event", limit=100)
                await client.ready()
                await client.receive()
    # The test's own task (the application here) is not protected; the server's are.
    assert not trio.lowlevel.currently_ki_protected()
    assert set(seen) == {"receive_data", "sent", "send_binary", "close",
                         "snapshot_produced", "event_produced"}  # fmt: skip
    unprotected = {name: calls.count(False) for name, calls in seen.items() if False in calls}
    assert unprotected == {}
