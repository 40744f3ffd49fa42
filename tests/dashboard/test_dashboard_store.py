"""The dashboard's conversion to JSON and its bounded, time-indexed store (pure, no sockets)."""

from __future__ import annotations

import json

import pytest

from libp2p_introspection.dashboard.caps import dumps
from libp2p_introspection.dashboard.convert import SnapshotConverter, summarize
from libp2p_introspection.dashboard.convert_events import event_to_json, runtime_to_json
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.protocol import pb


def make_state(ts: int, conns: list[tuple[bytes, str, int]] = (), *, dht: bool = False) -> pb.State:
    """A snapshot at ``ts`` with connections ``(id, peer, status)``, one stream each."""
    state = pb.State(instant_ts=ts, start_ts=max(ts - 1000, 0), snapshot_duration_ms=1000)
    state.traffic.traffic_in.cum_bytes = ts
    state.traffic.traffic_in.inst_bw = 10
    state.traffic.traffic_out.inst_bw = 20
    for conn_id, peer, status in conns:
        conn = state.subsystems.connections.add(id=conn_id, peer_id=peer, status=status)
        conn.transport_id = b"tcp"
        conn.endpoints.src_multiaddr = "/ip4/127.0.0.1/tcp/1"
        conn.endpoints.dst_multiaddr = "/ip4/127.0.0.1/tcp/2"
        conn.timeline.open_ts = max(ts - 5000, 0)
        conn.attribs.multiplexer = "/yamux/1.0.0"
        conn.attribs.encryption = "/noise"
        conn.traffic.traffic_in.cum_bytes = 100
        conn.traffic.traffic_in.inst_bw = 7
        conn.latency_ns = 1_500_000
        stream = conn.streams.streams.add(id=b"\x01", protocol="/ipfs/ping/1.0.0")
        stream.timeline.open_ts = max(ts - 1000, 0)
    if dht:
        state.subsystems.dht.protocol = "/ipfs/kad/1.0.0"
        state.subsystems.dht.enabled = True
        state.subsystems.dht.params.k = 20
        bucket = state.subsystems.dht.buckets.add(cpl=3)
        bucket.peers.add(peer_id="QmPeer", status=pb.DHT.PeerInDHT.MISSING, age_in_bucket=1234)
        state.subsystems.dht.incoming_queries.success = 5
        state.subsystems.dht.outgoing_queries.timeout = 2
    return state


def test_snapshot_json_has_every_view_field_in_readable_form():
    data = SnapshotConverter().convert(make_state(10_000, [(b"\xab\xcd", "12D3KooWA", pb.ACTIVE)], dht=True))
    json.dumps(data)  # plain JSON
    assert data["ts"] == 10_000 and data["dur"] == 1000
    assert data["traffic"]["bwIn"] == 10 and data["traffic"]["bwOut"] == 20
    (conn,) = data["conns"]
    assert conn["id"] == "abcd"
    assert conn["peer"] == "12D3KooWA"
    assert conn["status"] == "ACTIVE" and conn["role"] == "INITIATOR"
    assert conn["transport"] == "tcp" and conn["mux"] == "/yamux/1.0.0" and conn["sec"] == "/noise"
    assert conn["lat"] == 1_500_000 and conn["in"] == 100 and conn["bwIn"] == 7
    assert conn["streams"][0]["proto"] == "/ipfs/ping/1.0.0"
    assert conn["streams"][0]["id"] == "01"
    assert data["dht"]["buckets"] == [{"cpl": 3, "peers": [{"peer": "QmPeer", "status": "MISSING", "age": 1234}]}]
    assert data["dht"]["qin"]["success"] == 5 and data["dht"]["qout"]["timeout"] == 2
    summary = summarize(data)
    assert summary["conns"] == 1 and summary["streams"] == 1 and summary["dhtPeers"] == 1


