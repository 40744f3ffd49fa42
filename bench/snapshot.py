"""Snapshot cost: what the server does once per snapshot interval, on the node's loop.

Subject: ``SampledSource.take_snapshot(hub)``, the snapshot clock's per-tick
path: the source builds the snapshot (``source.state()``, or the source's
encoded fast path) and the hub encodes and frames it once for every session
(``ServerMessage{version, state}``, FNV-1a 32, the 12-byte header).

Floor: ``SerializeToString()`` of the same, already-built ``ServerMessage``
(parsed back from the frame the subject produced, outside the timing).

Both are timed in CPU time of the thread (``time.thread_time``), not wall time:
on this shared machine a 30 ms build is often descheduled by the OS while a 1 ms
serialization rarely is, which would skew the ratio. Nothing here waits on I/O.

Two sources:

* the synthetic node (``SyntheticSource``) at 1,000 x 10 and 5,000 x 10, with
  ``churn=0`` so every snapshot has exactly that many ACTIVE connections
  (streams still churn, 1% per snapshot); its ``state()`` also *simulates* a
  window of traffic for every stream, a cost a real node does not pay at
  snapshot time, reported separately as ``simulate``;
* the real ``HostIntrospector`` on a stand-in host whose registry holds
  1,000 x 10 and 5,000 x 10 connection and stream records: the path a real
  py-libp2p node with that many connections takes. Each stream and each
  connection carries the introspector's own counting wrappers (installed as the
  registry installs them, on stand-in ``NetStream``/raw connection objects), and
  a window of traffic is one ``read`` and one ``write`` through them on the
  streams that are active and on their connections. Two loads: **10% active**
  (a realistic node: a tenth of the streams, picked at random over every
  connection, carry traffic; each window a tenth of them fall idle and as many
  others start, so streams go busy, idle and busy again) and **all active**
  (every stream and connection moved). Targets: at most 2x the floor with 10%
  active, 6x with all.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from bench.common import Mode, Result, median
from libp2p_introspection.introspector.connections import ConnectionRecord, StreamRecord
from libp2p_introspection.introspector.host import HostIntrospector
from libp2p_introspection.introspector.traffic import TrafficCounter, install_counters
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import HEADER_SIZE
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

START_MS = 1_700_000_000_000


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds one call of ``fn`` takes in this thread (``time.thread_time``)."""
    began = time.thread_time()
    fn()
    return time.thread_time() - began


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
    max_ratio: float = 3.0,
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
    ok = ratio <= max_ratio and (absolute_ms is None or value < absolute_ms)
    target = f"<= {max_ratio:g}x floor" + (
        f", < {absolute_ms:g} ms" if absolute_ms is not None else ""
    )
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


class _StandInStream:
    """What the counting wrappers wrap: a ``NetStream``'s (or a raw connection's)
    ``read``/``write``, answering at once with a chunk of a fixed size."""

    def __init__(self, chunk: bytes, protocol: str | None) -> None:
        self.chunk = chunk
        self.protocol_id = protocol

    async def read(self, n: int | None = None) -> bytes:
        return self.chunk

    async def write(self, data: bytes) -> None:
        return None


def _drive(coroutine: Any) -> None:
    """Run a coroutine that never suspends (the stand-ins' read/write) to its end."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("a stand-in read/write suspended")


_CHUNKS = [bytes(500 + i) for i in range(7)]
_FRAMED = [bytes(560 + i) for i in range(7)]  # the same on the wire: yamux + Noise overhead


def _introspector(
    connections: int, streams: int, clock: Callable[[], int]
) -> tuple[HostIntrospector, Any]:
    """A ``HostIntrospector`` over ``connections`` x ``streams`` stand-in records, and
    ``step(fraction)``: one window of traffic on ``fraction`` of the streams (picked at
    random; a tenth of them replaced by others each window) and on their connections,
    through the counting wrappers.
    ``step.wires``: every (connection wire, stream wire) pair, for benchmarks that drive
    the traffic themselves."""
    intro = HostIntrospector(_Host(), clock_ms=clock)  # type: ignore[arg-type]
    registry = intro._registry
    wires: list[tuple[_StandInStream, _StandInStream]] = []
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
        raw = _StandInStream(_FRAMED[c % 7], None)
        install_counters(intro._patcher, raw, record.traffic)  # as the upgrader does
        ends: list[_StandInStream] = []
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
            net_stream = _StandInStream(_CHUNKS[(c + s) % 7], stream.protocol)
            registry.count_stream(stream, net_stream)  # as on_stream_opened does
            ends.append(net_stream)
        registry._connections[record.id] = record
        wires += [(raw, net_stream) for net_stream in ends]
    rng = random.Random(14)
    active: list[int] = []

    def step(fraction: float = 1.0) -> None:  # what the node did during the window
        wanted = len(wires) if fraction >= 1.0 else int(len(wires) * fraction)
        if len(active) != wanted:
            active[:] = rng.sample(range(len(wires)), wanted)
        elif wanted < len(wires):
            chosen = set(active)
            for slot in rng.sample(range(wanted), max(1, wanted // 10)):
                pick = rng.randrange(len(wires))
                while pick in chosen:
                    pick = rng.randrange(len(wires))
                chosen.discard(active[slot])
                chosen.add(pick)
                active[slot] = pick
        for index in active:
            raw, net_stream = wires[index]
            _drive(net_stream.read(65536))
            _drive(net_stream.write(net_stream.chunk))
            _drive(raw.read(65536))
            _drive(raw.write(raw.chunk))

    step.wires = wires  # type: ignore[attr-defined]
    return intro, step


def _host(connections: int, repeats: int, fraction: float, max_ratio: float) -> list[Result]:
    clock = _Clock()
    intro, step = _introspector(connections, 10, clock)
    server = _server(intro)
    load = "all" if fraction >= 1.0 else f"{fraction:.0%}"
    return _measure(
        f"snapshot introspector {connections:,}x10 {load} active",
        server,
        clock,
        repeats,
        step=lambda: step(fraction),
        max_ratio=max_ratio,
    )


def run(mode: Mode) -> list[Result]:
    results: list[Result] = []
    small, large = mode.pick(1_000, 1_000, 50), mode.pick(5_000, 5_000, 100)
    results += _synthetic(small, mode.pick(15, 5, 2), absolute_ms=50.0)
    results += _synthetic(large, mode.pick(7, 3, 1), absolute_ms=None)
    for connections in (small, large):
        repeats = mode.pick(15, 5, 2) if connections == small else mode.pick(9, 3, 2)
        results += _host(connections, repeats, 0.1, 2.0)
        results += _host(connections, repeats, 1.0, 6.0)
    return results
