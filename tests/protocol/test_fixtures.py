"""Decoding every recording in shared/fixtures gives the facts of its README."""

from __future__ import annotations

from collections import Counter

import pytest

from libp2p_introspection.protocol.recording import RecordingReader


def _facts(path):
    with RecordingReader(path) as reader:
        kinds: Counter[str] = Counter()
        states = []
        runtime = None
        for message in reader.messages():
            kind = message.WhichOneof("payload")
            kinds[kind] += 1
            if kind == "state":
                states.append(message.state)
            elif kind == "runtime":
                runtime = message.runtime
        return reader, kinds, states, runtime


@pytest.mark.parametrize(
    ("name", "records", "kinds"),
    [
        ("sample-1min.mock", 969, {"runtime": 1, "state": 30, "event": 937, "response": 1}),
        ("sample-dht-2min.mock", 596, {"runtime": 1, "state": 60, "event": 535}),
        # Computed with this reader (and cross-checked by hand-walking the bytes):
        ("sample-2min.mock", 1250, {"runtime": 1, "state": 60, "event": 1188, "response": 1}),
    ],
)
def test_record_counts(fixtures_dir, name, records, kinds):
    reader, counted, _, _ = _facts(fixtures_dir / name)
    assert reader.records == records
    assert dict(counted) == kinds
    assert reader.checksum_failures == 0
    assert not reader.truncated


def test_sample_1min_facts(fixtures_dir):
    _, _, states, runtime = _facts(fixtures_dir / "sample-1min.mock")
    assert runtime.implementation == "go-libp2p"
    assert runtime.platform == "macOS"
    assert [t.name for t in runtime.event_types] == [
        "PeerConnecting",
        "PeerDisconnecting",
        "InboundDHTQuery",
        "OutboundDHTQuery",
    ]
    assert len(states[0].subsystems.connections) == 6
    last = states[-1].subsystems
    assert len(last.connections) == 10
    assert sum(len(c.streams.streams) for c in last.connections) == 96
    params = last.dht.params
    assert (params.k, params.alpha, params.disjoint_paths) == (20, 3, 10)


def test_sample_dht_2min_facts(fixtures_dir):
    _, _, states, _ = _facts(fixtures_dir / "sample-dht-2min.mock")
    assert len(states[-1].subsystems.connections) == 10


def test_sample_2min_facts(fixtures_dir):
    _, _, states, runtime = _facts(fixtures_dir / "sample-2min.mock")
    assert runtime.implementation == "go-libp2p"
    assert len(states[0].subsystems.connections) == 6
    assert len(states[-1].subsystems.connections) == 12
    assert sum(len(c.streams.streams) for c in states[-1].subsystems.connections) == 116
    assert states[-1].instant_ts - states[0].instant_ts == 118_000