def test_binary_transport_ids_are_shown_as_hex():
    state = make_state(1, [(b"\x01", "p", pb.ACTIVE)])
    state.subsystems.connections[0].transport_id = b"\x02\x00\x00\x00"
    assert SnapshotConverter().convert(state)["conns"][0]["transport"] == "02000000"


def test_a_vanished_connection_is_kept_as_closed_until_it_ages_out():
    converter = SnapshotConverter(closed_ttl_ms=3_000)
    converter.convert(make_state(10_000, [(b"\x01", "a", pb.ACTIVE), (b"\x02", "b", pb.ACTIVE)]))
    later = converter.convert(make_state(11_000, [(b"\x01", "a", pb.ACTIVE)]))
    gone = [c for c in later["conns"] if c["id"] == "02"]
    assert len(gone) == 1
    assert gone[0]["status"] == "CLOSED" and gone[0]["gone"] is True
    assert gone[0]["close"] == 10_000  # last seen
    assert gone[0]["bwIn"] == 0 and gone[0]["streams"] == []
    assert any(c["id"] == "02" for c in converter.convert(make_state(13_000, [(b"\x01", "a", pb.ACTIVE)]))["conns"])
    aged = converter.convert(make_state(13_500, [(b"\x01", "a", pb.ACTIVE)]))
    assert [c["id"] for c in aged["conns"]] == ["01"]


def test_runtime_and_events():
    runtime = pb.Runtime(implementation="py-libp2p", version="0.8.1", platform="Linux", peer_id="12D3")
    event_type = runtime.event_types.add(name="PeerConnecting")
    event_type.property_types.add(name="peer", type=pb.EventType.EventProperty.PEERID)
    data = runtime_to_json(runtime)
    assert data["peerId"] == "12D3" and data["implementation"] == "py-libp2p"
    assert data["eventTypes"] == [{"name": "PeerConnecting", "properties": [{"name": "peer", "type": "PEERID", "multiple": False}]}]
    event = pb.Event(ts=5, content='{"peer": "x"}')
    event.type.name = "PeerConnecting"
    assert event_to_json(event) == {"seq": 0, "ts": 5, "type": "PeerConnecting", "content": {"peer": "x"}}
    event.content = "not json"
    assert event_to_json(event)["content"] == "not json"


def snapshot(ts: int) -> dict:
    return SnapshotConverter().convert(make_state(ts))


def event(ts: int, kind: str = "A") -> dict:
    return {"seq": 0, "ts": ts, "type": kind, "content": {}}


def test_store_keeps_the_retention_window_by_source_time():
    store = Store(retention_ms=5_000)
    for ts in range(1_000, 20_001, 1_000):
        store.add_snapshot(snapshot(ts))
    assert store.timeline() == list(range(15_000, 20_001, 1_000))
    assert store.latest.ts == 20_000 and store.oldest_ts == 15_000
    assert json.loads(store.latest.text)["ts"] == 20_000
    assert [s["ts"] for s in store.series()] == store.timeline()


def test_store_keeps_the_newest_snapshot_whatever_the_window():
    store = Store(retention_ms=1_000)
    store.add_snapshot(snapshot(1_000))
    store.add_snapshot(snapshot(100_000))
    assert store.timeline() == [100_000]


def test_store_count_bound_and_no_time_bound():
    store = Store(retention_ms=None, max_snapshots=3)
    for ts in (1, 2, 3, 4, 5):
        store.add_snapshot(snapshot(ts))
    assert store.timeline() == [3, 4, 5]


def test_store_at_returns_the_newest_snapshot_at_or_before_a_moment():
    store = Store(retention_ms=None)
    assert store.at(5) is None
    for ts in (1_000, 2_000, 3_000):
        store.add_snapshot(snapshot(ts))
    assert store.at(2_000).ts == 2_000
    assert store.at(2_999).ts == 2_000
    assert store.at(10).ts == 1_000  # before the first: the first
    assert store.at(99_999).ts == 3_000


