"""The simulated node's connections and streams: their lives, churn and events.

``connections`` ACTIVE connections at all times, each to a distinct peer,
over TCP with ``/noise`` and yamux (about 80%) or mplex, half dialed by us;
``streams`` ACTIVE streams on each. Each snapshot step replaces
``round(churn * connections)`` connections and a few streams (1% of the
ACTIVE streams, within [1, 20]), emitting the events of each change stamped
with the snapshot's time; stream events are sampled by stream above
``max_stream_events_per_snapshot`` (see the package docstring). Times are ms
since epoch.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.events import EventEmitter, EventSpec
from libp2p_introspection.server.sources.synthetic.ids import IdCounter, random_peer_id, remote_ip
from libp2p_introspection.server.sources.synthetic.model import (
    LISTEN_PORT,
    PROFILES,
    NodeTotals,
    Profile,
    ProtoStats,
    SimConnection,
    SimStream,
    advance_traffic,
    fill_connection_gauges,
    handshake,
    past_traffic,
)
from libp2p_introspection.server.sources.synthetic.node import AGENT_WEIGHTS, AGENTS, SimNode
from libp2p_introspection.server.sources.synthetic.options import SyntheticOptions
from libp2p_introspection.server.sources.synthetic.pubsub import SimPubsub

_PROFILE_OF = {profile.protocol: profile for profile in PROFILES}

#: Fraction of ACTIVE streams replaced per snapshot, and its bounds.
STREAM_CHURN_FRACTION = 0.01
STREAM_CHURN_MAX = 20
#: The transport every simulated connection uses (``Connection.transport_id``).
TRANSPORT = b"tcp"
ENCRYPTION = "/noise"

_ACTIVE = pb.ACTIVE
_CLOSED = pb.CLOSED


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def stream_churn_count(active_streams: int) -> int:
    """Streams replaced per snapshot step: 1% of ``active_streams``, within [1, 20]."""
    if active_streams <= 0:
        return 0
    return min(STREAM_CHURN_MAX, max(1, _round_half_up(STREAM_CHURN_FRACTION * active_streams)))



#: A connection's ``pb.Connection`` is copied into a new message once this many times
#: its live streams were deleted from it (see ``SimConnection.dropped_streams``): the
#: memory of a long-lived connection whose streams churn stays bounded, at the cost of
#: one copy of it per that many stream replacements.
REBUILD_AFTER_DROPPED = 4


def _rebuild_message(conn: SimConnection) -> None:
    """Copy ``conn.msg`` into a new ``pb.Connection`` (the same bytes) and point the
    connection's and its streams' references at the copy's parts."""
    fresh = pb.Connection()
    fresh.CopyFrom(conn.msg)
    conn.msg = fresh
    conn.gin = fresh.traffic.traffic_in
    conn.gout = fresh.traffic.traffic_out
    for stream, msg in zip(conn.streams, fresh.streams.streams, strict=True):
        stream.msg = msg
        stream.gin = msg.traffic.traffic_in
        stream.gout = msg.traffic.traffic_out
    conn.dropped_streams = 0

