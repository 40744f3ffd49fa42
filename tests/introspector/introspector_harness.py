"""Helpers for the introspector tests: real py-libp2p hosts on loopback, a fake clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import multiaddr
import trio
from event_checks import FakeClock as FakeClock  # re-exported for the introspector tests
from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr

from libp2p_introspection.protocol import pb

LOOPBACK = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
#: Upper bound for any single wait in these tests, seconds.
WAIT_S = 10.0


class EventLog:
    """An event sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[pb.Event] = []

    def __call__(self, event: pb.Event) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[dict[str, Any]]:
        """Decoded JSON content of every event of type ``name``."""
        return [json.loads(e.content) for e in self.events if e.type.name == name]


@asynccontextmanager
async def running_hosts(n: int, **host_kwargs: Any) -> AsyncIterator[list[Any]]:
    """``n`` py-libp2p hosts listening on 127.0.0.1 (random ports)."""
    async with AsyncExitStack() as stack:
        hosts = []
        for _ in range(n):
            host = new_host(**host_kwargs)
            await stack.enter_async_context(host.run([LOOPBACK]))
            hosts.append(host)
        yield hosts


async def connect(dialer: Any, listener: Any) -> None:
    """``dialer`` dials ``listener``'s first loopback address."""
    await dialer.connect(info_from_p2p_addr(listener.get_addrs()[0]))


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll ``predicate`` every 10 ms until it is true; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def connections_to(state: pb.State, peer_id: str) -> list[pb.Connection]:
    """The snapshot's connections whose remote peer is ``peer_id``."""
    return [c for c in state.subsystems.connections if c.peer_id == peer_id]


def streams_with(state: pb.State, protocol: str) -> list[pb.Stream]:
    """Every stream of every connection in the snapshot running ``protocol``."""
    return [
        s for c in state.subsystems.connections for s in c.streams.streams if s.protocol == protocol
    ]


def assert_interop_presence(state: pb.State) -> None:
    """PROTOCOL.md §3 interop rules: sub-messages clients read without presence checks."""
    assert state.HasField("traffic")
    assert state.traffic.HasField("traffic_in") and state.traffic.HasField("traffic_out")
    for conn in state.subsystems.connections:
        for name in ("endpoints", "timeline", "traffic", "attribs", "streams"):
            assert conn.HasField(name), name
        assert conn.traffic.HasField("traffic_in") and conn.traffic.HasField("traffic_out")
        assert len(conn.streams.stream_ids) == len(conn.streams.streams)
        for sid, stream in zip(conn.streams.stream_ids, conn.streams.streams, strict=True):
            assert sid == stream.id
            assert stream.HasField("timeline") and stream.HasField("traffic")
            assert stream.traffic.HasField("traffic_in") and stream.traffic.HasField("traffic_out")
            assert stream.conn.conn_id == conn.id


def gauges(traffic: pb.Traffic) -> Sequence[pb.DataGauge]:
    """``(traffic_in, traffic_out)``."""
    return (traffic.traffic_in, traffic.traffic_out)
