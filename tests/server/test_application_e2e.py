"""The application's own data end to end: ``attach_introspection`` on a real py-libp2p
host, real WebSocket clients. A type declared while a client is connected reaches it
with its property types in its first event (PROTOCOL.md §3 ``Event.type``); a client
that connects later finds it in its ``Runtime``; tags show in the snapshots it pulls."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import multiaddr
import trio
from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr

from libp2p_introspection.attach import AttachedIntrospection, attach_introspection
from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol import pb

LOOPBACK = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")


async def _next_event(client) -> pb.Event:
    for _ in range(200):
        received = await client.receive()
        if received.kind == "event":
            return received.message.event
    raise AssertionError("no event")


async def test_declared_events_and_tags_reach_clients_connected_before_and_after() -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a, b = new_host(), new_host()
            for host in (a, b):
                await stack.enter_async_context(host.run([LOOPBACK]))
            server = await stack.enter_async_context(
                attach_introspection(a, port=0, interval_ms=50)
            )
            assert isinstance(server, AttachedIntrospection)
            early = await stack.enter_async_context(connect(server.url))
            runtime = (await early.receive_kind("runtime")).message.runtime
            assert "Chat" not in {t.name for t in runtime.event_types}
            await early.send(Command.PUSH_ENABLE, Source.EVENTS, command_id=1)
            assert (await early.receive_kind("response")).message.response.id == 1

            server.declare_event_type("Chat", [("from", "PEERID"), ("text", "STRING")])
            peer_a = a.get_id().to_base58()
            server.publish_event("Chat", {"from": peer_a, "text": "hello"})
            server.publish_event("Chat", {"from": peer_a, "text": "again"})
            first, second = await _next_event(early), await _next_event(early)
            assert first.type.name == second.type.name == "Chat"
            assert [p.name for p in first.type.property_types] == ["from", "text"]
            assert list(second.type.property_types) == []  # told once
            assert json.loads(first.content) == {"from": peer_a, "text": "hello"}

            late = await stack.enter_async_context(connect(server.url))
            runtime = (await late.receive_kind("runtime")).message.runtime
            (chat,) = [t for t in runtime.event_types if t.name == "Chat"]
            assert [(p.name, p.type) for p in chat.property_types] == [
                ("from", pb.EventType.EventProperty.PEERID),
                ("text", pb.EventType.EventProperty.STRING),
            ]
            # The early client asking again gets the grown Runtime too.
            await early.send(Command.REQUEST, Source.RUNTIME)
            again = (await early.receive_kind("runtime")).message.runtime
            assert "Chat" in {t.name for t in again.event_types}

            await b.connect(info_from_p2p_addr(a.get_addrs()[0]))
            for _ in range(100):
                if a.get_network().get_connections(b.get_id()):
                    break
                await trio.sleep(0.01)
            assert server.tag_connection(b.get_id(), "friend") == 1
            peer_b = b.get_id().to_base58()
            for _ in range(100):
                await late.ready()
                state = (await late.receive_kind("state")).message.state
                tagged = [
                    list(c.user_provided_tags)
                    for c in state.subsystems.connections
                    if c.peer_id == peer_b
                ]
                if tagged == [["friend"]]:  # snapshots taken before the tag show none
                    break
            else:
                raise AssertionError(f"the tagged connection to b never appeared: {tagged}")
