"""Loading recordings into the dashboard's store: the fixture facts, bad and damaged files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from libp2p_introspection.dashboard.recording import RecordingLoadError, load_recording

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
        "PeerConnecting", "PeerDisconnecting", "InboundDHTQuery", "OutboundDHTQuery",
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
