"""The wire walker (protocol/wire.py): exact counts, bounded work and memory, never a crash."""

from __future__ import annotations

import tracemalloc

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from hostile_records import connection, empty_connections_state, field, state, varint_field
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libp2p_introspection.protocol import pb, wire
from libp2p_introspection.protocol.framing import encode_varint
from libp2p_introspection.protocol.wire import (
    DEFAULT_LIMITS,
    MAX_CONNECTIONS,
    MAX_STREAMS,
    RecordLimits,
    measure,
    measure_paced,
)

# ----------------------------------------------------------- exact counts


def _expected(message) -> tuple[int, int, int, int]:
    """Connections, streams, stream ids and other list entries, counted on the parsed form."""
    counts = [0, 0, 0, 0]

    def visit(msg) -> None:
        for descriptor, value in msg.ListFields():
            if descriptor.type != FieldDescriptor.TYPE_MESSAGE:
                if descriptor.full_name == "introspection.StreamList.stream_ids":
                    counts[2] += len(value)
                continue
            items = list(value) if descriptor.is_repeated else [value]
            name = descriptor.message_type.full_name
            if name == "introspection.Connection":
                counts[0] += len(items)
            elif name == "introspection.Stream":
                counts[1] += len(items)
            elif descriptor.is_repeated:
                counts[3] += len(items)
            for item in items:
                visit(item)

    visit(message)
    return tuple(counts)


@st.composite
def _connection(draw, depth: int = 0) -> pb.Connection:
    conn = pb.Connection(id=draw(st.binary(max_size=4)), peer_id=draw(st.text(max_size=4)))
    conn.timeline.open_ts = draw(st.integers(0, 2**64 - 1))
    for _ in range(draw(st.integers(0, 3))):
        conn.streams.stream_ids.append(draw(st.binary(max_size=3)))
    for _ in range(draw(st.integers(0, 4))):
        stream = conn.streams.streams.add(protocol=draw(st.text(max_size=3)))
        if depth < 2 and draw(st.booleans()):
            stream.conn.conn.CopyFrom(draw(_connection(depth + 1)))  # streams hidden inside
        elif draw(st.booleans()):
            stream.conn.conn_id = b"\x01"
        stream.user_provided_tags.extend(draw(st.lists(st.text(max_size=2), max_size=2)))
    if depth < 2 and draw(st.booleans()):
        conn.conn.CopyFrom(draw(_connection(depth + 1)))  # relayed over
    return conn


@st.composite
def _message(draw) -> pb.ServerMessage:
    message = pb.ServerMessage()
    message.version.version = 1
    kind = draw(st.sampled_from(["state", "runtime", "event", "response", "empty"]))
    if kind == "state":
        message.state.instant_ts = draw(st.integers(0, 2**64 - 1))
        for conn in draw(st.lists(_connection(), max_size=4)):
            message.state.subsystems.connections.append(conn)
        if draw(st.booleans()):
            dht = message.state.subsystems.dht
            for cpl in range(draw(st.integers(0, 3))):
                bucket = dht.buckets.add(cpl=cpl)
                for n in range(draw(st.integers(0, 3))):
                    bucket.peers.add(peer_id=str(n))
    elif kind == "runtime":
        message.runtime.implementation = draw(st.text(max_size=5))
        for n in range(draw(st.integers(0, 3))):
            event_type = message.runtime.event_types.add(name=f"T{n}")
            for p in range(draw(st.integers(0, 3))):
                event_type.property_types.add(name=f"p{p}")
    elif kind == "event":
        message.event.ts = draw(st.integers(0, 2**64 - 1))
        for p in range(draw(st.integers(0, 2))):
            message.event.type.property_types.add(name=f"p{p}")
    elif kind == "response":
        message.response.error = draw(st.text(max_size=5))
    return message


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_message())
def test_counts_are_exactly_what_protobuf_builds(message):
    data = message.SerializeToString()
    counts = measure(data)
    assert counts.ok
    assert (counts.connections, counts.streams, counts.stream_ids, counts.entries) == _expected(
        message
    )
    assert counts.kind == (message.WhichOneof("payload") or "")


def test_a_synthetic_snapshot_is_counted_and_within_the_default_limits():
    from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

    source = SyntheticSource(SyntheticOptions(connections=200, streams=5, churn=0.0))
    message = pb.ServerMessage()
    message.state.ParseFromString(source.encoded_state())
    counts = measure(message.SerializeToString())
    assert counts.ok and counts.kind == "state"
    assert counts.connections == 200
    assert counts.streams == sum(len(c.streams.streams) for c in message.state.subsystems.connections)


def test_the_last_payload_on_the_wire_is_the_kind_as_protobuf_decides():
    data = state([connection()]) + field(4, varint_field(2, 5))  # a state, then an event
    message = pb.ServerMessage.FromString(data)
    assert message.WhichOneof("payload") == "event"
    counts = measure(data)
    assert counts.kind == "event"
    assert counts.connections == 1  # parsing built the state's connection before dropping it


# ------------------------------------------------- limits: work and memory


def test_a_million_empty_connections_stop_the_walk_at_the_cap():
    data = empty_connections_state(1_000_000)  # 2 MB
    counts = measure(data)
    assert counts.over_limit.startswith(f"more than {MAX_CONNECTIONS:,} connections")
    assert counts.connections == MAX_CONNECTIONS + 1
    assert counts.fields < MAX_CONNECTIONS + 10  # the walk stopped there: its cost is the cap's


