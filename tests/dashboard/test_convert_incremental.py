"""The dashboard's incremental conversion (:class:`.convert_swarm.ConnectionCache`) is
never wrong: over sequences of the mock node's snapshots (its churn: connections
opening, closing and vanishing, streams replaced, traffic moving) changed the ways a
real source changes them (identify arriving, tags, a late protocol, streams reordered,
connections vanishing without a close, a duplicated id, a snapshot sent again, time
going back, a new source, a snapshot over the budget), each snapshot's JSON form and
text equal a from-scratch conversion's. And what it keeps is one snapshot's connections,
no more, shared only where nothing changed."""

from __future__ import annotations

import gc
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libp2p_introspection.dashboard.caps import dumps
from libp2p_introspection.dashboard.convert import SnapshotConverter, SnapshotTooLarge
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.protocol import pb
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

START_MS = 1_700_000_000_000


def _source(seed: int, connections: int = 10, streams: int = 3) -> SyntheticSource:
    now = [START_MS]

    def clock() -> int:
        now[0] += 1_000
        return now[0]

    return SyntheticSource(
        SyntheticOptions(
            connections=connections, streams=streams, seed=seed, churn=0.3, dht_peers=8,
            pubsub_topics=2, resource_manager=True, clock_ms=clock,
            closed_connection_lifetime_ms=2_500,
        )
    )  # fmt: skip


def _changed(state: pb.State, how: str, n: int) -> pb.State:
    """A copy of ``state`` changed as a source may change it (``n`` picks what)."""
    out = pb.State()
    out.CopyFrom(state)
    conns = out.subsystems.connections
    if not conns:
        return out
    conn = conns[n % len(conns)]
    if how == "identified":
        conn.peer.agent_version = f"agent/{n}"
        conn.peer.protocols.append("/ipfs/id/1.0.0")
    elif how == "tagged":
        conn.user_provided_tags.append(f"tag\u2028{n}")
    elif how == "late protocol" and conn.streams.streams:
        stream = conn.streams.streams[n % len(conn.streams.streams)]
        stream.protocol = f'/late/"{n}"'
        stream.latency_ns += 1
    elif how == "reordered":
        streams = list(conn.streams.streams)
        del conn.streams.streams[:]
        conn.streams.streams.extend(reversed(streams))
    elif how == "vanished":
        del conns[n % len(conns)]
    elif how == "duplicate id":
        twin = conns.add()
        twin.CopyFrom(conn)
        twin.peer_id = "twin"
    elif how == "relayed":
        conn.conn_id = b"relay" + bytes([n % 256])
    elif how == "pubsub peers" and out.subsystems.pubsub.peers:
        peers = out.subsystems.pubsub.peers
        peer = peers[n % len(peers)]
        peer.score = float(n) / 7
        peer.topics.append(f"topic\u2028{n}")
        twin = peers.add()  # the same peer twice: the same bytes, converted alike
        twin.CopyFrom(peers[(n + 1) % len(peers)])
        if n % 3 == 0:
            del peers[0]
    elif how == "moved":
        conn.latency_ns = n
        conn.status = pb.CLOSED
    return out


HOW = st.sampled_from(
    ["next", "next", "next", "identified", "tagged", "late protocol", "reordered",
     "vanished", "duplicate id", "relayed", "moved", "pubsub peers", "again", "back in time", "reset",
     "over budget"]
)  # fmt: skip


def _from_scratch(converter: SnapshotConverter, state: pb.State) -> tuple[dict, str]:
    converter._connections.clear()  # nothing kept: every connection converted anew
    converter._pubsub_peers.reset()  # and every pubsub peer
    return converter.convert_text(state)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), steps=st.lists(st.tuples(HOW, st.integers(0, 99)),
                                                  min_size=1, max_size=14))  # fmt: skip
def test_incremental_conversion_equals_a_from_scratch_one(seed, steps):
    source = _source(seed)
    incremental = SnapshotConverter(closed_ttl_ms=3_000)
    scratch = SnapshotConverter(closed_ttl_ms=3_000)
    states = [source.state()]
    for how, n in steps:
        if how == "reset":  # a new node at the URL, a recording opened, the feed switched
            incremental.reset()
            scratch.reset()
            assert incremental.kept_connections == 0
            continue
        if how == "again":
            state = states[-1]
        elif how == "back in time":
            state = states[n % len(states)]
        elif how in ("next", "over budget"):
            state = source.state()
            states.append(state)
        else:
            state = _changed(source.state(), how, n)
            states.append(state)
        if how == "over budget":  # refused by both, and neither keeps a trace of it
            for converter in (incremental, scratch):
                converter.max_snapshot_bytes = 100
                with pytest.raises(SnapshotTooLarge):
                    converter.convert_text(state)
                converter.max_snapshot_bytes = 10**9
            continue
        data, text = incremental.convert_text(state)
        expected, expected_text = _from_scratch(scratch, state)
        assert data == expected
        assert text == expected_text == dumps(expected)
        ids = {conn.id for conn in state.subsystems.connections}
        assert incremental.kept_connections == len(ids)  # this snapshot's, no more


