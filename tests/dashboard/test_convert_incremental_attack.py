"""Attack on the incremental conversion: hand-built hostile sequences.

Each snapshot's JSON form and text, converted incrementally, must equal a
from-scratch conversion of the same snapshot (nothing kept), whatever the
sequence does to a connection of a given id between snapshots: other content
under the same id, fields cleared, identify data vanishing or present but
empty, the relayed oneof switching between its two members, streams duplicated
byte for byte, ids longer than the cap sharing a prefix, unknown enum numbers,
numbers beyond 2^53, hostile strings (markup, ``__proto__``, ``constructor``,
``""``, long ones, line separators)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libp2p_introspection.dashboard.caps import dumps
from libp2p_introspection.dashboard.convert import SnapshotConverter
from libp2p_introspection.protocol import pb

START_MS = 1_700_000_000_000

TEXT = st.sampled_from(
    ["", "__proto__", "constructor", "<img src=x onerror=alert(1)>", '"\\', "\u2028\u2029",
     "a" * 1030, "é" * 300, "/ipfs/id/1.0.0", "hasOwnProperty", "toString"]
)  # fmt: skip
IDS = st.sampled_from(
    [b"", b"\x01", b"\x02", b"\x00" * 64 + b"a", b"\x00" * 64 + b"b", b"\xff" * 70]
)
NUM = st.sampled_from([0, 1, 2**53, 2**53 + 1, 2**63, 2**64 - 1])
ENUM = st.sampled_from([0, 1, 2, 3, 7, 99])


@st.composite
def _stream(draw: st.DrawFn) -> pb.Stream:
    s = pb.Stream(id=draw(IDS), protocol=draw(TEXT), role=draw(ENUM), status=draw(ENUM))
    s.timeline.open_ts = draw(NUM)
    s.timeline.close_ts = draw(NUM)
    s.latency_ns = draw(NUM)
    s.traffic.traffic_in.cum_bytes = draw(NUM)
    s.traffic.traffic_out.inst_bw = draw(NUM)
    if draw(st.booleans()):
        s.conn.conn_id = draw(IDS)
    return s


@st.composite
def _connection(draw: st.DrawFn) -> pb.Connection:
    c = pb.Connection(id=draw(IDS), peer_id=draw(TEXT), status=draw(ENUM), role=draw(ENUM))
    c.transport_id = draw(st.sampled_from([b"", b"\x06", b"tcp", b"\xff" * 1100]))
    c.endpoints.src_multiaddr = draw(TEXT)
    c.endpoints.dst_multiaddr = draw(TEXT)
    c.attribs.multiplexer = draw(TEXT)
    c.attribs.encryption = draw(TEXT)
    c.timeline.open_ts = draw(NUM)
    c.timeline.upgraded_ts = draw(NUM)
    c.timeline.close_ts = draw(NUM)
    c.latency_ns = draw(NUM)
    c.traffic.traffic_in.cum_bytes = draw(NUM)
    c.traffic.traffic_out.cum_packets = draw(NUM)
    relayed = draw(st.sampled_from(["none", "conn_id", "conn"]))
    if relayed == "conn_id":
        c.conn_id = draw(IDS)
    elif relayed == "conn":
        c.conn.id = draw(IDS)
    c.user_provided_tags.extend(draw(st.lists(TEXT, max_size=3)))
    peer = draw(st.sampled_from(["absent", "empty", "full"]))
    if peer == "empty":
        c.peer.SetInParent()
    elif peer == "full":
        c.peer.agent_version = draw(TEXT)
        c.peer.protocols.extend(draw(st.lists(TEXT, max_size=3)))
        c.peer.observed_addr = draw(TEXT)
    streams = draw(st.lists(_stream(), max_size=4))
    if streams and draw(st.booleans()):
        streams.append(streams[0])  # the same stream twice, byte for byte
    c.streams.streams.extend(streams)
    return c


@st.composite
def _state(draw: st.DrawFn) -> pb.State:
    state = pb.State(instant_ts=draw(st.sampled_from([START_MS, START_MS + 1_000, 2**64 - 1])))
    state.subsystems.connections.extend(draw(st.lists(_connection(), max_size=4)))
    return state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states=st.lists(_state(), min_size=2, max_size=6))
def test_hostile_sequences_convert_incrementally_as_from_scratch(states):
    incremental = SnapshotConverter()
    scratch = SnapshotConverter()
    for state in states:
        data, text = incremental.convert_text(state)
        scratch._connections.clear()
        expected, expected_text = scratch.convert_text(state)
        assert data == expected
        assert text == expected_text == dumps(expected)


def test_another_peer_at_the_url_or_a_recording_starts_the_page_afresh():
    """The node at the URL replaced by another peer (same connection ids, other
    content), or a recording opened while deltas flow: the next message is a whole
    snapshot of the new source, and no hello names a base of the old one."""
    import json

    from libp2p_introspection.dashboard.browsers import BrowserHub
    from libp2p_introspection.dashboard.model import DashboardModel
    from libp2p_introspection.dashboard.recording import RecordingInfo
    from libp2p_introspection.dashboard.store import Store

    def state(ts: int, peer: str) -> pb.State:
        s = pb.State(instant_ts=ts)
        c = s.subsystems.connections.add(id=b"\x01", peer_id=peer, status=pb.ACTIVE)
        c.streams.streams.add(id=b"\x01", protocol=f"/of/{peer}")
        return s

    model = DashboardModel(Store(), BrowserHub())
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    model.feed_runtime(pb.Runtime(peer_id="QmOld"))
    for k in range(3):
        model.feed_state(state(START_MS + k, "old"))
    assert json.loads(sent[-1])["t"] == "delta"
    model.feed_runtime(pb.Runtime(peer_id="QmNew"))
    assert json.loads(model.hello())[0]["seq"] is None
    model.feed_state(state(START_MS + 3, "new"))
    message = json.loads(sent[-1])
    assert message["t"] == "snapshot"
    assert message["data"]["conns"][0]["peer"] == "new"
    assert model.store.latest.data["conns"][0]["streams"][0]["proto"] == "/of/new"
    model.feed_state(state(START_MS + 4, "new"))
    assert json.loads(sent[-1])["t"] == "delta"
    recorded = Store()
    recorded.add_snapshot(SnapshotConverter().convert(state(START_MS, "rec")))
    model.show_recording(recorded, RecordingInfo("r", 1, 1, 0, 0, False))
    hello = json.loads(model.hello())[0]
    assert hello["seq"] is None and hello["latest"]["conns"][0]["peer"] == "rec"
