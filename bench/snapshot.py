"""Snapshot cost: what the server does once per snapshot interval, on the node's loop.

Subject: ``SampledSource.take_snapshot(hub)``, the snapshot clock's per-tick
path: the source builds the snapshot (``source.state()``, or the source's
encoded fast path) and the hub encodes and frames it once for every session
(``ServerMessage{version, state}``, FNV-1a 32, the 12-byte header).

Floor: ``SerializeToString()`` of the same, already-built ``ServerMessage``
(parsed back from the frame the subject produced, outside the timing).

Two sources:

* the synthetic node (``SyntheticSource``) at 1,000 x 10 and 5,000 x 10, with
  ``churn=0`` so every snapshot has exactly that many ACTIVE connections
  (streams still churn, 1% per snapshot); its ``state()`` also *simulates* a
  window of traffic for every stream, a cost a real node does not pay at
  snapshot time, reported separately as ``simulate``;
* the real ``HostIntrospector`` on a stand-in host whose registry holds
  1,000 x 10 connection and stream records with live traffic counters: the
  path a real py-libp2p node with that many connections takes.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Mode, Result, median, timed
from libp2p_introspection.introspector.connections import ConnectionRecord, StreamRecord
from libp2p_introspection.introspector.host import HostIntrospector
from libp2p_introspection.introspector.traffic import TrafficCounter
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import HEADER_SIZE
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

START_MS = 1_700_000_000_000


class _Clock:
    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


def _server(source: Any) -> IntrospectionServer:
    server = IntrospectionServer(source, ServerConfig(port=0))
    server.hub.clock = time.monotonic  # no trio loop here
    return server


def _floor_message(frame: bytes) -> pb.ServerMessage:
    message = pb.ServerMessage()
    message.ParseFromString(frame[HEADER_SIZE:])
    return message


def _measure(
    name: str,
    server: IntrospectionServer,
    clock: _Clock,
    repeats: int,
    step: Any = None,
    absolute_ms: float | None = None,
) -> list[Result]:
    subject: list[float] = []
    floor: list[float] = []
    sizes: list[int] = []
    for _ in range(2):  # warm-up: first snapshots allocate everything
        clock.now += 1_000
        if step is not None:
            step()
        server.source.take_snapshot(server.hub)
    for i in range(repeats):
        clock.now += 1_000
        if step is not None:
            step()
        spent = timed(lambda: server.source.take_snapshot(server.hub))
        assert server.hub.latest is not None
        frame = server.hub.latest.frame
        message = _floor_message(frame)
        floor_s = timed(message.SerializeToString)
        # Alternate which of the two runs first on a warm cache.
        if i % 2:
            floor_s = min(floor_s, timed(message.SerializeToString))
        subject.append(spent)
        floor.append(floor_s)
        sizes.append(len(frame))
    value = median(subject) * 1000
    base = median(floor) * 1000
    ratio = value / base
    ok = ratio <= 3.0 and (absolute_ms is None or value < absolute_ms)
    target = "<= 3x floor" + (f", < {absolute_ms:g} ms" if absolute_ms is not None else "")
    return [
        Result(
            name,
            value,
            "ms",
            base,
            ratio,
            target,
            ok,
            note=f"{median(sizes) / 1e6:.2f} MB frame",
            extra={
                "subject_ms": [s * 1000 for s in subject],
                "floor_ms": [f * 1000 for f in floor],
            },
        )
    ]


def _synthetic(connections: int, repeats: int, absolute_ms: float | None) -> list[Result]:
    clock = _Clock()
    source = SyntheticSource(
        SyntheticOptions(
            connections=connections,
            streams=10,
            churn=0.0,
            events_per_second=0,
            clock_ms=clock,
        )
    )
    server = _server(source)
    results = _measure(
        f"snapshot synthetic {connections:,}x10", server, clock, repeats, absolute_ms=absolute_ms
    )
    # Informational: the simulation step alone (advancing every stream's traffic).
    simulate: list[float] = []
    for _ in range(max(3, repeats // 2)):
        clock.now += 1_000
        simulate.append(timed(lambda: source.connections.advance_traffic(1_000)))
    results[0].extra["simulate_ms"] = median(simulate) * 1000
    results.append(
        Result(
            f"  of which simulate {connections:,}x10",
            median(simulate) * 1000,
            "ms",
            note="synthetic traffic for every stream; no real node pays this",
        )
    )
    return results


# ------------------------------------------------------------ host introspector


class _Swarm:
    def register_notifee(self, notifee: object) -> None:
        pass

    def get_connections(self) -> list[object]:
        return []


class _PeerId:
    def to_base58(self) -> str:
        return "12D3KooWBenchmarkBenchmarkBenchmarkBenchmarkBenchmark"


class _Host:
    def __init__(self) -> None:
        self._swarm = _Swarm()

    def get_network(self) -> _Swarm:
        return self._swarm

    def get_peerstore(self) -> object:
        raise RuntimeError("no peerstore")

    def get_id(self) -> _PeerId:
        return _PeerId()

    # What the node tracker reads (State.node): a real host's two listen addresses and
    # its handlers, so that the benchmark pays for them as a real node does.
    def get_transport_addrs(self) -> list[str]:
        return ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"]

    def get_mux(self) -> _Mux:
        return _Mux()


class _Mux:
    def get_protocols(self) -> list[str]:
        return list(_PROTOCOLS)


_PROTOCOLS = ("/meshsub/1.1.0", "/ipfs/kad/1.0.0", "/ipfs/ping/1.0.0", "/ipfs/bitswap/1.2.0")


def _introspector(connections: int, streams: int, clock: _Clock) -> tuple[HostIntrospector, Any]:
    intro = HostIntrospector(_Host(), clock_ms=clock)  # type: ignore[arg-type]
    registry = intro._registry
    counters: list[TrafficCounter] = []
    for c in range(connections):
        record = ConnectionRecord(
            id=registry._next_id(),
            conn=None,
            raw=None,
            peer_id=f"12D3KooWPeer{c:040d}",
            role=pb.INITIATOR if c % 2 else pb.RESPONDER,
            transport=b"tcp",
            local_addr=f"/ip4/10.0.0.1/tcp/{40000 + c % 20000}",
            remote_addr=f"/ip4/34.{c % 250}.{c // 250 % 250}.7/tcp/4001",
            muxer="/yamux/1.0.0",
            security="/noise",
            open_ts=START_MS - 60_000,
            upgraded_ts=START_MS - 59_990,
            traffic=TrafficCounter(),
            latency_ns=40_000_000 + c,
        )
        counters.append(record.traffic)
        for s in range(streams):
            stream = StreamRecord(
                id=registry._next_id(),
                stream=None,
                conn=record,
                role=pb.INITIATOR if s % 2 else pb.RESPONDER,
                open_ts=START_MS - 30_000,
                protocol=_PROTOCOLS[s % len(_PROTOCOLS)],
            )
            record.streams[stream.id] = stream
            counters.append(stream.traffic)
        registry._connections[record.id] = record

    def traffic() -> None:  # what the counting wrappers did during the window
        for i, counter in enumerate(counters):
            counter.in_bytes += 500 + i % 7
            counter.in_packets += 1
            counter.out_bytes += 300 + i % 5
            counter.out_packets += 1

    return intro, traffic


def _host(connections: int, repeats: int) -> list[Result]:
    clock = _Clock()
    intro, traffic = _introspector(connections, 10, clock)
    server = _server(intro)
    return _measure(
        f"snapshot introspector {connections:,}x10",
        server,
        clock,
        repeats,
        step=traffic,
        absolute_ms=50.0,
    )


def run(mode: Mode) -> list[Result]:
    results: list[Result] = []
    small, large = mode.pick(1_000, 1_000, 50), mode.pick(5_000, 5_000, 100)
    results += _synthetic(small, mode.pick(15, 5, 2), absolute_ms=50.0)
    results += _synthetic(large, mode.pick(7, 3, 1), absolute_ms=None)
    results += _host(small, mode.pick(15, 5, 2))
    return results