def test_an_unchanged_pubsub_peer_is_the_same_dict_and_a_changed_one_a_new_one():
    """A router's peers rarely change between snapshots: an unchanged one is not
    converted again (the same dict), a changed one is, and a reset forgets them."""
    source = _source(3)
    converter = SnapshotConverter()
    first = source.state()
    assert len(first.subsystems.pubsub.peers) >= 2
    second = pb.State()
    second.CopyFrom(first)
    second.instant_ts += 1_000
    second.subsystems.pubsub.peers[0].score += 1.5
    before = converter.convert(first)["pubsub"]["peers"]
    after = converter.convert(second)["pubsub"]["peers"]
    assert after[0] is not before[0] and after[0]["score"] == before[0]["score"] + 1.5
    assert all(a is b for a, b in zip(after[1:], before[1:], strict=True))
    converter.reset()
    fresh = converter.convert(second)["pubsub"]["peers"]
    assert fresh == after and all(a is not b for a, b in zip(fresh, after, strict=True))


def test_an_unchanged_connection_is_the_same_dict_and_a_changed_one_a_new_one():
    source = _source(7, connections=6, streams=4)
    first = source.state()
    second = pb.State()
    second.CopyFrom(first)
    second.instant_ts += 1_000
    moved = second.subsystems.connections[2]
    moved.streams.streams[1].traffic.traffic_in.cum_bytes += 10  # one stream moved
    converter = SnapshotConverter()
    before = converter.convert(first)["conns"]
    after = converter.convert(second)["conns"]
    assert after[2]["streams"][1]["in"] == before[2]["streams"][1]["in"] + 10
    for n, (old, new) in enumerate(zip(before, after, strict=True)):
        if n == 2:  # a new dict, its three unchanged streams the same ones
            assert new is not old and new["streams"][1] is not old["streams"][1]
            assert [new["streams"][k] is old["streams"][k] for k in (0, 2, 3)] == [True] * 3
        else:
            assert new is old


def test_what_is_kept_goes_with_the_connection_and_with_a_reset():
    source = _source(3, connections=20, streams=2)
    model = DashboardModel(Store())
    first = source.state()
    model.feed_state(first)
    count = len(first.subsystems.connections)
    assert model.converter.kept_connections == count >= 20
    fresh = pb.State(instant_ts=first.instant_ts + 1_000)
    fresh.subsystems.connections.add(id=b"only")
    model.feed_state(fresh)  # the others vanished: carried as closed, their conversions dropped
    assert model.converter.kept_connections == 1
    assert len(model.store.latest.data["conns"]) == count + 1
    model.feed_switched("ws://127.0.0.1:1/introspect")
    assert model.converter.kept_connections == 0


def test_what_is_kept_costs_the_garbage_collector_per_connection_not_per_stream():
    # Each stream is kept as tuples of atoms, which the collector stops tracking;
    # tracked objects per stream would make each full collection walk a 5,000x10
    # node's 50,000 more every few snapshots.
    source = _source(5, connections=40, streams=50)
    converter = SnapshotConverter()
    states = [source.state() for _ in range(3)]
    gc.collect()
    tracked = len(gc.get_objects())
    for state in states:
        streams = sum(len(c["streams"]) for c in converter.convert(state)["conns"])
    gc.collect()
    kept = len(gc.get_objects()) - tracked
    assert streams >= 40 * 50
    assert kept < streams / 2  # about 10 per connection: its dict, lists, pieces


def test_a_snapshot_text_is_ascii_and_parses_back_to_every_character():
    """Non-ASCII strings (a cut's ``…``, accents, a character past U+FFFF) reach the
    page as they were, escaped in the text: one such character in a piece must not
    make CPython build the whole snapshot's text two or four bytes a character
    (caps.dumps)."""
    state = _source(3).state()
    conn = state.subsystems.connections[0]
    conn.user_provided_tags.append("caf\u00e9 \u2026")
    conn.streams.streams[0].protocol = "/chat/\U0001f600/1.0.0"
    converter = SnapshotConverter()
    for _ in range(2):  # built from scratch, then from the kept pieces
        data, text = converter.convert_text(state)
        assert text.isascii()
        parsed = json.loads(text)
        assert parsed == data
        first = next(c for c in parsed["conns"] if c["id"] == conn.id.hex())
        assert "caf\u00e9 \u2026" in first["tags"]
        assert first["streams"][0]["proto"] == "/chat/\U0001f600/1.0.0"
