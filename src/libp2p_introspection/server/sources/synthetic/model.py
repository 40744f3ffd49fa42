"""The simulated connections and streams, their protocols, and their traffic.

Each connection and stream keeps its ``pb.Connection`` / ``pb.Stream`` message
for its whole life (the stream's inside its connection's); traffic updates
the counters in place. Bytes are bytes, ``inst_bw`` bytes per second over the
snapshot's window (ms).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.protocol import pb

#: Our listen port, and the one the peers we dial listen on.
LISTEN_PORT = 4001
#: Bytes of framing per packet on a connection: yamux header (12) + Noise MAC (16).
FRAMING_BYTES = 28

_ACTIVE = pb.ACTIVE


@dataclass(frozen=True, slots=True)
class Profile:
    """Traffic of one protocol: packets per second and bytes per packet, each direction."""

    protocol: str
    weight: int
    pps_in: float
    pps_out: float
    size_in: int
    size_out: int


#: Stream protocols with their relative frequency and typical traffic.
PROFILES: tuple[Profile, ...] = (
    Profile("/meshsub/1.1.0", 26, 4.0, 4.0, 520, 480),
    Profile("/ipfs/kad/1.0.0", 20, 0.5, 0.5, 310, 260),
    Profile("/ipfs/ping/1.0.0", 14, 0.1, 0.1, 32, 32),
    Profile("/ipfs/bitswap/1.2.0", 12, 6.0, 2.0, 1380, 190),
    Profile("/ipfs/id/1.0.0", 8, 0.02, 0.02, 1150, 1150),
    Profile("/meshsub/1.0.0", 4, 2.0, 2.0, 450, 450),
    Profile("/ipfs/id/push/1.0.0", 4, 0.01, 0.01, 600, 600),
    Profile("/libp2p/circuit/relay/0.2.0/hop", 4, 3.0, 3.0, 1000, 1000),
    Profile("/libp2p/autonat/1.0.0", 3, 0.02, 0.02, 210, 180),
)
PROFILE_WEIGHTS: tuple[int, ...] = tuple(p.weight for p in PROFILES)


class SimStream:
    """One simulated stream and its persistent ``pb.Stream`` (inside its connection's message)."""

    __slots__ = ("busy", "close_ts", "gin", "gout", "id", "in_bytes", "in_packets",
                 "msg", "open_ts", "out_bytes", "out_packets", "pps_in", "pps_out", "profile",
                 "proto", "role", "size_in", "size_out", "status")  # fmt: skip

    def __init__(
        self, sid: bytes, profile: Profile, role: int, open_ts: int, scale: float,
        proto: ProtoStats,
    ) -> None:  # fmt: skip
        self.id = sid
        self.profile = profile
        #: The totals of its protocol (``State.protocols``), which its traffic adds to.
        self.proto = proto
        self.role = role
        self.open_ts = open_ts
        self.close_ts = 0
        self.status = _ACTIVE
        self.pps_in = profile.pps_in * scale
        self.pps_out = profile.pps_out * scale
        self.size_in = profile.size_in
        self.size_out = profile.size_out
        self.in_bytes = self.in_packets = self.out_bytes = self.out_packets = 0
        #: Whether the gauges show a non-zero ``inst_bw``.
        self.busy = False
        self.msg: Any = None
        self.gin: Any = None
        self.gout: Any = None


class ProtoStats:
    """One protocol's totals over every stream that carried it, closed ones included
    (``State.protocols``): bytes and packets each way, ACTIVE streams, streams opened."""

    __slots__ = ("active", "in_bytes", "in_packets", "opened", "out_bytes", "out_packets",
                 "prev_in", "prev_out", "protocol")  # fmt: skip

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.in_bytes = self.in_packets = self.out_bytes = self.out_packets = 0
        self.prev_in = self.prev_out = 0
        self.active = self.opened = 0

    def fill(self, msg: Any, window_ms: int) -> None:
        """Write one ``pb.ProtocolStats``: totals, and ``inst_bw`` over ``window_ms``."""
        msg.protocol = self.protocol
        traffic_in, traffic_out = msg.traffic.traffic_in, msg.traffic.traffic_out
        traffic_in.cum_bytes, traffic_in.cum_packets = self.in_bytes, self.in_packets
        traffic_out.cum_bytes, traffic_out.cum_packets = self.out_bytes, self.out_packets
        if window_ms:
            traffic_in.inst_bw = (self.in_bytes - self.prev_in) * 1000 // window_ms
            traffic_out.inst_bw = (self.out_bytes - self.prev_out) * 1000 // window_ms
            self.prev_in, self.prev_out = self.in_bytes, self.out_bytes
        traffic_in.SetInParent()
        traffic_out.SetInParent()
        msg.active_streams = self.active
        msg.streams_opened = self.opened


class SimConnection:
    """One simulated connection and its persistent ``pb.Connection``."""

    __slots__ = ("agent", "base_latency_ns", "close_ts", "dropped_streams", "gin", "gout",
                 "id", "in_bytes", "in_packets", "local_addr", "msg", "muxer", "observed",
                 "open_ts", "out_bytes", "out_packets", "peer_id", "prev_in", "prev_out",
                 "pubsub", "remote_addr", "role", "status", "streams", "upgraded_ts")  # fmt: skip

    def __init__(self) -> None:
        self.id = b""
        self.peer_id = ""
        self.role = pb.INITIATOR
        self.local_addr = ""
        self.remote_addr = ""
        self.muxer = ""
        self.open_ts = self.upgraded_ts = self.close_ts = 0
        self.status = _ACTIVE
        self.base_latency_ns = 0
        self.in_bytes = self.in_packets = self.out_bytes = self.out_packets = 0
        self.prev_in = self.prev_out = 0
        self.streams: list[SimStream] = []
        #: The peer's software (``Connection.peer``, from identify), set when it opens.
        self.agent: Any = None
        #: How the peer sees us (``PeerInfo.observed_addr``).
        self.observed = ""
        #: Its peer in the pubsub router, if it speaks gossipsub (its first stream then
        #: runs its meshsub protocol, for its whole life).
        self.pubsub: Any = None
        self.msg = pb.Connection()
        self.gin: Any = None
        self.gout: Any = None
        #: Streams deleted from ``msg`` since it was last built afresh: a protobuf (upb)
        #: message never gives back the memory of what is deleted from it, so
        #: ``ConnectionSimulation`` copies it into a new one once this passes
        #: ``REBUILD_AFTER_DROPPED``.
        self.dropped_streams = 0


class NodeTotals:
    """The node-wide traffic: every connection it has had, closed and purged ones included."""

    __slots__ = ("in_bytes", "in_packets", "out_bytes", "out_packets", "prev_in", "prev_out")

    def __init__(self) -> None:
        self.in_bytes = self.in_packets = self.out_bytes = self.out_packets = 0
        #: Bytes at the last non-empty window (the start of the next ``inst_bw``).
        self.prev_in = self.prev_out = 0

    def add(self, conn: SimConnection) -> None:
        """Add all of ``conn``'s traffic so far (a connection the node just got)."""
        self.in_bytes += conn.in_bytes
        self.out_bytes += conn.out_bytes
        self.in_packets += conn.in_packets
        self.out_packets += conn.out_packets

    def mark(self) -> None:
        """Bandwidth counts from now."""
        self.prev_in, self.prev_out = self.in_bytes, self.out_bytes

    def fill(self, traffic: pb.Traffic, window_ms: int) -> None:
        """Write ``State.traffic``: totals, and ``inst_bw`` over ``window_ms`` (0 if empty)."""
        traffic_in = traffic.traffic_in
        traffic_in.cum_bytes = self.in_bytes
        traffic_in.cum_packets = self.in_packets
        traffic_out = traffic.traffic_out
        traffic_out.cum_bytes = self.out_bytes
        traffic_out.cum_packets = self.out_packets
        if window_ms:
            traffic_in.inst_bw = (self.in_bytes - self.prev_in) * 1000 // window_ms
            traffic_out.inst_bw = (self.out_bytes - self.prev_out) * 1000 // window_ms
            self.mark()
        traffic_in.SetInParent()
        traffic_out.SetInParent()


def handshake(rng: random.Random, conn: SimConnection) -> None:
    """Multistream-select, Noise XX, muxer negotiation, identify: bytes and packets."""
    conn.in_packets += rng.randrange(5, 10)
    conn.out_packets += rng.randrange(5, 10)
    conn.in_bytes += rng.randrange(900, 1_600)
    conn.out_bytes += rng.randrange(900, 1_600)


def past_traffic(
    rng: random.Random, conn: SimConnection, stream: SimStream, seconds: float
) -> None:
    """``seconds`` of ``stream``'s traffic at its rates, added to it and its connection."""
    n_in = int(stream.pps_in * seconds * (0.5 + rng.random()) + rng.random())
    n_out = int(stream.pps_out * seconds * (0.5 + rng.random()) + rng.random())
    stream.in_packets, stream.in_bytes = n_in, n_in * stream.size_in
    stream.out_packets, stream.out_bytes = n_out, n_out * stream.size_out
    proto = stream.proto
    proto.in_bytes += stream.in_bytes
    proto.in_packets += n_in
    proto.out_bytes += stream.out_bytes
    proto.out_packets += n_out
    gin, gout = stream.gin, stream.gout
    gin.cum_bytes, gin.cum_packets = stream.in_bytes, stream.in_packets
    gout.cum_bytes, gout.cum_packets = stream.out_bytes, stream.out_packets
    conn.in_bytes += stream.in_bytes + n_in * FRAMING_BYTES
    conn.out_bytes += stream.out_bytes + n_out * FRAMING_BYTES
    conn.in_packets += n_in
    conn.out_packets += n_out


def fill_connection_gauges(conn: SimConnection, window_ms: int) -> None:
    """Write a connection's gauges: totals, and ``inst_bw`` over ``window_ms`` (0 if empty)."""
    gin, gout = conn.gin, conn.gout
    gin.cum_bytes = conn.in_bytes
    gin.cum_packets = conn.in_packets
    gout.cum_bytes = conn.out_bytes
    gout.cum_packets = conn.out_packets
    if window_ms:
        gin.inst_bw = (conn.in_bytes - conn.prev_in) * 1000 // window_ms
        gout.inst_bw = (conn.out_bytes - conn.prev_out) * 1000 // window_ms
        conn.prev_in = conn.in_bytes
        conn.prev_out = conn.out_bytes
    else:
        gin.inst_bw = 0
        gout.inst_bw = 0


def advance_traffic(
    rng: random.Random, active: Iterable[SimConnection], node: NodeTotals, window_ms: int
) -> None:
    """Add one window of simulated traffic to every ACTIVE stream and connection.

    Also writes every ACTIVE connection's gauges and latency, and the gauges
    of every stream whose values changed. Stream traffic is only ever added
    in a non-empty window and reported in that same snapshot, so a stream's
    ``inst_bw`` is simply the bytes added now per second; a stream that got
    nothing keeps its message untouched unless its ``inst_bw`` must drop back to 0.
    """
    rand = rng.random
    window_s = window_ms / 1000.0
    node_in_b = node_in_p = node_out_b = node_out_p = 0
    for conn in active:
        c_in_b = c_in_p = c_out_b = c_out_p = 0
        for s in conn.streams:
            if window_ms:
                r = rand()
                n_in = int(s.pps_in * window_s * (0.5 + r) + rand())
                r2 = rand()
                n_out = int(s.pps_out * window_s * (0.5 + r2) + rand())
                if n_in or n_out:
                    b_in = n_in * s.size_in + int(r * s.size_in) if n_in else 0
                    b_out = n_out * s.size_out + int(r2 * s.size_out) if n_out else 0
                    s.in_bytes += b_in
                    s.in_packets += n_in
                    s.out_bytes += b_out
                    s.out_packets += n_out
                    c_in_b += b_in
                    c_in_p += n_in
                    c_out_b += b_out
                    c_out_p += n_out
                    proto = s.proto
                    proto.in_bytes += b_in
                    proto.in_packets += n_in
                    proto.out_bytes += b_out
                    proto.out_packets += n_out
                    gin = s.gin
                    gin.cum_bytes = s.in_bytes
                    gin.cum_packets = s.in_packets
                    gin.inst_bw = b_in * 1000 // window_ms
                    gout = s.gout
                    gout.cum_bytes = s.out_bytes
                    gout.cum_packets = s.out_packets
                    gout.inst_bw = b_out * 1000 // window_ms
                    s.busy = True
                    continue
            if s.busy:
                s.gin.inst_bw = 0
                s.gout.inst_bw = 0
                s.busy = False
        c_in_b += c_in_p * FRAMING_BYTES
        c_out_b += c_out_p * FRAMING_BYTES
        conn.in_bytes += c_in_b
        conn.in_packets += c_in_p
        conn.out_bytes += c_out_b
        conn.out_packets += c_out_p
        node_in_b += c_in_b
        node_in_p += c_in_p
        node_out_b += c_out_b
        node_out_p += c_out_p
        fill_connection_gauges(conn, window_ms)
        conn.msg.latency_ns = int(conn.base_latency_ns * (0.9 + 0.2 * rand()))
    node.in_bytes += node_in_b
    node.in_packets += node_in_p
    node.out_bytes += node_out_b
    node.out_packets += node_out_p
