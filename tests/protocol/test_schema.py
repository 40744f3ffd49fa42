"""The schema: field numbers of PROTOCOL.md §3, and generated code that is not stale."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

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
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


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