def test_the_default_limits_hold_a_5000_connection_node_with_its_closed_connections():
    """A node of 5,000 connections that replaces 2% of them a second (the mock's default
    churn) keeps each closed one in its snapshots for two minutes (the introspector's and
    the mock's default lifetime): about 17,000 connections in every snapshot once it has
    run that long. Under a 10,000 cap every reader (the dashboard, ``watch``, ``record``)
    skipped each of its snapshots after the first minute; the defaults hold it twice over."""
    active, closed = 5_000, int(5_000 * 0.02 * 120)
    assert measure(empty_connections_state(2 * (active + closed))).over_limit == ""


def test_the_walk_allocates_nothing_that_follows_the_counts():
    data = empty_connections_state(1_000_000)
    roomy = RecordLimits(max_connections=2_000_000)
    measure(data[:100], roomy)  # warm up whatever is cached on first use
    tracemalloc.start()
    try:
        counts = measure(data, roomy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts.ok and counts.connections == 1_000_000
    assert peak < 64 * 1024  # bytes: a stack of a few frames and a result, for 2 MB of input


def test_streams_hidden_in_nested_connections_are_counted():
    # 1 connection whose one stream's ConnectionRef.conn holds 150,000 empty streams.
    nested = connection(150_000)
    stream = field(5, field(1, nested))  # Stream.conn (ConnectionRef) .conn (Connection)
    data = state([field(11, field(2, stream))])
    counts = measure(data)
    assert counts.over_limit.startswith(f"more than {MAX_STREAMS:,} streams")
    relayed = state([field(17, connection(150_000))])  # Connection.conn: relayed over
    assert measure(relayed).over_limit.startswith(f"more than {MAX_STREAMS:,} streams")


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (state([field(11, field(1, b"") * 100_001)]), "stream ids"),
        (
            field(2, field(1, field(2, field(5, field(2, b"") * 100_001)))),  # DHT bucket peers
            "DHT buckets and peers",
        ),
        (field(3, field(7, b"") * 100_001), "event types"),  # Runtime.event_types
    ],
    ids=["stream-ids", "dht-peers", "event-types"],
)
def test_every_list_that_parsing_expands_is_capped(data, what):
    assert what in measure(data).over_limit


def test_a_flood_of_small_fields_is_bounded_by_the_field_budget():
    limits = RecordLimits(max_connections=1, max_streams=1, max_entries=1)
    flood = varint_field(10, 0) * (limits.max_fields + 10)  # latency_ns, again and again
    counts = measure(state([flood]), limits)
    assert "fields" in counts.over_limit
    assert counts.fields == limits.max_fields + 1


def test_limits_are_positive_integers():
    with pytest.raises(ValueError, match="max_streams"):
        RecordLimits(max_streams=0)
    assert DEFAULT_LIMITS.caps() == (40_000, 100_000, 100_000, 100_000)


async def test_a_sliced_walk_pauses_and_counts_the_same(monkeypatch: pytest.MonkeyPatch):
    data = empty_connections_state(9_000)
    expected = measure(data)
    monkeypatch.setattr(wire, "_wirewalk", None)  # the Python walk, as without a compiler
    pauses = 0

    async def pause() -> None:
        nonlocal pauses
        pauses += 1

    counts = await measure_paced(data, DEFAULT_LIMITS, pause, slice_fields=1_000)
    assert counts.fields // 1_001 <= pauses <= counts.fields // 1_000  # about every 1,000
    assert counts == expected


@pytest.mark.skipif(not wire.ACCELERATED, reason="the C walk is not built here")
async def test_a_paced_walk_lets_the_c_walk_answer_sound_data_at_once():
    # A client checks every snapshot it receives: the Python walk cost a dashboard
    # following a 5,000 x 10 node ~100 ms of its loop per snapshot, C about 1.5 ms.
    data = empty_connections_state(9_000)
    pauses = 0

    async def pause() -> None:
        nonlocal pauses
        pauses += 1

    assert await measure_paced(data, DEFAULT_LIMITS, pause, slice_fields=1_000) == measure(data)
    assert pauses == 0
    # What C hands over (over a cap here) is still walked in slices, with its wording.
    over = empty_connections_state(DEFAULT_LIMITS.max_connections + 5)
    counts = await measure_paced(over, DEFAULT_LIMITS, pause, slice_fields=1_000)
    assert "connections" in counts.over_limit and pauses > 0


# --------------------------------------------- malformed bytes, never a crash


def _nested_connections(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = field(17, inner)
    return state([inner])


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"\x12\x05\x0a", "announces 5 bytes"),
        (b"\x12", "cut short"),
        (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x0f", "wire type 7"),
        (b"\x0c", "unmatched end of group"),
        (b"\x04", "unmatched end of group"),  # field 0
        (b"\x03\x04", "field number 0"),
        (b"\x13\x08\x01", "not closed"),
        (_nested_connections(200), "nested deeper"),
    ],
)
def test_malformed_bytes_are_reported_not_raised(data, fault):
    counts = measure(data)
    assert fault in counts.malformed
    with pytest.raises(DecodeError):
        pb.ServerMessage.FromString(data)


def test_what_protobuf_accepts_the_walk_accepts():
    # Unknown groups, non-minimal tags and the deepest nesting protobuf parses.
    group = encode_varint(50 << 3 | 3) + varint_field(1, 1) + encode_varint(50 << 3 | 4)
    for data in (group, b"\x8a\x00\x00", _nested_connections(96)):
        pb.ServerMessage.FromString(data)
        assert measure(data).ok


@settings(max_examples=2_000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_never_crash_and_never_undercount(data):
    counts = measure(data)
    try:
        message = pb.ServerMessage.FromString(data)
    except DecodeError:
        return
    except RecursionError:  # pragma: no cover - protobuf's own limit
        return
    assert not counts.malformed  # nothing protobuf parses is called malformed
    connections = message.state.subsystems.connections
    assert len(connections) <= counts.connections
    assert sum(len(c.streams.streams) for c in connections) <= counts.streams