def test_store_byte_bound_keeps_the_newest_snapshots():
    size = len(Store().add_snapshot(snapshot(1_000)).text)
    store = Store(retention_ms=None, max_bytes=3 * size + size // 2)
    for ts in range(1_000, 9_000, 1_000):
        store.add_snapshot(snapshot(ts))
    assert store.timeline() == [6_000, 7_000, 8_000]
    assert store.describe()["bytes"] == sum(len(s.text) for s in store.snapshots())
    tiny = Store(retention_ms=None, max_bytes=1)
    tiny.add_snapshot(snapshot(1_000))
    tiny.add_snapshot(snapshot(2_000))
    assert tiny.timeline() == [2_000]  # the newest stays whatever the bound


def test_store_inserts_out_of_order_snapshots_in_place_and_replaces_duplicates():
    store = Store(retention_ms=None)
    for ts in (1_000, 3_000, 2_000, 3_000):
        store.add_snapshot(snapshot(ts))
    assert store.timeline() == [1_000, 2_000, 3_000]
    assert len(store) == 3


def test_store_events_are_numbered_counted_and_pruned_by_window_and_count():
    store = Store(retention_ms=5_000, max_events=4)
    store.add_snapshot(snapshot(10_000))
    for ts, kind in ((9_000, "A"), (9_500, "B"), (9_800, "A")):
        store.add_event(event(ts, kind))
    assert [e["seq"] for e in store.events()] == [1, 2, 3]
    assert store.event_counts() == {"A": 2, "B": 1}
    store.add_snapshot(snapshot(14_600))  # horizon 9_600: the first two go
    assert [e["seq"] for e in store.events()] == [3]
    assert store.event_counts() == {"A": 1}
    for ts in range(14_000, 14_005):
        store.add_event(event(ts, "C"))
    assert store.event_count == 4  # the count bound
    assert store.event_counts() == {"C": 4}
    assert [e["ts"] for e in store.events(types=["C"], until_ts=14_002)] == [14_001, 14_002]
    assert [e["ts"] for e in store.events(limit=2)] == [14_003, 14_004]
    assert [e["seq"] for e in store.events(after_seq=7)] == [8]


def test_store_declares_event_types_from_runtime_and_first_events():
    store = Store()
    store.set_runtime({"peerId": "x", "eventTypes": [{"name": "A", "properties": []}]})
    store.add_event(event(1, "B"), {"name": "B", "properties": [{"name": "p", "type": "STRING", "multiple": False}]})
    assert set(store.event_types) == {"A", "B"}


def test_connection_series_follows_one_connection_through_stored_snapshots():
    store = Store(retention_ms=None)
    converter = SnapshotConverter()
    store.add_snapshot(converter.convert(make_state(1_000, [(b"\x01", "a", pb.ACTIVE)])))
    store.add_snapshot(converter.convert(make_state(2_000, [(b"\x02", "b", pb.ACTIVE)])))
    store.add_snapshot(converter.convert(make_state(3_000, [(b"\x01", "a", pb.ACTIVE)])))
    store.add_snapshot(SnapshotConverter().convert(make_state(4_000, [(b"\x02", "b", pb.ACTIVE)])))
    points = store.connection_series("01")
    # At 2_000 it was missing from the server's snapshot: carried as closed, no traffic.
    assert [(p["ts"], p["status"], p["bwIn"]) for p in points] == [
        (1_000, "ACTIVE", 7), (2_000, "CLOSED", 0), (3_000, "ACTIVE", 7),
    ]
    assert store.connection_series("ff") == []
    store.retention_ms = 1_500  # the series follow the stored snapshots out
    store.prune()
    assert [p["ts"] for p in store.connection_series("01")] == [3_000]
    assert store.connection_series("02") != []


def test_clear_forgets_everything():
    store = Store()
    store.set_runtime({"peerId": "x", "eventTypes": []})
    store.add_snapshot(snapshot(1))
    store.add_event(event(1))
    store.clear()
    assert store.runtime is None and len(store) == 0 and store.event_count == 0 and store.latest is None


@pytest.mark.parametrize("retention", [None, 60_000])
def test_describe_reports_sizes(retention):
    store = Store(retention_ms=retention)
    store.add_snapshot(snapshot(5))
    described = store.describe()
    assert described.pop("bytes") == len(store.latest.text)
    assert described == {
        "snapshots": 1, "events": 0, "eventsDropped": 0, "eventBytes": 0, "oldest": 5, "latest": 5,
        "retentionMs": retention, "rawBytes": 0, "eventRawBytes": 0,
    }


# ------------------------------------------------ what a hostile source can pin


NEVER = 2**64 - 1  # the largest uint64 timestamp


def _ids_state(ts: int, ids: range, close_ts: int = 0) -> pb.State:
    state = pb.State(instant_ts=ts)
    for i in ids:
        conn = state.subsystems.connections.add(id=i.to_bytes(4, "big"))
        conn.timeline.close_ts = close_ts
    return state


@pytest.mark.parametrize("clock", ["never closing", "frozen clock"])
def test_carried_connections_never_make_a_snapshot_pass_the_connection_limit(clock):
    # Each snapshot held 10,000 new connections (within the limit) that then vanished;
    # with close_ts = 2^64 - 1, or one instant_ts for all, the converter carried every one
    # for ever: 40 snapshots made one of 400,000 connections (113 MB, 1.7 GB, 75 s).
    converter = SnapshotConverter(max_connections=50)
    for k in range(20):
        ts = 1_000 if clock == "frozen clock" else 1_000 + 1_000 * k
        data = converter.convert(_ids_state(ts, range(k * 20, k * 20 + 20), NEVER))
        assert len(data["conns"]) <= 50
    assert len(data["conns"]) == 50  # still shows the newest that vanished, within the limit
    carried = [c for c in data["conns"] if c["gone"]]
    # The 30 that vanished most recently (the previous snapshot's 20, then 10 before): the
    # ones that vanished longest ago went first.
    assert sorted(int(c["id"], 16) for c in carried) == list(range(350, 380))
    assert all(c["close"] < NEVER for c in carried)  # shown closed when last seen


def test_the_model_holds_live_snapshots_to_its_limits():
    from libp2p_introspection.dashboard.model import DashboardModel
    from libp2p_introspection.protocol.wire import RecordLimits

    model = DashboardModel(Store(), limits=RecordLimits(max_connections=30))
    for k in range(10):
        model.feed_state(_ids_state(1_000 + 1_000 * k, range(k * 20, k * 20 + 20), NEVER))
    assert model.store.latest.summary["conns"] == 30


def test_a_frozen_clock_cannot_keep_a_vanished_connection_for_ever():
    from libp2p_introspection.dashboard.convert import DEFAULT_CLOSED_TTL_SNAPSHOTS

    converter = SnapshotConverter()
    converter.convert(_ids_state(5_000, range(2)))
    for _ in range(DEFAULT_CLOSED_TTL_SNAPSHOTS):  # instant_ts never moves: time says "kept"
        data = converter.convert(_ids_state(5_000, range(1)))
        assert [c["id"] for c in data["conns"]] == ["00000000", "00000001"]
    data = converter.convert(_ids_state(5_000, range(1)))
    assert [c["id"] for c in data["conns"]] == ["00000000"]


def test_a_close_ts_in_the_far_future_ages_from_when_the_connection_was_last_seen():
    converter = SnapshotConverter(closed_ttl_ms=3_000)
    converter.convert(_ids_state(10_000, range(2), NEVER))
    data = converter.convert(_ids_state(11_000, range(1)))
    (gone,) = [c for c in data["conns"] if c["gone"]]
    assert gone["close"] == 10_000
    assert len(converter.convert(_ids_state(13_000, range(1)))["conns"]) == 2
    # Time going back neither keeps it longer nor brings it back.
    assert len(converter.convert(_ids_state(13_500, range(1)))["conns"]) == 1
    assert len(converter.convert(_ids_state(9_000, range(1)))["conns"]) == 1


def test_a_connection_that_closed_honestly_is_shown_closed_at_its_close_ts():
    converter = SnapshotConverter(closed_ttl_ms=3_000)
    converter.convert(_ids_state(10_000, range(2), 9_500))
    data = converter.convert(_ids_state(11_000, range(1)))
    assert [(c["id"], c["close"], c["gone"]) for c in data["conns"]] == [
        ("00000000", 0, False), ("00000001", 9_500, True),
    ]
    assert len(converter.convert(_ids_state(12_500, range(1)))["conns"]) == 2
    assert len(converter.convert(_ids_state(12_600, range(1)))["conns"]) == 1  # 3 s after 9_500
    # One that comes back (the server kept it after all) is shown once, as the server says.
    converter.convert(_ids_state(13_000, range(2)))
    converter.convert(_ids_state(14_000, range(1)))
    data = converter.convert(_ids_state(15_000, range(2)))
    assert [(c["id"], c["gone"]) for c in data["conns"]] == [("00000000", False), ("00000001", False)]


def test_events_are_bounded_by_their_size_too():
    # 50,000 events of 8 MB each were kept (the bound was a count): 5.6 GB in 50 s.
    size = len(dumps({"seq": 1, "ts": 1, "type": "A", "content": "x" * 1_000}))
    store = Store(retention_ms=None, max_event_bytes=3 * size + size // 2)
    for n in range(6):
        store.add_event({"seq": 0, "ts": n, "type": "A", "content": "x" * 1_000})
    assert [e["ts"] for e in store.events()] == [3, 4, 5]  # the newest that fit
    assert store.describe()["eventBytes"] == sum(len(e.text) for e in store.stored_events())
    assert store.describe()["eventBytes"] <= store.max_event_bytes
    assert store.events_dropped == 3 and store.event_counts() == {"A": 3}
    store.add_event({"seq": 0, "ts": 9, "type": "B", "content": "x" * 4 * size})
    assert [e["ts"] for e in store.events()] == [3, 4, 5]  # larger than the bound: not kept
    assert store.events_dropped == 4 and store.event_counts() == {"A": 3}


def test_the_default_event_bound_holds_a_flood_of_huge_events():
    store = Store()
    store.add_snapshot(snapshot(1_000))
    for _ in range(12):
        store.add_event({"seq": 0, "ts": NEVER, "type": "Big", "content": "A" * (8 << 20)})
    assert store.describe()["eventBytes"] <= 64 * 1024 * 1024
    assert 0 < store.event_count < 12


def test_an_event_stamped_far_in_the_future_ages_as_if_it_came_when_it_arrived():
    # It sat at the front of the queue for ever, and every event behind it with it.
    store = Store(retention_ms=5_000)
    store.add_snapshot(snapshot(10_000))
    store.add_event(event(NEVER, "Future"))
    store.add_event(event(10_500))
    assert [e["ts"] for e in store.events()] == [NEVER, 10_500]  # shown while in the window
    store.add_snapshot(snapshot(15_800))  # the window now starts at 10_800
    assert store.events() == [] and store.event_counts() == {}


def test_a_snapshot_stamped_far_in_the_future_is_dropped_by_the_next_honest_one():
    # The newest snapshot set the store's time: one stamped 2^64 - 1 stayed the latest for
    # ever, every later snapshot was dropped on arrival, and so was every event.
    store = Store(retention_ms=5_000)
    for ts in (1_000, 2_000):
        store.add_snapshot(snapshot(ts))
    store.add_snapshot(SnapshotConverter().convert(_ids_state(NEVER, range(1))))
    assert store.timeline() == [NEVER]  # the source's clock jumped: the window moved with it
    store.add_snapshot(snapshot(3_000))
    assert store.timeline() == [3_000]
    assert store.latest.ts == 3_000 and store.connection_series("00000000") == []
    store.add_event(event(3_100))
    assert [e["ts"] for e in store.events()] == [3_100]
    store.add_snapshot(snapshot(9_000))
    assert store.timeline() == [9_000]
