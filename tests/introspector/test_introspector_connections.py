"""Connections seen through a real pair of py-libp2p hosts on loopback."""

from __future__ import annotations

import multiaddr
import trio
from introspector_harness import (
    EventLog,
    FakeClock,
    assert_interop_presence,
    connect,
    connections_to,
    running_hosts,
    wait_until,
)
from libp2p.network.stream.net_stream import NetStream

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector.patching import _MISSING, _class_hooks
from libp2p_introspection.protocol import pb

LIFETIME_MS = 5_000


def _tcp_part(addr: multiaddr.Multiaddr) -> str:
    """``/ip4/127.0.0.1/tcp/PORT`` of a host address (drops ``/p2p/...``)."""
    text = str(addr)
    return text.split("/p2p/")[0]


async def test_connection_on_both_sides_then_closed_then_gone() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            i1 = HostIntrospector(h1, closed_connection_lifetime_ms=LIFETIME_MS, clock_ms=clock)
            i2 = HostIntrospector(h2, closed_connection_lifetime_ms=LIFETIME_MS, clock_ms=clock)
            p1, p2 = h1.get_id().to_base58(), h2.get_id().to_base58()
            opened_at = clock.advance(10)
            await connect(h1, h2)
            await wait_until(lambda: bool(connections_to(i2.state(), p1)))

            s1, s2 = i1.state(), i2.state()
            assert_interop_presence(s1)
            assert_interop_presence(s2)
            (c1,) = connections_to(s1, p2)
            (c2,) = connections_to(s2, p1)
            assert c1.status == c2.status == pb.ACTIVE
            assert c1.role == pb.INITIATOR and c2.role == pb.RESPONDER
            assert c1.transport_id == c2.transport_id == b"tcp"
            assert c1.attribs.multiplexer == c2.attribs.multiplexer == "/yamux/1.0.0"
            assert c1.attribs.encryption == c2.attribs.encryption == "/noise"
            # Endpoints: ours first; the two sides mirror each other.
            assert c1.endpoints.dst_multiaddr == _tcp_part(h2.get_addrs()[0])
            assert c2.endpoints.src_multiaddr == c1.endpoints.dst_multiaddr
            assert c2.endpoints.dst_multiaddr == c1.endpoints.src_multiaddr
            assert c1.endpoints.src_multiaddr.startswith("/ip4/127.0.0.1/tcp/")
            multiaddr.Multiaddr(c1.endpoints.src_multiaddr)
            # Timeline from the fake clock: opened via the upgrader hook.
            for c in (c1, c2):
                assert c.timeline.open_ts == opened_at
                assert c.timeline.upgraded_ts >= c.timeline.open_ts
                assert c.timeline.close_ts == 0
                assert len(c.id) == 8
                # Measured from the first handshake byte: non-zero both ways.
                assert c.traffic.traffic_in.cum_bytes > 0
                assert c.traffic.traffic_out.cum_bytes > 0
            # Identify ran on a stream of this connection, in both directions.
            protocols = {s.protocol for s in c1.streams.streams}
            assert "/ipfs/id/1.0.0" in protocols

            # Ids are stable across snapshots.
            assert connections_to(i1.state(), p2)[0].id == c1.id

            closed_at = clock.advance(10)
            await h1.disconnect(h2.get_id())

            def both_closed() -> bool:
                a, b = connections_to(i1.state(), p2), connections_to(i2.state(), p1)
                return bool(a and b and a[0].status == b[0].status == pb.CLOSED)

            await wait_until(both_closed)
            for intro, peer, conn_id in ((i1, p2, c1.id), (i2, p1, c2.id)):
                (closed,) = connections_to(intro.state(), peer)
                assert closed.id == conn_id
                assert closed.timeline.close_ts == closed_at
                assert closed.timeline.open_ts == opened_at
                assert all(s.status == pb.CLOSED for s in closed.streams.streams)

            # Retained for the lifetime, then gone.
            clock.advance(LIFETIME_MS - 1)
            assert connections_to(i1.state(), p2) and connections_to(i2.state(), p1)
            clock.advance(1)
            assert not connections_to(i1.state(), p2)
            assert not connections_to(i2.state(), p1)
            i1.detach()
            i2.detach()


async def test_mplex_muxer_is_reported() -> None:
    with trio.fail_after(30):
        async with running_hosts(2, muxer_preference="MPLEX") as (h1, h2):
            i1 = HostIntrospector(h1)
            await connect(h1, h2)
            (c,) = connections_to(i1.state(), h2.get_id().to_base58())
            assert c.attribs.multiplexer == "/mplex/6.7.0"
            assert c.attribs.encryption == "/noise"
            assert c.latency_ns >= 0
            i1.detach()


