"""Subsystems.resources on real py-libp2p hosts: py-libp2p's resource manager's scopes,
usage against limits, refused reservations; absent without a resource manager."""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from introspector_harness import FakeClock, connect, running_hosts, wait_until
from libp2p.rcmgr import Direction, ResourceLimits, new_resource_manager
from libp2p.rcmgr.connection_limits import ConnectionLimits

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.protocol import pb

HOLD = "/test/hold/1.0.0"
APP_PROTOCOL = "/app/chat/1.0.0"


def _scopes(state: pb.State) -> dict[str, pb.ResourceScope]:
    assert state.subsystems.HasField("resources")
    scopes = {s.name: s for s in state.subsystems.resources.scopes}
    assert len(scopes) == len(state.subsystems.resources.scopes)
    for scope in scopes.values():
        assert scope.usage.fds == 0 and scope.limit.fds == 0  # py-libp2p does not track fds
    return scopes


def _py_libp2p_blocks(manager: Any) -> int:
    """py-libp2p's own count of refusals (its Metrics), to compare ours with."""
    blocks = manager.metrics.get_summary()["blocks"]
    return int(blocks["connections"] + blocks["memory"] + blocks["streams"])


async def test_resource_manager_scopes_usage_limits_and_refusals() -> None:
    clock = FakeClock()
    manager = new_resource_manager(
        limits=ResourceLimits(max_connections=2, max_memory_mb=3, max_streams=40),
        connection_limits=ConnectionLimits(
            max_established_inbound=7, max_established_outbound=9, max_established_total=16
        ),
    )
    release = trio.Event()

    async def hold(stream: Any) -> None:
        await release.wait()
        await stream.close()

    with trio.fail_after(30):
        async with (
            running_hosts(1, resource_manager=manager) as (node,),
            running_hosts(4) as peers,
        ):
            intro = HostIntrospector(node, clock_ms=clock)
            node.set_stream_handler(HOLD, hold)
            state = intro.state()
            system = _scopes(state)["system"]
            assert state.subsystems.resources.blocked == 0
            assert (system.limit.conns_total, system.limit.streams_total) == (2, 40)
            assert system.limit.memory == 3 * 1024 * 1024
            assert (system.limit.conns_inbound, system.limit.conns_outbound) == (7, 9)
            assert system.limit.streams_inbound == system.limit.streams_outbound == 0

            # Peers dial in until py-libp2p refuses a reservation (max_connections=2);
            # a dialer may see its dial succeed and the node drop it after the upgrade.
            for peer in peers:
                with contextlib.suppress(Exception):  # refused: what we are after
                    await connect(peer, node)
                if intro.state().subsystems.resources.blocked:
                    break
            else:
                raise AssertionError("the resource manager refused no connection")
            swarm = node.get_network()
            await wait_until(
                lambda: (
                    _scopes(intro.state())["system"].usage.conns_total
                    == len(swarm.get_connections())
                )
            )
            clock.advance(1_000)
            state = intro.state()
            blocked = state.subsystems.resources.blocked
            assert blocked == _py_libp2p_blocks(manager) > 0
            system = _scopes(state)["system"]
            connected = [str(c.muxed_conn.peer_id) for c in swarm.get_connections()]
            assert 1 <= system.usage.conns_total == len(connected) <= 2
            assert system.usage.conns_inbound == len(connected)
            assert system.usage.conns_outbound == 0
            (dialer,) = [p for p in peers if str(p.get_id()) == connected[0]]

            # Streams held open by the handler are in the system scope, inbound.
            opened = [await dialer.new_stream(node.get_id(), [HOLD]) for _ in range(3)]
            await wait_until(lambda: _scopes(intro.state())["system"].usage.streams_inbound >= 3)
            system = _scopes(intro.state())["system"]
            assert system.usage.streams_inbound == 3
            assert system.usage.streams_total == 3
            assert system.usage.streams_outbound == 0

            # The application's scoped limits: a protocol scope and a service scope,
            # and a refusal by the protocol limit.
            manager.set_protocol_stream_limit(APP_PROTOCOL, 1)
            manager.set_service_stream_limit("chat", 5)
            remote = connected[0]
            assert manager.acquire_scoped_stream(
                remote, Direction.INBOUND, service="chat", protocol=APP_PROTOCOL
            )
            assert not manager.acquire_scoped_stream(
                remote, Direction.INBOUND, service="chat", protocol=APP_PROTOCOL
            )
            scopes = _scopes(intro.state())
            app = scopes[f"protocol:{APP_PROTOCOL}"]
            assert (app.usage.streams_total, app.limit.streams_total) == (1, 1)
            assert app.usage.streams_inbound == app.usage.streams_outbound == 0
            chat = scopes["service:chat"]
            assert (chat.usage.streams_total, chat.limit.streams_total) == (1, 5)
            assert scopes["system"].usage.streams_total == 4  # scoped streams count there too
            resources = intro.state().subsystems.resources
            assert resources.blocked == blocked + 1 == _py_libp2p_blocks(manager)

            release.set()
            for stream in opened:
                await stream.close()
            manager.release_scoped_stream(
                remote, Direction.INBOUND, service="chat", protocol=APP_PROTOCOL
            )
            await wait_until(lambda: _scopes(intro.state())["system"].usage.streams_total == 0)
            scopes = _scopes(intro.state())
            assert scopes[f"protocol:{APP_PROTOCOL}"].usage.streams_total == 0
            assert scopes[f"protocol:{APP_PROTOCOL}"].limit.streams_total == 1

            intro.detach()
            assert "_record_blocked_resource" not in vars(manager), "hook left after detach"


async def test_no_resource_manager_means_no_resources_subsystem() -> None:
    with trio.fail_after(30):
        async with running_hosts(2) as (node, peer):
            node.get_network().set_resource_manager(None)
            intro = HostIntrospector(node, clock_ms=FakeClock())
            await connect(peer, node)
            state = intro.state()
            assert not state.subsystems.HasField("resources")
            # One installed later is picked up at the next snapshot.
            node.get_network().set_resource_manager(new_resource_manager())
            assert _scopes(intro.state())["system"].limit.conns_total == 1000
