"""`inspect --dump` as jq sees it: ids one way (hex; transport as text), and a damaged
file reported on stderr with its own exit status, as `inspect` reports it."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_records import event, normal_state, runtime, write

from libp2p_introspection.client.inspect_file import dump, render, summarize
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingWriter
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

CLI = [sys.executable, "-m", "libp2p_introspection"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def _synthetic_recording(path: Path) -> Path:
    """Three snapshots of a synthetic node (our id scheme) and the events it emitted."""
    source = SyntheticSource(SyntheticOptions(connections=4, streams=2, dht_peers=0,
                                              churn=0.5, seed=7))  # fmt: skip
    events: list[pb.Event] = []
    source.set_event_sink(events.append)
    with RecordingWriter(path) as writer:
        message = pb.ServerMessage()
        message.runtime.CopyFrom(source.runtime())
        writer.write_message(message)
        for _ in range(3):
            state = source.state()
            for emitted in events:
                message = pb.ServerMessage()
                message.event.CopyFrom(emitted)
                writer.write_message(message)
            events.clear()
            message = pb.ServerMessage()
            message.state.CopyFrom(state)
            writer.write_message(message)
    return path


def test_events_join_their_connections_and_streams_by_equal_strings(tmp_path):
    # The dump wrote ids in base64 (protobuf's JSON mapping), events in hex: a join
    # with jq needed a conversion.
    path = _synthetic_recording(tmp_path / "synthetic.mock")
    result = _run("inspect", str(path), "--dump")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    connections, streams = set(), set()
    for line in lines:
        for conn in line.get("state", {}).get("subsystems", {}).get("connections", []):
            connections.add(conn["id"])
            assert conn["transportId"] == "tcp"
            for stream in conn.get("streams", {}).get("streams", []):
                streams.add(stream["id"])
    contents = [json.loads(line["event"]["content"]) for line in lines if "event" in line]
    opened = [c for c in contents if "streamId" in c]
    assert opened and len(contents) > len(opened)
    # (events of the node and its pubsub router name no connection)
    assert {c["connId"] for c in contents if "connId" in c} <= connections
    assert {c["streamId"] for c in opened} <= streams
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in connections)  # 8 bytes, hex


def test_every_id_field_is_hex_and_the_rest_keeps_protobufs_mapping():
    from libp2p_introspection.protocol.ids import message_to_json

    message = pb.ServerMessage()
    message.version.version = 1
    state = message.state
    state.instant_ts = 1_700_000_000_000
    relay = state.subsystems.connections.add(id=b"\x00\xab", transport_id=b"\x02\x00\x00\x00")
    relay.streams.stream_ids.extend([b"\x01", b"\xfe\xff"])
    relayed = state.subsystems.connections.add(id=b"\x10", transport_id=b"tcp", conn_id=b"\x00\xab")
    stream = relayed.streams.streams.add(id=b"\x10\x01", protocol="/ipfs/ping/1.0.0")
    stream.conn.conn_id = b"\x10"
    other = state.subsystems.connections.add(id=b"\x20", transport_id=b"quic v1")
    nested = other.conn  # relayed_over as a whole Connection
    nested.id = b"\x00\xab"
    nested.streams.streams.add(id=b"\x99").conn.conn.id = b"\x00\xab"
    state.subsystems.connections.add(status=pb.CLOSED)  # no id at all: stays absent
    data = message_to_json(message)
    conns = data["state"]["subsystems"]["connections"]
    assert conns[0]["id"] == "00ab" and conns[0]["transportId"] == "02000000"
    assert conns[0]["streams"]["streamIds"] == ["01", "feff"]
    assert conns[1]["transportId"] == "tcp" and conns[1]["connId"] == "00ab"
    assert conns[1]["streams"]["streams"][0]["id"] == "1001"
    assert conns[1]["streams"]["streams"][0]["conn"] == {"connId": "10"}
    assert conns[2]["transportId"] == "quic v1"
    assert conns[2]["conn"]["id"] == "00ab"
    assert conns[2]["conn"]["streams"]["streams"][0] == {"id": "99", "conn": {"conn": {"id": "00ab"}}}
    assert conns[3] == {"status": "CLOSED"}
    # The rest is protobuf's JSON mapping, as before: camelCase, 64-bit integers as strings.
    assert data["state"]["instantTs"] == "1700000000000" and data["version"] == {"version": 1}
    assert conns[1]["streams"]["streams"][0]["protocol"] == "/ipfs/ping/1.0.0"


@pytest.mark.parametrize(
    ("value", "text"),
    [(b"tcp", "tcp"), (b"", ""), (b"~ ok", "~ ok"), (b"tcp\n", "7463700a"),
     (b"\xc3\xa9", "c3a9"), (b"\x7f", "7f")],
)  # fmt: skip
def test_a_transport_id_is_text_only_when_it_is_printable_ascii(value, text):
    from libp2p_introspection.protocol.ids import transport_text

    assert transport_text(value) == text


def test_the_dashboard_writes_a_transport_id_the_same_way():
    from libp2p_introspection.dashboard.convert_swarm import connection_to_json
    from libp2p_introspection.protocol.ids import transport_text

    for value in (b"tcp", b"\xc3\xa9t\xc3\xa9", b"\x02\x00"):
        assert connection_to_json(pb.Connection(transport_id=value))["transport"] == (
            transport_text(value)
        )


# ------------------------------------------------------------ damaged files


def _damaged(path: Path) -> Path:
    """Five records; the third's checksum is broken and the tail is cut mid-record."""
    write(path, [runtime(), normal_state(1_000), event(1_500), normal_state(2_000),
                 event(2_500)])  # fmt: skip
    data = bytearray(path.read_bytes())
    offset = 4
    for _ in range(2):  # skip two records: [fnv][len][message]
        length = int.from_bytes(data[offset + 4 : offset + 8], "little")
        offset += 8 + length
    data[offset] ^= 0xFF  # the third record's checksum
    path.write_bytes(bytes(data[:-3]))  # and the last record cut short
    return path


