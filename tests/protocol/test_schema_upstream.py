"""The upstream part of the schema stays what existing clients know (PROTOCOL.md §3, §3.1).

``schema/upstream_introspection.proto`` is an upstream-only copy of the
schema (the one go-libp2p's introspection endpoint and observer-toolkit's UI
speak, as this project had it before the §3.1 extensions). It is compiled
here, at test time, with the pinned ``grpcio-tools`` protoc (no network),
into a descriptor pool of its own, and:

(a) every message, field (name, number, type, label, referenced type, oneof),
    enum value and reserved range of it is unchanged in our schema, and our
    schema minus the §3.1 extensions (fields numbered 100 and up, and the
    messages only they refer to) is exactly the copy;
(b) a parser built from the copy reads a snapshot that fills every §3.1
    field: it skips the extensions (keeping them as unknown fields, so a
    recorder built on the old schema writes them back unchanged) and reads
    every upstream field as our parser does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from libp2p_introspection.protocol import pb

UPSTREAM_PROTO = Path(__file__).resolve().parent / "schema" / "upstream_introspection.proto"
#: Field numbers from here up are this project's (PROTOCOL.md §3.1).
FIRST_EXTENSION_NUMBER = 100
OURS = pb.DESCRIPTOR


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> descriptor_pool.DescriptorPool:
    """A descriptor pool holding only the upstream-only copy, compiled by protoc."""
    try:
        from grpc_tools import protoc
    except ImportError:  # a dev dependency (pyproject); CI must have it
        if os.environ.get("CI"):
            pytest.fail("grpcio-tools is not installed: it compiles the upstream schema copy")
        pytest.skip("grpcio-tools is not installed")
    out = tmp_path_factory.mktemp("upstream") / "upstream.pb"
    rc = protoc.main(
        [
            "protoc",
            f"-I{UPSTREAM_PROTO.parent}",
            f"--descriptor_set_out={out}",
            str(UPSTREAM_PROTO),
        ]
    )
    assert rc == 0, f"protoc failed on {UPSTREAM_PROTO} (exit code {rc})"
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in files.file:
        pool.Add(file_proto)
    return pool


def _file(pool: descriptor_pool.DescriptorPool):
    return pool.FindFileByName(UPSTREAM_PROTO.name)


def _messages(descriptors) -> Iterator[Descriptor]:
    for descriptor in descriptors:
        yield descriptor
        yield from _messages(descriptor.nested_types)


def _upstream_names(pool: descriptor_pool.DescriptorPool) -> set[str]:
    """Full names of every message of the upstream copy, nested ones included."""
    return {m.full_name for m in _messages(_file(pool).message_types_by_name.values())}


def _enums(file) -> Iterator[EnumDescriptor]:
    yield from file.enum_types_by_name.values()
    for message in _messages(file.message_types_by_name.values()):
        yield from message.enum_types


def _type_name(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return ""


def _field_signature(field: FieldDescriptor) -> tuple:
    oneof = field.containing_oneof.name if field.containing_oneof else None
    return (
        field.name, field.number, field.type, field.is_repeated, _type_name(field), oneof,
        field.json_name,
    )  # fmt: skip


# ------------------------------------------------------- (a) the schema itself


def test_the_copy_is_the_upstream_schema(upstream):
    """The copy is the schema of PROTOCOL.md §3: it holds no extension."""
    file = _file(upstream)
    assert file.package == "introspection"
    names = {m.full_name for m in _messages(file.message_types_by_name.values())}
    assert "introspection.ServerMessage" in names and "introspection.DHT.PeerInDHT" in names
    for message in _messages(file.message_types_by_name.values()):
        assert all(f.number < FIRST_EXTENSION_NUMBER for f in message.fields), message.full_name


def test_every_upstream_field_is_unchanged(upstream):
    """Every upstream message and field: same name, number, type, label, oneof."""
    changes: list[str] = []
    for theirs in _messages(_file(upstream).message_types_by_name.values()):
        try:
            ours = OURS.pool.FindMessageTypeByName(theirs.full_name)
        except KeyError:
            changes.append(f"message {theirs.full_name} is gone")
            continue
        for field in theirs.fields:
            mine = ours.fields_by_number.get(field.number)
            if mine is None:
                changes.append(f"{theirs.full_name}: field {field.number} {field.name} is gone")
            elif _field_signature(mine) != _field_signature(field):
                changes.append(
                    f"{theirs.full_name}: field {field.number} was {_field_signature(field)}, "
                    f"is {_field_signature(mine)}"
                )
        for field in ours.fields:
            if field.number not in theirs.fields_by_number and (
                field.number < FIRST_EXTENSION_NUMBER
            ):
                changes.append(f"{theirs.full_name}: new field {field.name} = {field.number} < 100")
        theirs_proto, ours_proto = (
            descriptor_pb2.DescriptorProto(),
            descriptor_pb2.DescriptorProto(),
        )
        theirs.CopyToProto(theirs_proto)
        ours.CopyToProto(ours_proto)
        if list(theirs_proto.reserved_range) != list(ours_proto.reserved_range):
            changes.append(f"{theirs.full_name}: reserved ranges changed")
    assert not changes, "\n".join(changes)


def test_every_upstream_enum_is_unchanged(upstream):
    changes: list[str] = []
    for theirs in _enums(_file(upstream)):
        try:
            ours = OURS.pool.FindEnumTypeByName(theirs.full_name)
        except KeyError:
            changes.append(f"enum {theirs.full_name} is gone")
            continue
        before = {v.name: v.number for v in theirs.values}
        after = {v.name: v.number for v in ours.values}
        if before != after:
            changes.append(f"enum {theirs.full_name}: {before} is now {after}")
    assert not changes, "\n".join(changes)


def _strip_extensions(file_proto: descriptor_pb2.FileDescriptorProto, upstream_names: set[str]):
    """Remove the §3.1 messages and the fields numbered 100 and up, in place.

    Also clears ``json_name``: protoc writes it into a descriptor set but not
    into generated code (it derives from the name, compared field by field above).
    """

    def strip(message: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = f"{scope}.{message.name}"
        kept = [f for f in message.field if f.number < FIRST_EXTENSION_NUMBER]
        del message.field[:]
        message.field.extend(kept)
        for field in message.field:
            field.ClearField("json_name")
        nested = [m for m in message.nested_type if f"{name}.{m.name}" in upstream_names]
        del message.nested_type[:]
        message.nested_type.extend(nested)
        for inner in message.nested_type:
            strip(inner, name)

    kept = [m for m in file_proto.message_type if f"introspection.{m.name}" in upstream_names]
    del file_proto.message_type[:]
    file_proto.message_type.extend(kept)
    for message in file_proto.message_type:
        strip(message, "introspection")


def test_our_schema_minus_the_extensions_is_exactly_the_copy(upstream):
    """Nothing else changed: field order, json names, nested types, options, enums."""
    theirs = descriptor_pb2.FileDescriptorProto()
    _file(upstream).CopyToProto(theirs)
    upstream_names = _upstream_names(upstream)
    _strip_extensions(theirs, upstream_names)  # strips nothing but json_name (first test)
    ours = descriptor_pb2.FileDescriptorProto()
    OURS.CopyToProto(ours)
    _strip_extensions(ours, upstream_names)
    theirs.name = ours.name
    assert ours == theirs


def test_extension_messages_are_reached_only_through_extension_fields(upstream):
    """A §3.1 message is referred to only from fields numbered 100 and up (or
    from inside another §3.1 message), so an upstream parser never meets one."""
    upstream_names = _upstream_names(upstream)
    for message in _messages(OURS.message_types_by_name.values()):
        if message.full_name not in upstream_names:
            continue
        for field in message.fields:
            if (
                field.message_type is not None
                and field.message_type.full_name not in upstream_names
            ):
                assert field.number >= FIRST_EXTENSION_NUMBER, (message.full_name, field.name)


# ------------------------------------------- (b) an upstream parser reads ours


def _gauge(seed: int) -> pb.DataGauge:
    return pb.DataGauge(cum_bytes=1000 + seed, cum_packets=10 + seed, inst_bw=100 + seed)


def _traffic(seed: int) -> pb.Traffic:
    return pb.Traffic(traffic_in=_gauge(seed), traffic_out=_gauge(seed + 1))


def _usage(seed: int) -> pb.ResourceUsage:
    return pb.ResourceUsage(
        conns_inbound=seed + 1, conns_outbound=seed + 2, streams_inbound=seed + 3,
        streams_outbound=seed + 4, memory=(seed + 5) << 20, fds=seed + 6,
        conns_total=seed + 7, streams_total=seed + 8,
    )  # fmt: skip


def _connection(n: int, peer: str, streams: list[pb.Stream]) -> pb.Connection:
    return pb.Connection(
        id=bytes([n]) * 4,
        peer_id=peer,
        status=pb.CLOSING,
        transport_id=b"tcp",
        endpoints=pb.EndpointPair(
            src_multiaddr="/ip4/127.0.0.1/tcp/4001", dst_multiaddr=f"/ip4/10.0.0.{n}/tcp/4001"
        ),
        timeline=pb.Connection.Timeline(open_ts=1_700_000_000_000, upgraded_ts=1_700_000_000_050,
                                        close_ts=1_700_000_009_000),
        role=pb.RESPONDER,
        traffic=_traffic(n),
        attribs=pb.Connection.Attributes(multiplexer="/yamux/1.0.0", encryption="/noise"),
        latency_ns=2_500_000 + n,
        streams=pb.StreamList(stream_ids=[s.id for s in streams], streams=streams),
        user_provided_tags=["app:demo", f"n{n}"],
        peer=pb.PeerInfo(
            agent_version="py-libp2p/0.8.1", protocol_version="ipfs/0.1.0",
            protocols=["/ipfs/id/1.0.0", "/meshsub/1.1.0"],
            listen_addrs=[f"/ip4/10.0.0.{n}/tcp/4001"], observed_addr="/ip4/1.2.3.4/tcp/4001",
        ),
    )  # fmt: skip


def _stream(n: int) -> pb.Stream:
    return pb.Stream(
        id=bytes([n, n]),
        protocol="/meshsub/1.1.0",
        role=pb.RESPONDER,
        traffic=_traffic(10 + n),
        timeline=pb.Stream.Timeline(open_ts=1_700_000_000_100, close_ts=1_700_000_008_000),
        status=pb.ERROR,
        latency_ns=1_000 + n,
        user_provided_tags=["stream-tag"],
    )


def full_snapshot() -> pb.ServerMessage:
    """A snapshot with every upstream field and every §3.1 field set (non-default)."""
    peer_a, peer_b = "12D3KooWPeerA", "12D3KooWPeerB"
    by_id, inlined = _stream(1), _stream(2)
    by_id.conn.conn_id = bytes([1]) * 4  # ConnectionRef, by reference (conn_a's id)
    relay = _connection(3, peer_b, [])
    conn_a = _connection(1, peer_a, [by_id, inlined])
    conn_a.conn_id = relay.id  # relayed_over, by reference
    conn_b = _connection(2, peer_b, [])
    conn_b.conn.CopyFrom(relay)  # relayed_over, inlined
    inlined.conn.conn.CopyFrom(conn_b)  # ConnectionRef, inlined
    conn_a.streams.streams[1].CopyFrom(inlined)
    dht = pb.DHT(
        protocol="/ipfs/kad/1.0.0", enabled=True, start_ts=1_699_999_999_000,
        params=pb.DHT.Params(k=20, alpha=3, disjoint_paths=1, beta=3),
        buckets=[pb.DHT.Bucket(cpl=2, peers=[pb.DHT.PeerInDHT(
            peer_id=peer_a, status=pb.DHT.PeerInDHT.MISSING, age_in_bucket=5000)])],
        incoming_queries=pb.DHT.QueryGauge(success=5, error=1, timeout=2),
        outgoing_queries=pb.DHT.QueryGauge(success=7, error=3, timeout=4),
    )  # fmt: skip
    pubsub = pb.PubSub(
        router="/meshsub/1.1.0",
        topics=[pb.PubSub.Topic(
            name="blocks", subscribed=True, mesh_peers=[peer_a], fanout_peers=[peer_b],
            peers=[peer_a, peer_b], messages_in=_gauge(50), messages_out=_gauge(60),
        )],
        peers=[pb.PubSubPeer(peer_id=peer_a, protocol="/meshsub/1.1.0", score=-1.25,
                             topics=["blocks"])],
    )  # fmt: skip
    resources = pb.ResourceManager(
        scopes=[
            pb.ResourceScope(name="system", usage=_usage(0), limit=_usage(100)),
            pb.ResourceScope(name="protocol:/meshsub/1.1.0", usage=_usage(1), limit=_usage(2)),
        ],
        blocked=9,
    )
    state = pb.State(
        subsystems=pb.Subsystems(
            connections=[conn_a, conn_b], dht=dht, pubsub=pubsub, resources=resources
        ),
        traffic=_traffic(70),
        instant_ts=1_700_000_010_000,
        start_ts=1_700_000_009_000,
        snapshot_duration_ms=1000,
        node=pb.NodeInfo(
            listen_addrs=["/ip4/127.0.0.1/tcp/4001"], observed_addrs=["/ip4/1.2.3.4/tcp/4001"],
            reachability=pb.NodeInfo.PRIVATE, protocols=["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"],
        ),
        protocols=[
            pb.ProtocolStats(protocol="/meshsub/1.1.0", traffic=_traffic(80), active_streams=2,
                             streams_opened=11),
        ],
    )  # fmt: skip
    return pb.ServerMessage(version=pb.Version(version=1), state=state)


def _set_fields(message: Message, seen: set[str]) -> None:
    """Collect ``message.field`` for every field set to a non-default value, at any depth."""
    for field, value in message.ListFields():
        seen.add(field.full_name)
        if field.message_type is not None:
            for item in value if field.is_repeated else [value]:
                _set_fields(item, seen)


def _fields_under(descriptor: Descriptor, out: set[str], visited: set[str]) -> None:
    if descriptor.full_name in visited:
        return
    visited.add(descriptor.full_name)
    for field in descriptor.fields:
        out.add(field.full_name)
        if field.message_type is not None:
            _fields_under(field.message_type, out, visited)


def test_the_snapshot_fills_every_field():
    """So that (b) really exercises every §3.1 field (and every upstream one of a
    State): a field added to the schema fails here until the snapshot sets it."""
    seen: set[str] = set()
    _set_fields(full_snapshot(), seen)
    expected: set[str] = set()
    _fields_under(pb.State.DESCRIPTOR, expected, set())
    assert expected - seen == set()


def _strip_extension_values(message: Message) -> None:
    """Clear every field numbered 100 and up, at any depth, in place."""
    for field, value in message.ListFields():
        if field.number >= FIRST_EXTENSION_NUMBER:
            message.ClearField(field.name)
        elif field.message_type is not None:
            for item in value if field.is_repeated else [value]:
                _strip_extension_values(item)


def _upstream_parse(pool: descriptor_pool.DescriptorPool, data: bytes) -> Message:
    server_message = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("introspection.ServerMessage")
    )
    return server_message.FromString(data)


def test_an_upstream_parser_reads_every_upstream_field_of_our_snapshot(upstream):
    ours = full_snapshot()
    data = ours.SerializeToString()
    theirs = _upstream_parse(upstream, data)
    expected = pb.ServerMessage()
    expected.CopyFrom(ours)
    _strip_extension_values(expected)
    as_dict = {"preserving_proto_field_name": True}
    read = json_format.MessageToDict(theirs, **as_dict)
    assert read == json_format.MessageToDict(expected, **as_dict)
    assert read["state"]["subsystems"]["dht"]["buckets"][0]["peers"][0]["status"] == "MISSING"
    assert len(read["state"]["subsystems"]["connections"]) == 2


def test_an_upstream_parser_skips_exactly_the_extensions(upstream):
    data = full_snapshot().SerializeToString()
    theirs = _upstream_parse(upstream, data)
    state = theirs.state

    def unknown(message: Message) -> list[int]:
        return sorted(field.field_number for field in UnknownFieldSet(message))

    assert unknown(theirs) == []
    assert unknown(state) == [100, 101]
    assert unknown(state.subsystems) == [100, 101]
    for connection in state.subsystems.connections:
        assert unknown(connection) == [100]
    assert unknown(state.subsystems.connections[1].conn) == [100]  # relayed_over, inlined
    inlined = state.subsystems.connections[0].streams.streams[1].conn.conn
    assert unknown(inlined) == [100]
    assert unknown(state.subsystems.dht) == []
    # An old recorder or relay writes the extensions back as they came.
    assert theirs.SerializeToString() == data
    assert pb.ServerMessage.FromString(theirs.SerializeToString()) == full_snapshot()
