"""The synthetic source (``serve --source mock``): determinism, invariants, scale, events."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import multiaddr
import pytest
import trio
from event_checks import FakeClock, ToolkitDhtShape, check_events
from libp2p.peer.id import ID

from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol import events as event_specs
from libp2p_introspection.protocol import pb
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.sources.synthetic import (
    IMPLEMENTATION,
    SyntheticOptions,
    SyntheticSource,
    dht_bucket_sizes,
)

P = pb.EventType.EventProperty
START_MS = 1_700_000_000_000
PROTOCOLS = {
    "/meshsub/1.1.0",
    "/meshsub/1.0.0",
    "/ipfs/kad/1.0.0",
    "/ipfs/ping/1.0.0",
    "/ipfs/bitswap/1.2.0",
    "/ipfs/id/1.0.0",
    "/ipfs/id/push/1.0.0",
    "/libp2p/circuit/relay/0.2.0/hop",
    "/libp2p/autonat/1.0.0",
}


class Harness:
    """A synthetic source on a fake clock, with an event log."""

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.events: list[pb.Event] = []
        self.source = SyntheticSource(SyntheticOptions(clock_ms=self.clock, **options))
        self.source.set_event_sink(self.events.append)

    def state(self, advance_ms: int = 1_000) -> pb.State:
        self.clock.advance(advance_ms)
        return self.source.state()

    def take_events(self) -> list[pb.Event]:
        taken, self.events[:] = list(self.events), []
        return taken


def content(event: pb.Event) -> dict[str, Any]:
    return json.loads(event.content)


def named(events: list[pb.Event], name: str) -> list[dict[str, Any]]:
    return [content(e) for e in events if e.type.name == name]


def all_streams(state: pb.State) -> Iterator[tuple[pb.Connection, pb.Stream]]:
    for conn in state.subsystems.connections:
        for stream in conn.streams.streams:
            yield conn, stream


# ----------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"connections": -1}, "connections"),
        ({"streams": -3}, "streams"),
        ({"dht_peers": -1}, "dht_peers"),
        ({"dht_peers": 6_000}, "dht_peers"),
        ({"events_per_second": -0.5}, "events_per_second"),
        ({"events_per_second": math.inf}, "events_per_second"),
        ({"events_per_second": math.nan}, "events_per_second"),
        ({"churn": -0.01}, "churn"),
        ({"churn": 1.5}, "churn"),
        ({"churn": math.nan}, "churn"),
        ({"closed_connection_lifetime_ms": -1}, "closed_connection_lifetime_ms"),
        ({"max_stream_events_per_snapshot": -1}, "max_stream_events_per_snapshot"),
    ],
)
def test_invalid_options_are_rejected_with_the_field_name(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        SyntheticOptions(**options)


@pytest.mark.parametrize("options", [{"connections": 2.5}, {"streams": True}, {"churn": "0.1"}])
def test_wrongly_typed_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        SyntheticOptions(**options)


def test_extreme_but_valid_options() -> None:
    h = Harness(connections=0, streams=0, dht_peers=0, churn=1.0, events_per_second=0)
    state = h.state()
    assert len(state.subsystems.connections) == 0
    assert not state.subsystems.HasField("dht")
    assert state.traffic.HasField("traffic_in") and state.traffic.HasField("traffic_out")
    h = Harness(connections=4, streams=0, churn=1.0)
    state = h.state()
    statuses = [c.status for c in state.subsystems.connections]
    assert statuses.count(pb.CLOSED) == 4 and statuses.count(pb.ACTIVE) == 4


def test_dht_bucket_layout() -> None:
    assert dht_bucket_sizes(40) == [20, 10, 5, 3, 1, 1]
    assert dht_bucket_sizes(0) == []
    assert dht_bucket_sizes(1) == [1]
    for peers in (7, 40, 100, 999):
        sizes = dht_bucket_sizes(peers)
        assert sum(sizes) == peers
        assert all(1 <= s <= 20 for s in sizes)
        assert sizes == sorted(sizes, reverse=True)


# ------------------------------------------------------------- determinism


def test_same_seed_and_clock_give_identical_bytes_and_events() -> None:
    a = Harness(connections=30, streams=5, churn=0.1, seed=7)
    b = Harness(connections=30, streams=5, churn=0.1, seed=7)
    assert a.source.runtime().SerializeToString() == b.source.runtime().SerializeToString()
    for step in (1_000, 1_000, 0, 2_500, 1_000, 1):
        assert a.state(step).SerializeToString() == b.state(step).SerializeToString()
    assert a.events and [e.SerializeToString() for e in a.events] == [
        e.SerializeToString() for e in b.events
    ]
    other = Harness(connections=30, streams=5, churn=0.1, seed=8)
    assert other.source.runtime().peer_id != a.source.runtime().peer_id
    assert other.state().SerializeToString() != a.state().SerializeToString()


@pytest.mark.parametrize("dht_peers", [0, 40])
def test_encoded_state_is_the_whole_state_serialized(dht_peers: int) -> None:
    # The server's path (encoded_state) assembles the bytes from per-connection
    # messages; they must be exactly the serialization of the whole State.
    a = Harness(connections=30, streams=5, churn=0.1, seed=5, dht_peers=dht_peers)
    b = Harness(connections=30, streams=5, churn=0.1, seed=5, dht_peers=dht_peers)
    for step in (1_000, 0, 1_000, 2_500):
        a.clock.advance(step)
        encoded = a.source.encoded_state()
        parsed = pb.State.FromString(encoded)
        whole = pb.State(
            instant_ts=parsed.instant_ts,
            start_ts=parsed.start_ts,
            snapshot_duration_ms=parsed.snapshot_duration_ms,
        )
        whole.subsystems.SetInParent()
        whole.subsystems.connections.extend(c.msg for c in a.source.connections.retained.values())
        if dht_peers:
            whole.subsystems.dht.CopyFrom(parsed.subsystems.dht)
        else:
            assert not parsed.subsystems.HasField("dht")
        whole.traffic.CopyFrom(parsed.traffic)
        # The §3.1 parts, each assembled on its own: byte for byte in field order.
        whole.node.CopyFrom(parsed.node)
        whole.protocols.extend(parsed.protocols)
        whole.subsystems.pubsub.CopyFrom(parsed.subsystems.pubsub)
        whole.subsystems.resources.CopyFrom(parsed.subsystems.resources)
        assert whole.SerializeToString() == encoded
        assert parsed.SerializeToString() == encoded
        assert b.state(step).SerializeToString() == encoded  # state() is the same snapshot
    assert [e.SerializeToString() for e in a.events] == [e.SerializeToString() for e in b.events]


async def test_run_events_are_deterministic(autojump_clock: trio.abc.Clock) -> None:
    a = Harness(seed=3, events_per_second=50)
    b = Harness(seed=3, events_per_second=50)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.source.simulate_queries)
        await nursery.start(b.source.simulate_queries)
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert len(a.events) >= 90
    assert [e.SerializeToString() for e in a.events] == [e.SerializeToString() for e in b.events]
    assert a.state().SerializeToString() == b.state().SerializeToString()


# ---------------------------------------------------------------- invariants


def test_counters_are_monotonic_and_bandwidth_matches_the_window() -> None:
    """From one snapshot to the next. (The first one's baseline is the traffic the
    connections had when the source started, which no snapshot shows: it is the
    starting point here, and test_the_first_snapshot_adds_up checks it.)"""
    h = Harness(connections=40, streams=6, churn=0.1, closed_connection_lifetime_ms=4_000)
    seen: dict[bytes, tuple[int, int, int, int]] = {}  # id -> last (in bytes, in pkts, out...)
    baseline = h.state(1_000)
    node_prev = (
        baseline.traffic.traffic_in.cum_bytes, baseline.traffic.traffic_in.cum_packets,
        baseline.traffic.traffic_out.cum_bytes, baseline.traffic.traffic_out.cum_packets,
    )  # fmt: skip
    for obj in list(baseline.subsystems.connections) + [s for _, s in all_streams(baseline)]:
        t = obj.traffic
        seen[obj.id] = (t.traffic_in.cum_bytes, t.traffic_in.cum_packets,
                        t.traffic_out.cum_bytes, t.traffic_out.cum_packets)  # fmt: skip
    for step in (1_000, 700, 1_300, 0, 1_000, 2_000, 1_000, 1_000, 500, 1_000):
        state = h.state(step)
        window = state.snapshot_duration_ms
        assert window == step and state.instant_ts - state.start_ts == step
        node = state.traffic
        now_node = (
            node.traffic_in.cum_bytes,
            node.traffic_in.cum_packets,
            node.traffic_out.cum_bytes,
            node.traffic_out.cum_packets,
        )
        assert all(n >= p for n, p in zip(now_node, node_prev, strict=True))
        if window:
            assert node.traffic_in.inst_bw == (now_node[0] - node_prev[0]) * 1000 // window
            assert node.traffic_out.inst_bw == (now_node[2] - node_prev[2]) * 1000 // window
            node_prev = now_node
        else:
            assert node.traffic_in.inst_bw == node.traffic_out.inst_bw == 0
        retained = 0
        objects: list[Any] = list(state.subsystems.connections)
        objects += [s for _, s in all_streams(state)]
        for obj in objects:
            t = obj.traffic
            values = (
                t.traffic_in.cum_bytes,
                t.traffic_in.cum_packets,
                t.traffic_out.cum_bytes,
                t.traffic_out.cum_packets,
            )
            before = seen.get(obj.id, (0, 0, 0, 0))
            assert all(v >= b for v, b in zip(values, before, strict=True)), obj.id
            if window:
                assert t.traffic_in.inst_bw == (values[0] - before[0]) * 1000 // window
                assert t.traffic_out.inst_bw == (values[2] - before[2]) * 1000 // window
                seen[obj.id] = values
            else:
                assert t.traffic_in.inst_bw == t.traffic_out.inst_bw == 0
            if isinstance(obj, pb.Connection):
                retained += values[0]
        # The node includes closed and purged connections: at least the retained ones.
        assert now_node[0] >= retained
    assert node_prev[0] > 0 and node_prev[2] > 0


def test_the_first_snapshot_adds_up() -> None:
    """The server takes its first snapshot as it starts, milliseconds after the source:
    it showed in=4234B and bw_in=529250B/s for a node whose connections are minutes
    old. Its totals now cover those lives (handshake, then each stream's packets),
    its bandwidth only the window."""
    h = Harness(connections=50, streams=4)
    first = h.state(8)
    rate = h.state(1_000).traffic.traffic_in.inst_bw  # the node's rate, over a second
    node = first.traffic
    conns = first.subsystems.connections
    for direction in ("traffic_in", "traffic_out"):
        total = getattr(node, direction)
        assert total.cum_bytes == sum(getattr(c.traffic, direction).cum_bytes for c in conns)
        assert total.cum_packets == sum(getattr(c.traffic, direction).cum_packets for c in conns)
        # 8 ms of it at most: what the window added, per second.
        assert total.inst_bw * 8 // 1000 <= total.cum_bytes
    # Its connections are minutes old on average: it has moved minutes of its traffic.
    assert node.traffic_in.cum_bytes >= 60 * rate > 0
    for conn in conns:
        if conn.timeline.open_ts >= START_MS:
            continue  # opened in the window
        streams = conn.streams.streams
        for direction in ("traffic_in", "traffic_out"):
            gauge = getattr(conn.traffic, direction)
            payload = sum(getattr(s.traffic, direction).cum_bytes for s in streams)
            packets = sum(getattr(s.traffic, direction).cum_packets for s in streams)
            # Its streams' payload, 28 bytes of framing per packet, and a handshake.
            assert gauge.cum_bytes >= payload + 28 * packets + 900, conn.id
            assert gauge.cum_packets >= packets + 5, conn.id
        for stream in streams:
            age_s = (START_MS - stream.timeline.open_ts) / 1000
            if stream.protocol == "/meshsub/1.1.0" and age_s >= 10:  # 4 packets/s each way
                assert stream.traffic.traffic_in.cum_packets > 0, stream.id
                assert stream.traffic.traffic_out.cum_packets > 0, stream.id


def test_ids_are_stable_and_never_reused() -> None:
    h = Harness(connections=25, streams=4, churn=0.12, closed_connection_lifetime_ms=3_000)
    conn_peer: dict[bytes, str] = {}
    stream_conn: dict[bytes, bytes] = {}
    gone: set[bytes] = set()
    previous: set[bytes] = set()
    peers_seen: dict[str, bytes] = {}
    for _ in range(15):
        state = h.state()
        present: set[bytes] = set()
        for conn in state.subsystems.connections:
            assert len(conn.id) == 8
            assert conn_peer.setdefault(conn.id, conn.peer_id) == conn.peer_id
            assert peers_seen.setdefault(conn.peer_id, conn.id) == conn.id  # new peers only
            assert conn.id not in stream_conn
            present.add(conn.id)
            assert list(conn.streams.stream_ids) == [s.id for s in conn.streams.streams]
            for stream in conn.streams.streams:
                assert len(stream.id) == 8 and stream.id not in conn_peer
                assert stream_conn.setdefault(stream.id, conn.id) == conn.id
                assert stream.conn.conn_id == conn.id
                present.add(stream.id)
        assert not present & gone, "an id came back"
        gone |= previous - present
        previous = present
    assert gone  # churn made things disappear


def test_churned_connections_turn_closed_then_disappear_after_the_lifetime() -> None:
    lifetime = 5_000
    h = Harness(connections=20, streams=3, churn=0.1, closed_connection_lifetime_ms=lifetime)
    first = h.state()
    closed = [c for c in first.subsystems.connections if c.status == pb.CLOSED]
    assert len(closed) == 2
    evs = h.take_events()
    closed_events = {e["connId"]: e for e in named(evs, "ConnectionClosed")}
    assert set(closed_events) == {c.id.hex() for c in closed}
    for conn in closed:
        event = closed_events[conn.id.hex()]
        assert conn.timeline.close_ts == first.instant_ts == event["closeTs"]
        assert event["peerId"] == conn.peer_id
        assert event["openTs"] == conn.timeline.open_ts
        assert event["bytesIn"] == conn.traffic.traffic_in.cum_bytes
        assert event["bytesOut"] == conn.traffic.traffic_out.cum_bytes
        assert event["remoteAddr"] == conn.endpoints.dst_multiaddr
        assert conn.streams.streams and all(s.status == pb.CLOSED for s in conn.streams.streams)
        assert all(s.timeline.close_ts == first.instant_ts for s in conn.streams.streams)
    stream_closed = {e["streamId"] for e in named(evs, "StreamClosed")}
    assert {s.id.hex() for c in closed for s in c.streams.streams} <= stream_closed
    opened = [c for c in first.subsystems.connections if c.status == pb.ACTIVE][-2:]
    opened_events = named(evs, "ConnectionOpened")
    assert [e["connId"] for e in opened_events] == [c.id.hex() for c in opened]
    for conn, event in zip(opened, opened_events, strict=True):
        assert event["peerId"] == conn.peer_id
        assert event["openTs"] == conn.timeline.open_ts
        assert event["localAddr"] == conn.endpoints.src_multiaddr
        assert event["remoteAddr"] == conn.endpoints.dst_multiaddr
        assert event["multiplexer"] == conn.attribs.multiplexer
        assert event["direction"] == ("outbound" if conn.role == pb.INITIATOR else "inbound")
    stream_opened = {e["streamId"] for e in named(evs, "StreamOpened")}
    assert {s.id.hex() for c in opened for s in c.streams.streams} <= stream_opened

    ids = {c.id for c in closed}
    while True:
        state = h.state()
        by_id = {c.id: c for c in state.subsystems.connections}
        age = state.instant_ts - first.instant_ts
        if age < lifetime:
            for conn_id in ids:
                conn = by_id[conn_id]
                assert conn.status == pb.CLOSED
                assert conn.timeline.close_ts == first.instant_ts
                assert len(conn.streams.streams) == 0 and conn.HasField("streams")
                assert conn.traffic.traffic_in.inst_bw == 0
        else:
            assert not ids & set(by_id)
            break
        assert sum(c.status == pb.ACTIVE for c in state.subsystems.connections) == 20


def test_events_match_the_state() -> None:
    h = Harness(connections=30, streams=4, churn=0.1)
    runtime = h.source.runtime()
    for _ in range(5):
        state = h.state()
        evs = h.take_events()
        check_events(runtime, evs)
        assert all(e.ts == state.instant_ts for e in evs)
        streams = {s.id.hex(): (c, s) for c, s in all_streams(state)}
        for event in named(evs, "StreamOpened"):
            conn, stream = streams[event["streamId"]]
            assert stream.status == pb.ACTIVE and conn.id.hex() == event["connId"]
            assert event["protocol"] == stream.protocol
            assert event["openTs"] == stream.timeline.open_ts
            assert event["peerId"] == conn.peer_id
        for event in named(evs, "StreamClosed"):
            conn, stream = streams[event["streamId"]]
            assert stream.status == pb.CLOSED
            assert stream.timeline.close_ts == event["closeTs"] == state.instant_ts
            assert event["bytesIn"] == stream.traffic.traffic_in.cum_bytes
            assert event["bytesOut"] == stream.traffic.traffic_out.cum_bytes
        closed_now = {
            c.id.hex()
            for c in state.subsystems.connections
            if c.status == pb.CLOSED and c.timeline.close_ts == state.instant_ts
        }
        assert {e["connId"] for e in named(evs, "ConnectionClosed")} == closed_now
        # Every CLOSED stream in this snapshot closed now and has its event.
        closed_streams = {s.id.hex() for _, s in all_streams(state) if s.status == pb.CLOSED}
        assert closed_streams == {e["streamId"] for e in named(evs, "StreamClosed")}
    assert h.source.suppressed_stream_events == 0


def test_stream_events_are_sampled_by_stream_above_the_cap() -> None:
    h = Harness(connections=200, streams=10, churn=0.1, max_stream_events_per_snapshot=100)
    opened: set[str] = set()
    for _ in range(6):
        h.state()
        evs = h.take_events()
        stream_events = named(evs, "StreamOpened") + named(evs, "StreamClosed")
        assert 30 <= len(stream_events) <= 200
        assert len(named(evs, "ConnectionOpened")) == len(named(evs, "ConnectionClosed")) == 20
        for event in named(evs, "StreamClosed"):
            if int(event["streamId"], 16) > 200 * 11:  # opened after the source started
                assert event["streamId"] in opened  # a sampled stream: both its events
        opened |= {e["streamId"] for e in named(evs, "StreamOpened")}
    assert h.source.suppressed_stream_events > 0


def test_active_count_and_streams_per_connection_stay_constant() -> None:
    h = Harness(connections=33, streams=5, churn=0.2)
    for step in (1_000, 0, 1_000, 1_000, 3_000):
        state = h.state(step)
        active = [c for c in state.subsystems.connections if c.status == pb.ACTIVE]
        assert len(active) == 33
        for conn in active:
            assert sum(s.status == pb.ACTIVE for s in conn.streams.streams) == 5


def test_interop_presence_rules_and_plausible_values() -> None:
    h = Harness(connections=30, streams=4, churn=0.1)
    runtime = h.source.runtime()
    assert runtime.implementation == IMPLEMENTATION
    assert runtime.version and runtime.platform
    assert len(runtime.peer_id) == 52 and runtime.peer_id.startswith("12D3KooW")
    assert ID.from_base58(runtime.peer_id).to_base58() == runtime.peer_id
    names = [t.name for t in runtime.event_types]
    expected = (
        event_specs.CONNECTION_EVENTS
        + event_specs.DHT_EVENTS
        + event_specs.NODE_EVENTS
        + event_specs.PUBSUB_EVENTS
    )
    assert names == [spec.name for spec in expected]
    assert list(runtime.event_types) == [spec.to_pb() for spec in expected]
    for _ in range(4):
        state = h.state()
        assert state.traffic.HasField("traffic_in") and state.traffic.HasField("traffic_out")
        for conn in state.subsystems.connections:
            for field in ("endpoints", "timeline", "traffic", "attribs", "streams"):
                assert conn.HasField(field), field
            assert conn.traffic.HasField("traffic_in") and conn.traffic.HasField("traffic_out")
            assert conn.transport_id == b"tcp"
            assert conn.attribs.multiplexer in {"/yamux/1.0.0", "/mplex/6.7.0"}
            assert conn.attribs.encryption == "/noise"
            assert 100_000 <= conn.latency_ns <= 1_000_000_000
            assert ID.from_base58(conn.peer_id).to_base58() == conn.peer_id
            for addr in (conn.endpoints.src_multiaddr, conn.endpoints.dst_multiaddr):
                assert "/tcp/" in addr
                multiaddr.Multiaddr(addr)
            timeline = conn.timeline
            assert 0 < timeline.open_ts <= timeline.upgraded_ts <= state.instant_ts
            assert (timeline.close_ts != 0) == (conn.status == pb.CLOSED)
            for stream in conn.streams.streams:
                assert stream.HasField("timeline") and stream.HasField("traffic")
                assert stream.traffic.HasField("traffic_in")
                assert stream.traffic.HasField("traffic_out")
                assert stream.protocol in PROTOCOLS
                assert timeline.upgraded_ts <= stream.timeline.open_ts <= state.instant_ts
                assert (stream.timeline.close_ts != 0) == (stream.status == pb.CLOSED)


def test_dht_table_shape_and_ages() -> None:
    h = Harness(dht_peers=40)
    first = h.state().subsystems.dht
    assert first.protocol == "/ipfs/kad/1.0.0" and first.enabled
    assert first.start_ts == START_MS
    assert (first.params.k, first.params.alpha) == (20, 3)
    assert [b.cpl for b in first.buckets] == list(range(len(first.buckets)))
    assert [len(b.peers) for b in first.buckets] == dht_bucket_sizes(40)
    peers = [p for b in first.buckets for p in b.peers]
    assert len({p.peer_id for p in peers}) == 40
    statuses = [p.status for p in peers]
    assert statuses.count(pb.DHT.PeerInDHT.ACTIVE) >= 30
    ages = {p.peer_id: p.age_in_bucket for p in peers}
    for _ in range(20):
        dht = h.state(1_500).subsystems.dht
        now_peers = [p for b in dht.buckets for p in b.peers]
        assert len(now_peers) == 40
        for peer in now_peers:
            if peer.peer_id in ages:
                assert peer.age_in_bucket == ages[peer.peer_id] + 1_500
            else:
                assert peer.age_in_bucket == 0
                assert peer.status == pb.DHT.PeerInDHT.CANDIDATE
        ages = {p.peer_id: p.age_in_bucket for p in now_peers}
        assert dht.HasField("incoming_queries") and dht.HasField("outgoing_queries")


# ---------------------------------------------------------------------- scale


def test_five_thousand_connections_with_ten_streams_each() -> None:
    h = Harness(connections=5_000, streams=10)
    timings = []
    for _ in range(3):
        h.clock.advance(1_000)
        began = time.perf_counter()
        state = h.source.state()
        timings.append(time.perf_counter() - began)
    conns = state.subsystems.connections
    active = [c for c in conns if c.status == pb.ACTIVE]
    assert len(active) == 5_000
    assert sum(c.status == pb.CLOSED for c in conns) == 3 * 100  # round(0.02 * 5000) per call
    assert all(sum(s.status == pb.ACTIVE for s in c.streams.streams) == 10 for c in active)
    size = state.ByteSize()
    print(
        f"\n5000x10 state(): {', '.join(f'{t * 1000:.0f} ms' for t in timings)}; "
        f"{size / 1e6:.1f} MB serialized"
    )


# ----------------------------------------------------------------------- run()


async def test_run_emits_dht_queries_at_the_configured_rate(
    autojump_clock: trio.abc.Clock, fixtures_dir: Any
) -> None:
    h = Harness(events_per_second=20, dht_peers=40)
    runtime = h.source.runtime()
    dht_peers = {p.peer_id for b in h.state().subsystems.dht.buckets for p in b.peers}
    h.take_events()  # the snapshot's connection and stream events
    async with trio.open_nursery() as nursery:
        await nursery.start(h.source.simulate_queries)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    evs = h.take_events()
    assert 199 <= len(evs) <= 201
    check_events(runtime, evs)
    assert {e.type.name for e in evs} == {"InboundDHTQuery", "OutboundDHTQuery"}
    # The toolkit's keys and value kinds, the peer named as in the routing table.
    shape = ToolkitDhtShape.read(fixtures_dir / "sample-1min.mock")
    for event in evs:
        shape.check(event, dht_peer_ids=dht_peers)
    inbound = named(evs, "InboundDHTQuery")
    outbound = named(evs, "OutboundDHTQuery")
    assert {e["result"] for e in inbound} == {"SUCCESS", "ERROR"}
    assert {e["result"] for e in outbound} == {"SUCCESS", "ERROR", "TIMEOUT"}
    assert {e["trigger"] for e in inbound} == {"API"}
    assert {(e["messageType"], e["trigger"]) for e in outbound} >= {
        ("FIND_NODE", "DISCOVERY"), ("FIND_NODE", "API"), ("GET_VALUE", "API")
    }  # fmt: skip
    for e in inbound + outbound:
        find_node = e["messageType"] == "FIND_NODE"
        assert (
            (ID.from_base58(e["targetPeerId"]) is not None)
            if find_node
            else (e["targetPeerId"].startswith("1220") and len(e["targetPeerId"]) == 68)
        )
    # ts: when it was sent or received, totalTimeMs before the (fake) clock's now.
    assert all(e.ts + content(e)["totalTimeMs"] == h.clock.now for e in evs)
    dht = h.state().subsystems.dht
    incoming, outgoing = dht.incoming_queries, dht.outgoing_queries
    assert incoming.success + incoming.error + incoming.timeout == len(inbound)
    assert outgoing.success + outgoing.error + outgoing.timeout == len(outbound)
    assert outgoing.timeout == sum(e["result"] == "TIMEOUT" for e in outbound)


async def test_run_with_zero_rate_or_no_dht_returns_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    for options in ({"events_per_second": 0}, {"dht_peers": 0}):
        h = Harness(**options)
        with trio.fail_after(1):
            async with trio.open_nursery() as nursery:
                await nursery.start(h.source.simulate_queries)
        assert h.events == []


async def test_run_stops_on_cancellation_and_survives_a_failing_sink(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(events_per_second=100)

    def broken(event: pb.Event) -> None:
        raise RuntimeError("sink failure")

    h.source.set_event_sink(broken)
    with trio.move_on_after(1):
        await h.source.simulate_queries()
    assert 99 <= h.source.dht_queries <= 101
    assert "event sink failed" in caplog.text  # logged, not raised
    h.source.set_event_sink(None)
    h.state()  # still works, no sink


# ------------------------------------------------------------ through a server


async def test_served_end_to_end() -> None:
    """Runtime, snapshots and both kinds of events reach a client of a real server."""
    source = SyntheticSource(SyntheticOptions(connections=100, streams=4, churn=0.05, seed=1))
    config = ServerConfig(port=0, interval_ms=100)
    with trio.fail_after(20):
        async with open_introspection_server(source, config) as server:
            async with connect(server.url) as client:
                runtime = (await client.receive_kind("runtime")).message.runtime
                assert runtime.peer_id == source.peer_id
                state = (await client.receive_kind("state")).message.state
                assert sum(c.status == pb.ACTIVE for c in state.subsystems.connections) == 100
                await client.send(Command.PUSH_ENABLE, Source.EVENTS)
                names: set[str] = set()
                received: list[pb.Event] = []
                while not {"ConnectionOpened", "OutboundDHTQuery"} <= names:
                    message = await client.receive()
                    if message.kind == "event":
                        received.append(message.message.event)
                        names.add(message.message.event.type.name)
                assert names <= {t.name for t in runtime.event_types}
                for event in received:  # declared types travel by name only
                    assert not event.type.property_types
                    assert set(content(event)) == {
                        p.name
                        for t in runtime.event_types
                        if t.name == event.type.name
                        for p in t.property_types
                    }