@pytest.mark.parametrize("mode", [["--dump"], ["--json"], []], ids=["dump", "json", "text"])
def test_a_damaged_file_is_reported_on_stderr_and_exits_3(tmp_path, mode):
    # --dump printed what it could and exited 0 without a word.
    path = _damaged(tmp_path / "damaged.mock")
    result = _run("inspect", str(path), *mode)
    assert result.returncode == 3, result.stderr  # inspect_file.EXIT_DAMAGED
    assert f"{path}: 1 record failed its checksum (skipped)" in result.stderr
    assert f"{path}: truncated at offset" in result.stderr
    assert "Traceback" not in result.stderr
    if mode == ["--dump"]:
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [next(iter(line.keys() - {"version"})) for line in lines] == [
            "runtime", "state", "state"]  # everything readable, in order  # fmt: skip


def test_a_sound_file_exits_0_with_nothing_on_stderr(fixtures_dir):
    for mode in (["--dump"], ["--json"], []):
        result = _run("inspect", str(fixtures_dir / "sample-1min.mock"), *mode)
        assert result.returncode == 0 and result.stderr == "", (mode, result.stderr)


def test_one_record_is_one_record(tmp_path):
    path = write(tmp_path / "one.mock", [runtime()])
    text = render(summarize(path))
    assert text.splitlines()[0].endswith(": 1 record, " + f"{path.stat().st_size} bytes")
    assert "1 records" not in text


def test_the_dump_report_counts_what_it_skipped(tmp_path):
    from libp2p_introspection.client.inspect_file import DumpReport

    report = DumpReport()
    notes: list[str] = []
    lines = list(dump(_damaged(tmp_path / "d.mock"), report=report, on_skip=notes.append))
    assert len(lines) == report.lines == 3 and report.records == 3
    assert report.checksum_failures == 1 and report.truncated and report.damaged
    assert notes == report.problems and len(notes) == 2


def test_base64_is_gone_from_the_dump(tmp_path):
    path = write(tmp_path / "ids.mock", [runtime(), normal_state(1_000)])
    (_, state_line) = list(dump(path))
    conns = json.loads(state_line)["state"]["subsystems"]["connections"]
    assert [c["id"] for c in conns] == ["01", "02"]
    assert base64.b64encode(b"\x01").decode() not in state_line  # "AQ=="


def test_help_documents_the_exit_status():
    text = " ".join(_run("inspect", "--help").stdout.split())
    assert "Exit status: 0 the file is sound; 1 it cannot be read as a recording" in text
    assert "3 it is damaged" in text
