"""Loading recordings into the dashboard's store: the fixture facts, bad and damaged files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from libp2p_introspection.dashboard.caps import dumps
from libp2p_introspection.dashboard.convert_events import dht_query, event_to_json
from libp2p_introspection.dashboard.recording import RecordingLoadError, load_recording
from libp2p_introspection.protocol import pb

SAMPLE_PEER = "8de3166db28fddb199f05be0acea65772e7a1b289086902160d1060e83dac2fd"


def test_sample_1min_facts(fixtures_dir: Path):
    store, info = load_recording(fixtures_dir / "sample-1min.mock")
    assert info.name == "sample-1min.mock"
    assert (info.records, info.states, info.events) == (969, 30, 937)
    assert info.checksum_failures == 0 and not info.truncated
    assert store.runtime["implementation"] == "go-libp2p"
    assert store.runtime["platform"] == "macOS"
    assert store.runtime["peerId"] == SAMPLE_PEER
    assert {t["name"] for t in store.runtime["eventTypes"]} == {
        "PeerConnecting",
        "PeerDisconnecting",
        "InboundDHTQuery",
        "OutboundDHTQuery",
    }
    assert len(store) == 30  # no time bound for a recording
    first = store.snapshots().__next__().data
    assert len([c for c in first["conns"] if not c["gone"]]) == 6
    last = store.latest.data
    assert len(last["conns"]) == 10
    assert sum(len(c["streams"]) for c in last["conns"]) == 96
    assert last["dht"]["params"]["k"] == 20 and last["dht"]["params"]["alpha"] == 3
    assert store.event_count == 937
    assert store.event_counts()["InboundDHTQuery"] == 465


def test_a_stream_of_bytes_loads_like_a_file(fixtures_dir: Path):
    data = (fixtures_dir / "sample-dht-2min.mock").read_bytes()
    store, info = load_recording(io.BytesIO(data), name="upload.mock")
    assert info.name == "upload.mock" and info.states == 60
    assert len(store.latest.data["conns"]) >= 10


def test_count_bounds_keep_the_newest(fixtures_dir: Path):
    store, info = load_recording(fixtures_dir / "sample-1min.mock", max_snapshots=5, max_events=100)
    assert info.states == 30 and len(store) == 5 and store.event_count == 100
    assert store.latest.ts == 1592210444714


def test_truncated_recording_keeps_what_precedes_the_cut(fixtures_dir: Path):
    data = (fixtures_dir / "sample-1min.mock").read_bytes()
    store, info = load_recording(io.BytesIO(data[: len(data) // 2]), name="cut.mock")
    assert len(store) == info.states
    assert info.truncated and 0 < info.states < 30


@pytest.mark.parametrize("data", [b"", b"hello world, not a recording", b"\x01\x00\x00\x00"])
def test_not_a_recording_or_no_snapshot_is_an_error(data: bytes):
    with pytest.raises(RecordingLoadError):
        load_recording(io.BytesIO(data), name="bad.mock")


def test_dht_query_events_are_read_in_every_shape(fixtures_dir: Path):
    """The toolkit's (its recording: peerIds with null entries, no messageType), ours
    (PROTOCOL.md §3) and our older one (peerId, queryType, durationMs, lower case)."""
    store, _ = load_recording(fixtures_dir / "sample-1min.mock")
    queries = [e["query"] for e in store.events() if "DHT" in e["type"]]
    assert len(queries) == 465 + 462
    assert all("query" not in e for e in store.events() if "DHT" not in e["type"])
    assert {q["dir"] for q in queries} == {"INBOUND", "OUTBOUND"}
    assert {q["result"] for q in queries} == {"SUCCESS", "ERROR", "TIMEOUT"}
    assert {q["message"] for q in queries} == {"VALUE", "PROVIDER", "CONTENT"}  # its `type`
    assert all(q["peers"] and all(isinstance(p, str) and p for p in q["peers"]) for q in queries)
    assert all(isinstance(q["ms"], int) for q in queries)
    # Some of its query peers are peers of its routing table (the widget's match).
    table = {p["peer"] for b in store.latest.data["dht"]["buckets"] for p in b["peers"]}
    assert sum(bool(table & set(q["peers"])) for q in queries) > 100

    new = {
        "direction": "OUTBOUND", "peerIds": ["12D3KooWa"], "queryId": "ab", "targetPeerId": "",
        "totalTimeMs": 12, "totalSteps": 1, "trigger": "API", "type": "CONTENT",
        "messageType": "FIND_NODE", "result": "TIMEOUT",
    }  # fmt: skip
    old = {"peerId": "12D3KooWa", "queryType": "GET_VALUE", "result": "success", "durationMs": 7}
    hostile = {"peerIds": "12D3KooWa", "peerId": 5, "messageType": ["x"], "result": 3,
               "totalTimeMs": True, "durationMs": "7"}  # fmt: skip
    assert dht_query("OutboundDHTQuery", new) == {
        "dir": "OUTBOUND", "peers": ["12D3KooWa"], "message": "FIND_NODE", "result": "TIMEOUT",
        "ms": 12,
    }  # fmt: skip
    assert dht_query("InboundDHTQuery", old) == {
        "dir": "INBOUND", "peers": ["12D3KooWa"], "message": "GET_VALUE", "result": "SUCCESS",
        "ms": 7,
    }  # fmt: skip
    assert dht_query("InboundDHTQuery", hostile) == {
        "dir": "INBOUND", "peers": [], "message": "", "result": "", "ms": None,
    }  # fmt: skip
    assert dht_query("InboundDHTQuery", "not an object") is None
    assert dht_query("PeerConnecting", new) is None


def test_event_content_with_nan_stays_text():
    """Python's json reads NaN and Infinity, a browser's JSON.parse refuses them: the
    whole feed batch (a hello, with every snapshot) would be lost in the page."""
    event = pb.Event(ts=5, content='{"totalTimeMs": NaN, "peerIds": ["p"]}')
    event.type.name = "OutboundDHTQuery"
    converted = event_to_json(event)
    assert converted["content"] == '{"totalTimeMs": NaN, "peerIds": ["p"]}'
    assert "query" not in converted
    json.loads(dumps(converted), parse_constant=lambda c: pytest.fail(f"{c} sent to the page"))
