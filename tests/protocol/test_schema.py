"""The schema: field numbers of PROTOCOL.md §3 and §3.1, and generated code that is not stale.

The upstream part is also checked against an upstream-only copy of the
schema in test_schema_upstream.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from libp2p_introspection.protocol import pb

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_DIR = REPO / "src" / "libp2p_introspection" / "protocol"


def test_generated_code_is_not_stale(tmp_path):
    pytest.importorskip("grpc_tools")
    spec = importlib.util.spec_from_file_location(
        "generate_proto", REPO / "scripts" / "generate_proto.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_proto"] = module
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    for name in ("introspection_pb2.py", "introspection_pb2.pyi"):
        fresh = (tmp_path / name).read_text()
        committed = (PROTOCOL_DIR / name).read_text()
        assert fresh == committed, (
            f"{name} is stale: run `python scripts/generate_proto.py` and commit the result"
        )


def _fields(message) -> dict[str, int]:
    """The upstream fields (numbers below 100) of a message: name -> number."""
    return {f.name: f.number for f in message.DESCRIPTOR.fields if f.number < 100}


def test_field_numbers_match_the_contract():
    assert pb.DESCRIPTOR.package == "introspection"
    assert _fields(pb.ServerMessage) == {
        "version": 1, "state": 2, "runtime": 3, "event": 4, "response": 5, "notice": 6,
    }  # fmt: skip
    assert _fields(pb.ClientCommand) == {
        "version": 1, "id": 2, "command": 3, "source": 4, "config": 5,
    }  # fmt: skip
    assert _fields(pb.Runtime) == {
        "implementation": 1, "version": 2, "platform": 3, "peer_id": 4, "event_types": 7,
    }  # fmt: skip
    assert _fields(pb.Connection) == {
        "id": 1, "peer_id": 2, "status": 3, "transport_id": 4, "endpoints": 5, "timeline": 6,
        "role": 7, "traffic": 8, "attribs": 9, "latency_ns": 10, "streams": 11, "conn_id": 16,
        "conn": 17, "user_provided_tags": 99,
    }  # fmt: skip
    assert _fields(pb.Stream) == {
        "id": 1, "protocol": 2, "role": 3, "traffic": 4, "conn": 5, "timeline": 6, "status": 7,
        "latency_ns": 16, "user_provided_tags": 99,
    }  # fmt: skip
    assert _fields(pb.State) == {
        "subsystems": 1, "traffic": 2, "instant_ts": 3, "start_ts": 4, "snapshot_duration_ms": 5,
    }  # fmt: skip
    assert _fields(pb.DHT) == {
        "protocol": 1, "enabled": 2, "start_ts": 3, "params": 4, "buckets": 5,
        "incoming_queries": 6, "outgoing_queries": 7,
    }  # fmt: skip
    assert _fields(pb.DHT.PeerInDHT) == {"peer_id": 1, "status": 2, "age_in_bucket": 3}
    assert _fields(pb.DataGauge) == {"cum_bytes": 1, "cum_packets": 2, "inst_bw": 3}
    assert _fields(pb.CommandResponse) == {
        "id": 1, "result": 2, "error": 3, "effective_config": 4,
    }  # fmt: skip
    assert 12 not in [f.number for f in pb.Connection.DESCRIPTOR.fields]


def test_enum_values_match_the_contract():
    assert dict(pb.ClientCommand.Command.items()) == {
        "HELLO": 0, "REQUEST": 1, "PUSH_ENABLE": 2, "PUSH_DISABLE": 3, "PUSH_PAUSE": 4,
        "PUSH_RESUME": 5, "UPDATE_CONFIG": 7,
    }  # fmt: skip
    assert dict(pb.ClientCommand.Source.items()) == {"STATE": 0, "RUNTIME": 1, "EVENTS": 2}
    assert dict(pb.Status.items()) == {
        "ACTIVE": 0, "CLOSED": 1, "OPENING": 2, "CLOSING": 3, "ERROR": 4,
    }  # fmt: skip
    assert dict(pb.Role.items()) == {"INITIATOR": 0, "RESPONDER": 1}
    assert dict(pb.EventType.EventProperty.PropertyType.items()) == {
        "STRING": 0, "NUMBER": 1, "TIME": 10, "PEERID": 11, "MULTIADDR": 12, "JSON": 90,
    }  # fmt: skip
    assert dict(pb.DHT.PeerInDHT.Status.items()) == {
        "ACTIVE": 0, "MISSING": 1, "REJECTED": 2, "CANDIDATE": 3,
    }  # fmt: skip
    assert dict(pb.CommandResponse.Result.items()) == {"OK": 0, "ERR": 1}
    assert dict(pb.ServerNotice.Kind.items()) == {"DISCARDING_EVENTS": 0}


# ------------------------------------------------------------ PROTOCOL.md §3.1

_SCALAR_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_BYTES: "bytes",
}


def _type_of(field: FieldDescriptor) -> str:
    """A field's type as PROTOCOL.md writes it: ``repeated string``, ``NodeInfo``, ..."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name.removeprefix("introspection.")
    elif field.type == FieldDescriptor.TYPE_ENUM:
        name = field.enum_type.full_name.removeprefix("introspection.")
    else:
        name = _SCALAR_NAMES[field.type]
    return f"repeated {name}" if field.is_repeated else name


