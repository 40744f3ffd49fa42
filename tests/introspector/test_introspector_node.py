"""``State.node`` on real py-libp2p hosts: listen addresses (and ``ListenAddrsChanged``),
protocols with handlers, observed addresses, and reachability from a real AutoNAT exchange."""

from __future__ import annotations

from typing import Any

import multiaddr
import trio
from event_checks import check_events
from introspector_harness import EventLog, connect, running_hosts, wait_until
from libp2p.host.autonat import AutoNATService

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.protocol import pb

ECHO = "/test/echo/1.0.0"
#: A second loopback address: a listen() py-libp2p's swarm has not seen yet.
SECOND = multiaddr.Multiaddr("/ip4/127.0.0.2/tcp/0")


def transport_addrs(host: Any) -> list[str]:
    return [str(addr) for addr in host.get_transport_addrs()]


async def _echo(stream: Any) -> None:
    await stream.write(await stream.read(64))
    await stream.close()


async def test_node_info_is_what_the_host_is() -> None:
    with trio.fail_after(30):
        async with running_hosts(1) as (host,):
            host.set_stream_handler(ECHO, _echo)
            intro = HostIntrospector(host)
            state = intro.state()
            assert state.HasField("node")
            node = state.node
            assert list(node.listen_addrs) == transport_addrs(host)
            assert len(node.listen_addrs) == 1 and "/p2p/" not in node.listen_addrs[0]
            assert not node.listen_addrs[0].endswith("/tcp/0")  # the real port
            assert list(node.protocols) == [
                str(p) for p in host.get_mux().get_protocols() if p is not None
            ]
            assert {ECHO, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"} <= set(node.protocols)
            assert list(node.observed_addrs) == []  # no peer told us anything yet
            # No AutoNAT service handed over: set explicitly (UNKNOWN is the default).
            assert node.reachability == pb.NodeInfo.NOT_RUNNING
            names = {t.name for t in intro.runtime().event_types}
            assert "ReachabilityChanged" not in names
            # A handler added later shows in the next snapshot.
            host.set_stream_handler("/test/later/1.0.0", _echo)
            assert "/test/later/1.0.0" in intro.state().node.protocols
            intro.detach()


async def test_a_second_listen_emits_listen_addrs_changed() -> None:
    with trio.fail_after(30):
        async with running_hosts(1) as (host,):
            intro = HostIntrospector(host)
            log = EventLog()
            intro.set_event_sink(log)
            first = transport_addrs(host)
            intro.state()
            assert log.named("ListenAddrsChanged") == []  # what it had at attach is no change

            assert await host.get_network().listen(SECOND)
            now = transport_addrs(host)
            (added,) = [a for a in now if a not in first]
            assert added.startswith("/ip4/127.0.0.2/tcp/") and not added.endswith("/tcp/0")
            # Emitted when the swarm notifies the listen, before any snapshot.
            assert log.named("ListenAddrsChanged") == [{"added": [added], "removed": []}]
            assert list(intro.state().node.listen_addrs) == now
            assert len(log.named("ListenAddrsChanged")) == 1

            # py-libp2p has no call to close one listener; an application that takes one
            # out of the swarm's listeners and closes it is seen at the next snapshot.
            listener = host.get_network().listeners.pop(str(SECOND))
            await listener.close()
            assert list(intro.state().node.listen_addrs) == first
            assert log.named("ListenAddrsChanged")[1:] == [{"added": [], "removed": [added]}]
            check_events(intro.runtime(), log.events)

            intro.detach()
            await host.get_network().listen(multiaddr.Multiaddr("/ip4/127.0.0.3/tcp/0"))
            assert len(log.named("ListenAddrsChanged")) == 2  # detached: nothing more


async def test_the_listen_addrs_are_read_again_only_when_the_listeners_change() -> None:
    """Between changes of the swarm's listeners (or of their sockets) a snapshot takes the
    listen addresses read before; after a change it has what an uncached read gives."""
    with trio.fail_after(30):
        async with running_hosts(1) as (host,):
            intro = HostIntrospector(host)
            tracker = intro._node_info
            uncached = tracker.read_listen_addrs
            reads: list[list[str]] = []

            def read() -> list[str]:
                reads.append(uncached())
                return reads[-1]

            tracker.read_listen_addrs = read  # type: ignore[method-assign]
            first = transport_addrs(host)
            assert [list(intro.state().node.listen_addrs) for _ in range(3)] == [first] * 3
            assert reads == []  # the same listeners: not read again

            assert await host.get_network().listen(SECOND)  # the swarm notifies: read again
            assert len(reads) == 1 and reads[0] == uncached() == transport_addrs(host) != first
            states = [intro.state().node for _ in range(3)]
            assert all(list(node.listen_addrs) == uncached() for node in states)
            assert len(reads) == 1

            # A listener's socket list changing (no notification) is seen at the snapshot.
            listener = host.get_network().listeners[str(SECOND)]
            sockets = list(listener.listeners)
            listener.listeners.clear()
            assert list(intro.state().node.listen_addrs) == uncached() == first
            listener.listeners.extend(sockets)
            assert list(intro.state().node.listen_addrs) == uncached() == transport_addrs(host)
            assert len(reads) == 3

            # Taken out of the swarm's listeners (no notification): seen at the snapshot.
            host.get_network().listeners.pop(str(SECOND))
            await listener.close()
            assert list(intro.state().node.listen_addrs) == uncached() == first
            assert len(reads) == 4
            intro.detach()


async def test_listen_addrs_of_a_host_with_its_own_transport_addrs_are_read_every_time() -> None:
    """A ``get_transport_addrs`` that is not py-libp2p's (here replaced on the host) may
    change without the listeners changing: read at every snapshot, as it says."""
    with trio.fail_after(30):
        async with running_hosts(1) as (host,):
            extra: list[multiaddr.Multiaddr] = []
            own = host.get_transport_addrs
            host.get_transport_addrs = lambda: [*own(), *extra]  # type: ignore[method-assign]
            intro = HostIntrospector(host)
            first = transport_addrs(host)
            assert list(intro.state().node.listen_addrs) == first
            extra.append(multiaddr.Multiaddr("/ip4/10.0.0.1/tcp/4001"))
            assert list(intro.state().node.listen_addrs) == [*first, "/ip4/10.0.0.1/tcp/4001"]
            intro.detach()


async def test_reachability_from_a_real_autonat_exchange() -> None:
    """Our AutoNAT asks a peer without AutoNAT (PRIVATE), then one that dials us back
    (PUBLIC); each verdict is an event at once and the next snapshot's reachability."""
    with trio.fail_after(60):
        async with running_hosts(3) as (us, server, mute):
            autonat = AutoNATService(us, serve=False, confirmations=1)
            AutoNATService(server)  # answers dial-back requests
            intro = HostIntrospector(us, autonat=autonat)
            log = EventLog()
            intro.set_event_sink(log)
            assert "ReachabilityChanged" in {t.name for t in intro.runtime().event_types}
            assert intro.state().node.reachability == pb.NodeInfo.UNKNOWN

            await connect(us, mute)
            assert await autonat.check_reachability([mute.get_id()]) == 2  # PRIVATE
            assert log.named("ReachabilityChanged") == [{"reachability": "PRIVATE"}]
            assert intro.state().node.reachability == pb.NodeInfo.PRIVATE

            await connect(us, server)
            assert await autonat.check_reachability([server.get_id()]) == 1  # PUBLIC
            assert log.named("ReachabilityChanged")[1:] == [{"reachability": "PUBLIC"}]
            assert intro.state().node.reachability == pb.NodeInfo.PUBLIC
            # Asking again changes nothing: no event.
            await autonat.check_reachability([server.get_id()])
            assert len(log.named("ReachabilityChanged")) == 2
            check_events(intro.runtime(), log.events)

            intro.detach()
            assert "update_status" not in vars(autonat)


async def test_observed_addrs_follow_the_connections_in_snapshots() -> None:
    with trio.fail_after(30):
        async with running_hosts(3) as (us, a, b):
            intro = HostIntrospector(us, closed_connection_lifetime_ms=0)
            log = EventLog()
            intro.set_event_sink(log)
            await connect(us, a)
            await connect(b, us)
            await wait_until(lambda: len(log.named("PeerIdentified")) == 2)
            state = intro.state()
            ends = {c.peer_id: c.endpoints.src_multiaddr for c in state.subsystems.connections}
            assert sorted(state.node.observed_addrs) == sorted(ends.values())
            await us.disconnect(a.get_id())
            a_id = a.get_id().to_base58()
            await wait_until(
                lambda: a_id not in {c.peer_id for c in intro.state().subsystems.connections}
            )
            assert list(intro.state().node.observed_addrs) == [ends[b.get_id().to_base58()]]
            intro.detach()
