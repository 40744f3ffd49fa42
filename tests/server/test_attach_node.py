"""``attach_introspection(host, autonat=...)`` end to end: a WebSocket client sees the
node's reachability as AutoNAT decides it, and the peer the host identified."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import multiaddr
import trio
from libp2p import new_host
from libp2p.host.autonat import AutoNATService
from libp2p.identity.identify.identify import AGENT_VERSION
from libp2p.peer.peerinfo import info_from_p2p_addr

from libp2p_introspection.attach import attach_introspection
from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol import pb

LOOPBACK = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")


async def _next_state(client) -> pb.State:
    await client.ready()
    return (await client.receive_kind("state")).message.state


async def test_attach_with_autonat_serves_reachability_and_peer_info() -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            us, server = new_host(), new_host()
            for host in (us, server):
                await stack.enter_async_context(host.run([LOOPBACK]))
            autonat = AutoNATService(us, serve=False, confirmations=1)
            AutoNATService(server)
            introspection = await stack.enter_async_context(
                attach_introspection(us, autonat=autonat, port=0, interval_ms=100)
            )
            client = await stack.enter_async_context(connect(introspection.url))
            runtime = (await client.receive_kind("runtime")).message.runtime
            assert {"PeerIdentified", "ListenAddrsChanged", "ReachabilityChanged"} <= {
                t.name for t in runtime.event_types
            }
            first = (await client.receive_kind("state")).message.state
            assert first.node.reachability == pb.NodeInfo.UNKNOWN
            assert list(first.node.listen_addrs) == [str(a) for a in us.get_transport_addrs()]
            await client.send(Command.PUSH_ENABLE, Source.EVENTS, command_id=1)
            assert (await client.receive_kind("response")).message.response.id == 1

            await us.connect(info_from_p2p_addr(server.get_addrs()[0]))
            assert await autonat.check_reachability([server.get_id()]) == 1
            seen: dict[str, list[dict]] = {}
            for _ in range(200):
                received = await client.receive()
                if received.kind == "event":
                    event = received.message.event
                    seen.setdefault(event.type.name, []).append(json.loads(event.content))
                if "ReachabilityChanged" in seen and "PeerIdentified" in seen:
                    break
            assert seen["ReachabilityChanged"] == [{"reachability": "PUBLIC"}]
            # The latest snapshot may predate the verdict: the next ones carry it.
            for _ in range(50):
                state = await _next_state(client)
                if state.node.reachability == pb.NodeInfo.PUBLIC:
                    break
            assert state.node.reachability == pb.NodeInfo.PUBLIC
            (conn,) = [
                c
                for c in state.subsystems.connections
                if c.peer_id == server.get_id().to_base58()
            ]
            assert conn.peer.agent_version == AGENT_VERSION


async def test_attach_without_autonat_says_not_running() -> None:
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            host = new_host()
            await stack.enter_async_context(host.run([LOOPBACK]))
            introspection = await stack.enter_async_context(attach_introspection(host, port=0))
            client = await stack.enter_async_context(connect(introspection.url))
            runtime = (await client.receive_kind("runtime")).message.runtime
            assert "ReachabilityChanged" not in {t.name for t in runtime.event_types}
            state = (await client.receive_kind("state")).message.state
            assert state.HasField("node")
            assert state.node.reachability == pb.NodeInfo.NOT_RUNNING


def test_demo_all_leaves_8845_to_the_observed_node():
    """``demo --all`` binds the other nodes' servers first: without ``--port`` they took
    8845 when it was free, and the main node then got what was left (the newcomer saw it
    on 8854, unlabelled in ``nodes``). They use 8850-8869, never 8845 nor ``--port``."""
    from libp2p_introspection.attach import other_ports

    assert other_ports(None).candidates() == list(range(8850, 8870))
    assert other_ports(8845).candidates() == list(range(8850, 8870))
    assert other_ports(8851).candidates() == [p for p in range(8850, 8870) if p != 8851]
