"""``inspect``'s summary is the same with the C wire walk as without it.

With the C walk (``protocol/_wirewalk.c``) the summary reads a snapshot's
§3.1 counts once, from the last snapshot, instead of from every one; these
tests hold the result to the pure-Python path's (the summary as it always
was) on the fixture recordings and on files damaged in every way the
summary reports: records that do not parse, snapshots over the caps,
snapshots whose §3.1 levels protowire refuses, in the middle and at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hostile_records import (
    connection,
    empty_connections_state,
    event,
    normal_state,
    runtime,
    state,
    write,
)

from libp2p_introspection.client.inspect_file import summarize
from libp2p_introspection.protocol import pb, wire
from libp2p_introspection.protocol.framing import encode_varint
from libp2p_introspection.protocol.recording import RecordingReader

START = 1_700_000_000_000
_FIXTURE_NAMES = ("sample-1min.mock", "sample-2min.mock", "sample-dht-2min.mock")
needs_c = pytest.mark.skipif(not wire.ACCELERATED, reason="the C walk is not built here")


def _python_summary(monkeypatch, path, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(wire, "_wirewalk", None)
        return summarize(path, **kwargs)


@needs_c
@pytest.mark.parametrize("name", _FIXTURE_NAMES)
def test_fixture_summaries_are_the_same(fixtures_dir, monkeypatch, name):
    path = fixtures_dir / name
    summary = summarize(path)
    assert summary == _python_summary(monkeypatch, path)
    assert summary["states"]["last_connections"] is not None


def _whole_node_state(ts: int, n: int) -> bytes:
    """A snapshot with every §3.1 count the summary shows set (``n`` of each)."""
    message = pb.ServerMessage()
    message.version.version = 1
    message.state.instant_ts = ts
    message.state.node.reachability = pb.NodeInfo.PUBLIC if n % 2 else pb.NodeInfo.PRIVATE
    message.state.node.listen_addrs.append("/ip4/127.0.0.1/tcp/4001")
    for k in range(n):
        message.state.protocols.add(protocol=f"/p/{k}")
        conn = message.state.subsystems.connections.add(id=bytes([k + 1]))
        conn.peer.agent_version = "agent"
        message.state.subsystems.pubsub.topics.add(name=f"t{k}")
        message.state.subsystems.resources.scopes.add(name=f"s{k}")
    message.state.subsystems.connections.add(id=b"\xff")  # one not identified
    message.state.subsystems.resources.blocked = 7 * n
    return message.SerializeToString()


def _group_in_connection() -> bytes:
    # The walk accepts an unknown group; protowire, which the §3.1 counts read, does not.
    return state(
        [connection(extra=encode_varint(9 << 3 | 3) + encode_varint(9 << 3 | 4))],
        START + 5_000,
    )


def _field_zero_in_connection(ts: int) -> bytes:
    return state([connection(extra=b"\x02\x00")], ts)


def _bad_utf8_event(ts: int) -> bytes:
    return event(ts, name="E").replace(b"\x0a\x01E", b"\x0a\x01\xff")


def _cases(fixtures_dir):
    with RecordingReader(fixtures_dir / "sample-dht-2min.mock", limits=None) as reader:
        real = [record.data for record in reader]
    return {
        "faulty levels in the middle": [
            runtime(),
            normal_state(START),
            _group_in_connection(),
            normal_state(START + 9_000, connections=3),
        ],
        "faulty levels at the end": [
            runtime(),
            normal_state(START),
            normal_state(START + 1_000, connections=4),
            _field_zero_in_connection(START + 2_000),
        ],
        "only faulty levels": [_field_zero_in_connection(START), _group_in_connection()],
        "over the caps between real records": [
            *real[:40],
            empty_connections_state(50_000, START + 3_000),
            *real[40:],
        ],
        "unparsable and bad names": [
            *real[:30],
            b"\x12\x05\x0a",
            _bad_utf8_event(START),
            normal_state(START + 7_000),
            b"\x13\x08\x01",
            *real[30:60],
        ],
        "nothing but events": [event(START + n, name=f"E{n % 3}") for n in range(9)],
        "whole-node snapshots": [_whole_node_state(START + n * 1_000, n) for n in range(1, 6)],
        "whole-node, faulty last": [
            _whole_node_state(START, 3),
            _whole_node_state(START + 1_000, 4),
            _group_in_connection(),
        ],
    }


@needs_c
def test_damaged_file_summaries_are_the_same(fixtures_dir, monkeypatch, tmp_path):
    for name, records in _cases(fixtures_dir).items():
        path = write(tmp_path / f"{name}.mock", records)
        summary = summarize(path)
        assert summary == _python_summary(monkeypatch, path), name
    # The cases do reach what they are named for.
    faulty_end = summarize(tmp_path / "faulty levels at the end.mock")
    assert faulty_end["unparsable"] == 1
    assert faulty_end["states"]["last_extensions"] is not None
    assert summarize(tmp_path / "over the caps between real records.mock")["over_limit"] == 1
    assert summarize(tmp_path / "whole-node snapshots.mock")["states"]["last_extensions"] == {
        "reachability": "PUBLIC",
        "protocols": 5,
        "identified": 5,
        "pubsub_topics": 5,
        "resource_scopes": 5,
        "resources_blocked": 35,
    }
    faulty_last = summarize(tmp_path / "whole-node, faulty last.mock")["states"]
    assert faulty_last["last_extensions"]["protocols"] == 4  # from the last that read cleanly
    # A faulty snapshot counts for nothing: the last counts are the last sound one's.
    assert faulty_last["last_connections"] == 5 and faulty_last["last_instant_ts"] == START + 1_000


@needs_c
def test_damaged_summaries_under_tight_limits_are_the_same(fixtures_dir, monkeypatch, tmp_path):
    limits = wire.RecordLimits(max_connections=2, max_streams=3, max_entries=5)
    for name, records in _cases(fixtures_dir).items():
        path = write(tmp_path / f"{name}.mock", records)
        summary = summarize(path, limits=limits)
        assert summary == _python_summary(monkeypatch, path, limits=limits), name


def test_without_the_compiled_walk_inspect_gives_the_same_summary(fixtures_dir):
    # A machine with no compiler installs without the C module: the summary is unchanged.
    path = fixtures_dir / "sample-1min.mock"
    script = (
        "import json, sys\n"
        "sys.modules['libp2p_introspection.protocol._wirewalk'] = None\n"
        "from libp2p_introspection.protocol import wire\n"
        "assert not wire.ACCELERATED\n"
        "from libp2p_introspection.client.inspect_file import summarize\n"
        f"print(json.dumps(summarize({str(path)!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == json.loads(json.dumps(summarize(path)))


@needs_c
def test_the_summary_reads_the_section_3_1_counts_of_one_snapshot(fixtures_dir, monkeypatch):
    # Only the last snapshot's are shown: reading every snapshot's cost inspect 20 times
    # what checking the file's checksums does.
    from libp2p_introspection.client import inspect_file

    read = []
    real = inspect_file._extensions
    monkeypatch.setattr(
        inspect_file, "_extensions", lambda data, *args: read.append(1) or real(data, *args)
    )
    summary = summarize(fixtures_dir / "sample-2min.mock")
    assert summary["kinds"]["state"] == 60 and summary["states"]["last_extensions"] is not None
    assert len(read) == 1