def _typed_fields(descriptor: Descriptor, minimum: int = 0) -> dict[str, tuple[int, str]]:
    return {f.name: (f.number, _type_of(f)) for f in descriptor.fields if f.number >= minimum}


# PROTOCOL.md §3.1, field by field: name -> (number, type). The extension
# fields of upstream messages (numbers from 100 up) ...
SPEC_3_1_EXTENSION_FIELDS = {
    "State": {"node": (100, "NodeInfo"), "protocols": (101, "repeated ProtocolStats")},
    "Connection": {"peer": (100, "PeerInfo")},
    "Subsystems": {"pubsub": (100, "PubSub"), "resources": (101, "ResourceManager")},
}
_USAGE = "ResourceUsage"
# ... and the messages of §3.1, whole.
SPEC_3_1_MESSAGES = {
    "NodeInfo": {
        "listen_addrs": (1, "repeated string"), "observed_addrs": (2, "repeated string"),
        "reachability": (3, "NodeInfo.Reachability"), "protocols": (4, "repeated string"),
    },
    "ProtocolStats": {
        "protocol": (1, "string"), "traffic": (2, "Traffic"), "active_streams": (3, "uint32"),
        "streams_opened": (4, "uint64"),
    },
    "PeerInfo": {
        "agent_version": (1, "string"), "protocol_version": (2, "string"),
        "protocols": (3, "repeated string"), "listen_addrs": (4, "repeated string"),
        "observed_addr": (5, "string"),
    },
    "PubSub": {
        "router": (1, "string"), "topics": (2, "repeated PubSub.Topic"),
        "peers": (3, "repeated PubSubPeer"),
    },
    "PubSub.Topic": {
        "name": (1, "string"), "subscribed": (2, "bool"), "mesh_peers": (3, "repeated string"),
        "fanout_peers": (4, "repeated string"), "peers": (5, "repeated string"),
        "messages_in": (6, "DataGauge"), "messages_out": (7, "DataGauge"),
    },
    "PubSubPeer": {
        "peer_id": (1, "string"), "protocol": (2, "string"), "score": (3, "double"),
        "topics": (4, "repeated string"),
    },
    "ResourceManager": {"scopes": (1, "repeated ResourceScope"), "blocked": (2, "uint64")},
    "ResourceScope": {"name": (1, "string"), "usage": (2, _USAGE), "limit": (3, _USAGE)},
    "ResourceUsage": {
        "conns_inbound": (1, "uint64"), "conns_outbound": (2, "uint64"),
        "streams_inbound": (3, "uint64"), "streams_outbound": (4, "uint64"),
        "memory": (5, "uint64"), "fds": (6, "uint64"), "conns_total": (7, "uint64"),
        "streams_total": (8, "uint64"),
    },
}  # fmt: skip


def _message(name: str) -> Descriptor:
    try:
        return pb.DESCRIPTOR.pool.FindMessageTypeByName(f"introspection.{name}")
    except KeyError:
        pytest.fail(f"the schema has no message {name} (PROTOCOL.md §3.1)")


@pytest.mark.parametrize("name", list(SPEC_3_1_EXTENSION_FIELDS))
def test_extension_fields_of_upstream_messages_match_section_3_1(name):
    assert _typed_fields(_message(name), minimum=100) == SPEC_3_1_EXTENSION_FIELDS[name]


@pytest.mark.parametrize("name", list(SPEC_3_1_MESSAGES))
def test_extension_messages_match_section_3_1(name):
    assert _typed_fields(_message(name)) == SPEC_3_1_MESSAGES[name]
    assert not _message(name).oneofs


def test_reachability_values_match_section_3_1():
    values = _message("NodeInfo").enum_types_by_name["Reachability"].values
    assert {v.name: v.number for v in values} == {
        "UNKNOWN": 0, "PUBLIC": 1, "PRIVATE": 2, "NOT_RUNNING": 3,
    }  # fmt: skip