class ConnectionSimulation:
    """Every connection the node has (ACTIVE, and CLOSED ones still retained) and its totals.

    :param rng: the node's generator.
    :param start_ts: when the node's introspection started, ms since epoch: the
        connections it has then are opened up to hours before, with the traffic of
        their lives so far.
    :param emitter: where the connection and stream events go.
    :param make_node: builds the node (``State.node``) on the simulation's local address.
    :param pubsub: the gossipsub router, if the node runs one: peers whose agent speaks
        gossipsub join it while their connection is ACTIVE.
    """

    def __init__(
        self, options: SyntheticOptions, *, rng: random.Random, start_ts: int,
        emitter: EventEmitter, make_node: Callable[[str], SimNode],
        pubsub: SimPubsub | None = None,
    ) -> None:  # fmt: skip
        self.options = options
        self._rng = rng
        self._emitter = emitter
        self._ids = IdCounter()
        self.start_ts = start_ts
        self._local_ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(2, 255)}"
        self.node = make_node(self._local_ip)
        self.pubsub = pubsub
        #: Per-protocol totals over every stream ever opened (``State.protocols``).
        self.protocols: dict[str, ProtoStats] = {}
        #: ACTIVE streams (every protocol).
        self.active_streams = 0
        #: Retained connections (ACTIVE and CLOSED), oldest first.
        self.retained: dict[bytes, SimConnection] = {}
        #: ACTIVE connections, oldest first.
        self.active: list[SimConnection] = []
        #: CLOSED connections in closing order, for purging.
        self._closed: deque[SimConnection] = deque()
        #: Connections closed in the previous snapshot (their streams go, their bandwidth drops).
        self._just_closed: list[SimConnection] = []
        #: ACTIVE connections with a stream closed in the previous snapshot.
        self._stream_closed_on: list[SimConnection] = []
        self.totals = NodeTotals()
        per_call = (
            2 * self._churned_per_call() * options.streams
            + 2 * stream_churn_count(options.connections * options.streams)
            + self._churned_per_call()  # PeerIdentified
        )
        limit = options.max_stream_events_per_snapshot
        fraction = min(1.0, limit / per_call) if per_call else 1.0
        #: Stream ids hashing below this get events (see :meth:`_emit_stream_event`).
        self._stream_sample_below = int(fraction * 2**64)
        #: Stream events not emitted because of ``max_stream_events_per_snapshot``.
        self.suppressed_stream_events = 0
        for _ in range(options.connections):
            self._adopt_connection()
        if pubsub is not None:
            pubsub.settle()
        # The node's bandwidth, like its connections', counts from now.
        self.totals.mark()
        for proto in self.protocols.values():
            proto.prev_in, proto.prev_out = proto.in_bytes, proto.out_bytes

    def _churned_per_call(self) -> int:
        """Connections replaced per step: ``churn * connections``, rounded half up."""
        return _round_half_up(self.options.churn * self.options.connections)

    def proto(self, protocol: str) -> ProtoStats:
        """The totals of ``protocol`` (created at its first stream)."""
        stats = self.protocols.get(protocol)
        if stats is None:
            stats = self.protocols[protocol] = ProtoStats(protocol)
        return stats

    def _emit_stream_event(
        self, stream: SimStream, spec: EventSpec, ts: int, content: Mapping[str, Any]
    ) -> None:
        self._emit_sampled(stream.id, spec, ts, content)

    def _emit_sampled(
        self, element_id: bytes, spec: EventSpec, ts: int, content: Mapping[str, Any]
    ) -> None:
        # Multiplicative (Fibonacci) hashing of the sequential id: a fixed, well-spread
        # sample of streams, the same one at open and at close.
        if (int.from_bytes(element_id, "big") * 0x9E3779B97F4A7C15) % 2**64 >= (
            self._stream_sample_below
        ):
            self.suppressed_stream_events += 1
            return
        self._emitter.emit(spec, content, ts=ts)

    # ------------------------------------------------------------------ lifecycle

    def _make_connection(self, open_ts: int, upgraded_ts: int) -> SimConnection:
        rng = self._rng
        conn = SimConnection()
        conn.id = self._ids.new()
        conn.peer_id = random_peer_id(rng)
        conn.role = pb.INITIATOR if rng.random() < 0.5 else pb.RESPONDER
        family, remote = remote_ip(rng)
        local_ip = self._local_ip if family == "ip4" else "2a02:8071:5c3:7e00::1a"
        ephemeral = rng.randrange(32768, 61000)
        if conn.role == pb.INITIATOR:
            conn.local_addr = f"/{family}/{local_ip}/tcp/{ephemeral}"
            conn.remote_addr = f"/{family}/{remote}/tcp/{LISTEN_PORT}"
        else:
            conn.local_addr = f"/{family}/{local_ip}/tcp/{LISTEN_PORT}"
            conn.remote_addr = f"/{family}/{remote}/tcp/{ephemeral}"
        conn.muxer = "/yamux/1.0.0" if rng.random() < 0.8 else "/mplex/6.7.0"
        agent = conn.agent = rng.choices(AGENTS, AGENT_WEIGHTS)[0]
        conn.observed = self.node.observed_addr(family, conn.role, ephemeral)
        rtt_ns = int(rng.lognormvariate(math.log(40e6), 0.8))
        conn.base_latency_ns = min(max(rtt_ns, 200_000), 900_000_000)
        conn.open_ts = open_ts
        conn.upgraded_ts = upgraded_ts
        msg = conn.msg
        msg.id = conn.id
        msg.peer_id = conn.peer_id
        msg.status = _ACTIVE
        msg.transport_id = TRANSPORT
        msg.endpoints.src_multiaddr = conn.local_addr
        msg.endpoints.dst_multiaddr = conn.remote_addr
        msg.timeline.open_ts = open_ts
        msg.timeline.upgraded_ts = upgraded_ts
        msg.role = conn.role
        msg.traffic.traffic_in.SetInParent()
        msg.traffic.traffic_out.SetInParent()
        conn.gin = msg.traffic.traffic_in
        conn.gout = msg.traffic.traffic_out
        msg.attribs.multiplexer = conn.muxer
        msg.attribs.encryption = ENCRYPTION
        msg.latency_ns = conn.base_latency_ns
        msg.streams.SetInParent()
        # Identified as it opens (identify runs first on every connection).
        peer = msg.peer
        peer.agent_version = agent.agent_version
        peer.protocol_version = agent.protocol_version
        peer.protocols.extend(agent.protocols)
        peer.listen_addrs.append(f"/{family}/{remote}/tcp/{LISTEN_PORT}")
        peer.observed_addr = conn.observed
        self.node.observe(conn.observed)
        self.retained[conn.id] = conn
        self.active.append(conn)
        return conn

    def _add_stream(
        self, conn: SimConnection, open_ts: int, profile: Profile | None = None
    ) -> SimStream:
        """A new ACTIVE stream of ``profile`` (default: one its peer's agent speaks)."""
        rng = self._rng
        if profile is None:
            agent = conn.agent
            profile = rng.choices(agent.profiles, agent.profile_weights)[0]
        role = pb.INITIATOR if rng.random() < 0.5 else pb.RESPONDER
        proto = self.proto(profile.protocol)
        proto.opened += 1
        proto.active += 1
        self.active_streams += 1
        stream = SimStream(
            self._ids.new(), profile, role, open_ts, rng.lognormvariate(0.0, 0.75), proto
        )
        conn.msg.streams.stream_ids.append(stream.id)
        msg = conn.msg.streams.streams.add()
        msg.id = stream.id
        msg.protocol = profile.protocol
        msg.role = role
        msg.traffic.traffic_in.SetInParent()
        msg.traffic.traffic_out.SetInParent()
        msg.conn.conn_id = conn.id
        msg.timeline.open_ts = open_ts
        msg.status = _ACTIVE
        stream.msg = msg
        stream.gin = msg.traffic.traffic_in
        stream.gout = msg.traffic.traffic_out
        conn.streams.append(stream)
        return stream

    def _adopt_connection(self) -> None:
        """A connection that exists when the source starts: no events, and the traffic
        of its life so far (its handshake, then each stream's packets since it opened,
        at the stream's rates), so that the first snapshot adds up however soon it
        comes: its totals cover the connection's age, its bandwidth only the window."""
        rng = self._rng
        start = self.start_ts
        age = 1_000 + int(rng.expovariate(1 / 600_000))
        open_ts = max(0, start - min(age, 6 * 3_600_000))
        upgraded_ts = min(start, open_ts + rng.randrange(10, 200))
        conn = self._make_connection(open_ts, upgraded_ts)
        handshake(rng, conn)
        pubsub_profile = self._join_pubsub(conn, start, announce=False)
        for index in range(self.options.streams):
            profile = pubsub_profile if index == 0 else None
            stream = self._add_stream(conn, rng.randint(upgraded_ts, start), profile)
            past_traffic(rng, conn, stream, (start - stream.open_ts) / 1000.0)
        self.totals.add(conn)
        # Bandwidth counts from now: the first window holds only what it adds.
        conn.prev_in, conn.prev_out = conn.in_bytes, conn.out_bytes
        fill_connection_gauges(conn, 0)

    def _open_connection(self, now: int, not_before: int) -> SimConnection:
        rng = self._rng
        upgraded_ts = max(not_before, now - rng.randrange(0, 50))
        open_ts = max(not_before, upgraded_ts - rng.randrange(8, 300))
        conn = self._make_connection(open_ts, upgraded_ts)
        handshake(rng, conn)
        self.totals.add(conn)
        content = events.connection_opened(
            peer_id=conn.peer_id, conn_id=conn.id, role=conn.role, local_addr=conn.local_addr,
            remote_addr=conn.remote_addr, transport=TRANSPORT, multiplexer=conn.muxer,
            encryption=ENCRYPTION, open_ts=open_ts,
        )  # fmt: skip
        self._emitter.emit(events.CONNECTION_OPENED, content, ts=now)
        agent = conn.agent
        identified = {
            "peerId": conn.peer_id, "agentVersion": agent.agent_version,
            "protocolVersion": agent.protocol_version, "protocols": list(agent.protocols),
        }  # fmt: skip
        self._emit_sampled(conn.id, events.PEER_IDENTIFIED, now, identified)
        pubsub_profile = self._join_pubsub(conn, now, announce=True)
        for index in range(self.options.streams):
            profile = pubsub_profile if index == 0 else None
            stream = self._add_stream(conn, min(now, upgraded_ts + rng.randrange(0, 40)), profile)
            self._announce_stream(conn, stream, now)
        return conn

    def _join_pubsub(self, conn: SimConnection, now: int, *, announce: bool) -> Profile | None:
        """Make ``conn``'s peer a pubsub peer if its agent speaks gossipsub (and it has
        streams to run it on); returns the profile of its first stream then."""
        protocol = conn.agent.gossipsub
        if self.pubsub is None or not protocol or not self.options.streams:
            return None
        conn.pubsub = self.pubsub.join(conn.peer_id, protocol, now, announce=announce)
        return _PROFILE_OF[protocol]

    def _announce_stream(self, conn: SimConnection, stream: SimStream, now: int) -> None:
        content = events.stream_opened(
            peer_id=conn.peer_id, conn_id=conn.id, stream_id=stream.id,
            protocol=stream.profile.protocol, role=stream.role, open_ts=stream.open_ts,
        )  # fmt: skip
        self._emit_stream_event(stream, events.STREAM_OPENED, now, content)

    def _close_stream(self, conn: SimConnection, stream: SimStream, now: int) -> None:
        stream.proto.active -= 1
        self.active_streams -= 1
        stream.status = _CLOSED
        stream.close_ts = now
        stream.msg.status = _CLOSED
        stream.msg.timeline.close_ts = now
        content = events.stream_closed(
            peer_id=conn.peer_id, conn_id=conn.id, stream_id=stream.id,
            protocol=stream.profile.protocol, role=stream.role, open_ts=stream.open_ts,
            ending=events.Ending(now, stream.in_bytes, stream.out_bytes, _CLOSED, "closed"),
        )  # fmt: skip
        self._emit_stream_event(stream, events.STREAM_CLOSED, now, content)

    def _close_connection(self, conn: SimConnection, now: int) -> None:
        for stream in conn.streams:
            self._close_stream(conn, stream, now)
        if conn.pubsub is not None and self.pubsub is not None:
            self.pubsub.leave(conn.pubsub)
            conn.pubsub = None
        conn.status = _CLOSED
        conn.close_ts = now
        conn.msg.status = _CLOSED
        conn.msg.timeline.close_ts = now
        self._closed.append(conn)
        content = events.connection_closed(
            peer_id=conn.peer_id, conn_id=conn.id, role=conn.role, remote_addr=conn.remote_addr,
            open_ts=conn.open_ts,
            ending=events.Ending(now, conn.in_bytes, conn.out_bytes, _CLOSED, "closed"),
        )  # fmt: skip
        self._emitter.emit(events.CONNECTION_CLOSED, content, ts=now)

    # ----------------------------------------------------------------- one step

    def step(self, now: int, start: int, window_ms: int) -> None:
        """Advance to ``now``: purge, add the window's traffic, churn connections and streams.

        :param start: the previous step's time (the window is ``start..now``, ms).
        """
        self._purge(now, window_ms)
        self.advance_traffic(window_ms)
        opened = self._churn(now, min(start, now), window_ms)
        self._churn_streams(now, len(self.active) - len(opened))

    def advance_traffic(self, window_ms: int) -> None:
        """Add ``window_ms`` of traffic to every ACTIVE connection (``model.advance_traffic``)."""
        advance_traffic(self._rng, self.active, self.totals, window_ms)

    def _purge(self, now: int, window_ms: int) -> None:
        """Drop streams reported CLOSED last time and connections CLOSED for the lifetime."""
        for conn in self._stream_closed_on:
            if conn.status != _ACTIVE:
                continue
            streams = conn.streams
            for index in range(len(streams) - 1, -1, -1):
                if streams[index].status == _CLOSED:
                    del streams[index]
                    del conn.msg.streams.streams[index]
                    del conn.msg.streams.stream_ids[index]
                    conn.dropped_streams += 1
            if conn.dropped_streams >= REBUILD_AFTER_DROPPED * max(1, len(streams)):
                _rebuild_message(conn)
        self._stream_closed_on = []
        still_dirty: list[SimConnection] = []
        for conn in self._just_closed:
            if conn.streams:
                conn.streams = []
                del conn.msg.streams.streams[:]
                del conn.msg.streams.stream_ids[:]
            fill_connection_gauges(conn, window_ms)
            unreported = conn.in_bytes != conn.prev_in or conn.out_bytes != conn.prev_out
            if window_ms == 0 and unreported:
                still_dirty.append(conn)  # its last bytes still await a non-empty window
        self._just_closed = still_dirty
        lifetime = self.options.closed_connection_lifetime_ms
        closed = self._closed
        while closed and now - closed[0].close_ts >= lifetime:
            gone = closed.popleft()
            del self.retained[gone.id]
            self.node.forget(gone.observed)

    def _churn(self, now: int, not_before: int, window_ms: int) -> list[SimConnection]:
        """Replace ``round(churn * connections)`` ACTIVE connections by new ones.

        Returns the new connections (also appended to the ACTIVE list).
        """
        rng = self._rng
        count = min(len(self.active), self._churned_per_call())
        if count:
            victims = sorted(rng.sample(range(len(self.active)), count))
            for index in victims:
                conn = self.active[index]
                self._close_connection(conn, now)
                self._just_closed.append(conn)
            gone = set(victims)
            self.active = [c for i, c in enumerate(self.active) if i not in gone]
        opened = [
            self._open_connection(now, not_before)
            for _ in range(self.options.connections - len(self.active))
        ]
        for conn in opened:
            fill_connection_gauges(conn, window_ms)
        return opened

    def _churn_streams(self, now: int, survivors: int) -> None:
        """Close a few streams and open a replacement on the same connection for each.

        Only the ``survivors`` oldest ACTIVE connections (not those opened in
        this step) are candidates, one stream per connection at most.
        """
        count = stream_churn_count(survivors * self.options.streams)
        if not count:
            return
        rng = self._rng
        for index in rng.sample(range(survivors), min(count, survivors)):
            conn = self.active[index]
            stream = conn.streams[rng.randrange(len(conn.streams))]
            self._close_stream(conn, stream, now)
            # A pubsub peer's gossipsub stream is renewed as one: it keeps a stream for it.
            keep = conn.pubsub is not None and stream.profile.protocol == conn.agent.gossipsub
            replacement = self._add_stream(conn, now, stream.profile if keep else None)
            self._announce_stream(conn, replacement, now)
            self._stream_closed_on.append(conn)

    def encoded_connections(self) -> list[bytes]:
        """Every retained connection's ``pb.Connection``, serialized, oldest first."""
        return [conn.msg.SerializeToString() for conn in self.retained.values()]