async def test_yamux_latency_comes_from_muxer_rtt() -> None:
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            i1 = HostIntrospector(h1)
            await connect(h1, h2)
            peer = h2.get_id().to_base58()
            # py-libp2p's yamux pings 0.5 s after start; wait for its RTT.
            await wait_until(lambda: connections_to(i1.state(), peer)[0].latency_ns > 0)
            muxed = h1.get_network().get_connections()[0].muxed_conn
            (c,) = connections_to(i1.state(), peer)
            assert c.latency_ns == int(muxed.rtt() * 1e9)
            i1.detach()


async def test_existing_connections_are_adopted_without_events() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            await connect(h1, h2)
            await wait_until(lambda: bool(h2.get_network().get_connections()))
            attach_ts = clock.advance(1_000)
            intro = HostIntrospector(h1, clock_ms=clock)
            log = EventLog()
            intro.set_event_sink(log)
            (c,) = connections_to(intro.state(), h2.get_id().to_base58())
            assert c.status == pb.ACTIVE and c.role == pb.INITIATOR
            assert c.attribs.multiplexer == "/yamux/1.0.0"
            assert c.endpoints.src_multiaddr and c.endpoints.dst_multiaddr
            # With a fake clock, adopted connections are stamped with the attach time.
            assert c.timeline.open_ts == attach_ts
            assert log.named("ConnectionOpened") == []
            intro.detach()


async def test_ids_are_unique_and_never_reused() -> None:
    with trio.fail_after(30):
        async with running_hosts(3) as (h1, h2, h3):
            intro = HostIntrospector(h1)

            async def handler(stream: object) -> None:
                await stream.close()  # type: ignore[attr-defined]

            for host in (h2, h3):
                host.set_stream_handler("/test/noop/1", handler)
            seen: set[bytes] = set()
            for round_ in range(2):
                await connect(h1, h2)
                await connect(h1, h3)
                for peer in (h2, h3):
                    stream = await h1.new_stream(peer.get_id(), ["/test/noop/1"])
                    await stream.close()
                state = intro.state()
                ids = [c.id for c in state.subsystems.connections] + [
                    s.id for c in state.subsystems.connections for s in c.streams.streams
                ]
                assert len(ids) == len(set(ids))
                active = [c.id for c in state.subsystems.connections if c.status == pb.ACTIVE]
                assert len(active) == 2
                assert not set(active) & seen, f"connection id reused in round {round_}"
                seen.update(ids)
                await h1.disconnect(h2.get_id())
                await h1.disconnect(h3.get_id())
            intro.detach()


async def test_detach_removes_every_hook() -> None:
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            swarm = h1.get_network()
            intro = HostIntrospector(h1)
            await connect(h1, h2)
            received = trio.Event()

            async def handler(stream: object) -> None:
                await stream.read(5)  # type: ignore[attr-defined]
                received.set()

            h2.set_stream_handler("/test/hooks/1", handler)
            stream = await h1.new_stream(h2.get_id(), ["/test/hooks/1"])
            # The per-read hook is on the stream; the lifecycle hook dispatches from
            # its class and leaves the stream's attributes alone.
            assert "read" in vars(stream) and "set_protocol" not in vars(stream)
            dispatcher = vars(NetStream)["set_protocol"]
            assert _class_hooks[NetStream, "set_protocol"].current(stream) is not _MISSING
            conn = swarm.get_connections()[0]
            raw = conn.muxed_conn.secured_conn.conn.conn
            assert "read" in vars(raw) and "write" in vars(raw)
            assert "upgrade_security" in vars(swarm.upgrader)

            intro.detach()
            assert intro._notifee not in swarm.notifees
            for obj, names in (
                (stream, ("read", "write", "set_protocol")),
                (raw, ("read", "write")),
                (swarm.upgrader, ("upgrade_security", "upgrade_connection")),
            ):
                for name in names:
                    assert name not in vars(obj), name
            hook = _class_hooks.get((NetStream, "set_protocol"))
            assert hook is None or hook.current(stream) is _MISSING
            assert hook is not None or vars(NetStream)["set_protocol"] is dispatcher.__wrapped__
            # The node still works without the hooks.
            await stream.write(b"hello")
            with trio.fail_after(5):
                await received.wait()
            intro.detach()  # idempotent
