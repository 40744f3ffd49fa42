"""`record` and `inspect` as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from cli_process import running

from libp2p_introspection.protocol.recording import RecordingReader

CLI = [sys.executable, "-m", "libp2p_introspection"]

FIXTURE_FACTS = {
    "sample-1min.mock": {"records": 969, "runtime": 1, "state": 30, "event": 937, "response": 1,
                         "last_connections": 10, "last_streams": 96},
    "sample-dht-2min.mock": {"records": 596, "runtime": 1, "state": 60, "event": 535,
                             "response": 0, "last_connections": 10},
    "sample-2min.mock": {"records": 1250, "runtime": 1, "state": 60, "event": 1188, "response": 1,
                         "last_connections": 12, "last_streams": 116},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FIXTURE_FACTS))
def test_inspect_json_on_every_fixture(fixtures_dir, name):
    result = subprocess.run([*CLI, "inspect", str(fixtures_dir / name), "--json"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    facts = FIXTURE_FACTS[name]
    assert summary["records"] == facts["records"]
    for kind in ("runtime", "state", "event", "response"):
        assert summary["kinds"][kind] == facts[kind]
    assert summary["kinds"]["notice"] == 0
    assert summary["checksum_failures"] == 0
    assert summary["truncated"] is False
    runtime = summary["runtime"]
    assert (runtime["implementation"], runtime["platform"]) == ("go-libp2p", "macOS")
    assert runtime["event_types"] == [
        "PeerConnecting", "PeerDisconnecting", "InboundDHTQuery", "OutboundDHTQuery",
    ]  # fmt: skip
    assert summary["states"]["last_connections"] == facts["last_connections"]
    if "last_streams" in facts:
        assert summary["states"]["last_streams"] == facts["last_streams"]
    assert summary["states"]["first_instant_ts"] < summary["states"]["last_instant_ts"]
    assert sum(summary["events"].values()) == facts["event"]


def test_inspect_dump_is_one_json_line_per_record(fixtures_dir):
    result = subprocess.run([*CLI, "inspect", str(fixtures_dir / "sample-dht-2min.mock"),
                             "--dump"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 596
    assert "runtime" in lines[0]
    assert sum(1 for line in lines if "state" in line) == 60


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x02\x00\x00\x00", "version 2"),
        (b"<html>not a recording</html>", "not a recording"),
        (b"\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff", "above the"),
    ],
)
def test_inspect_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.mock"
    path.write_bytes(content)
    result = subprocess.run([*CLI, "inspect", str(path)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_record_from_replay_then_inspect(tmp_path, fixtures_dir):
    out = tmp_path / "rec.mock"
    with running([*CLI[1:], "serve", "--source", str(fixtures_dir / "sample-1min.mock"),
                  "--speed", "20", "--port", "0"]) as (_, url):  # fmt: skip
        result = subprocess.run([*CLI, "record", url, "-o", str(out), "--count", "5"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "5 snapshots" in result.stderr and "completed" in result.stderr
    summary = json.loads(subprocess.run([*CLI, "inspect", str(out), "--json"],
                                        capture_output=True, text=True, timeout=60).stdout)  # fmt: skip
    assert summary["kinds"]["state"] == 5
    assert summary["runtime"]["implementation"] == "go-libp2p"


def test_record_exits_non_zero_when_the_server_goes_away(tmp_path, fixtures_dir):
    out = tmp_path / "cut.mock"
    with running([*CLI[1:], "serve", "--source", str(fixtures_dir / "sample-1min.mock"),
                  "--speed", "20", "--port", "0"]) as (server, url):  # fmt: skip
        recorder = subprocess.Popen([*CLI, "record", url, "-o", str(out)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 30
        while (not out.exists() or out.stat().st_size < 10_000) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.send_signal(signal.SIGINT)
        _, stderr = recorder.communicate(timeout=30)
    assert recorder.returncode == 1, stderr
    assert "server closed the connection" in stderr
    with RecordingReader(out) as reader:
        assert sum(1 for _ in reader) > 0
        assert reader.checksum_failures == 0 and not reader.truncated


def test_recorder_killed_with_sigkill_leaves_a_readable_file(tmp_path, fixtures_dir):
    out = tmp_path / "killed.mock"
    with running([*CLI[1:], "serve", "--source", str(fixtures_dir / "sample-2min.mock"),
                  "--speed", "50", "--loop", "--port", "0"]) as (_, url):  # fmt: skip
        recorder = subprocess.Popen([*CLI, "record", url, "-o", str(out), "--mode", "push"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        while (not out.exists() or out.stat().st_size < 200_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
    assert recorder.returncode == -signal.SIGKILL
    with RecordingReader(out) as reader:
        records = sum(1 for _ in reader)
        assert reader.checksum_failures == 0
    assert records > 10
    result = subprocess.run([*CLI, "inspect", str(out), "--json"], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0
    assert json.loads(result.stdout)["records"] == records


def test_record_stopped_with_ctrl_c_closes_the_file_and_summarizes(tmp_path, fixtures_dir):
    out = tmp_path / "interrupted.mock"
    with running([*CLI[1:], "serve", "--source", str(fixtures_dir / "sample-1min.mock"),
                  "--speed", "20", "--loop", "--port", "0"]) as (_, url):  # fmt: skip
        recorder = subprocess.Popen([*CLI, "record", url, "-o", str(out), "--mode", "push"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 30
        while (not out.exists() or out.stat().st_size < 50_000) and time.monotonic() < deadline:
            time.sleep(0.02)
        recorder.send_signal(signal.SIGINT)
        _, stderr = recorder.communicate(timeout=30)
    assert recorder.returncode == 0, stderr
    assert "stopped" in stderr and "Traceback" not in stderr
    with RecordingReader(out) as reader:
        records = sum(1 for _ in reader)
        assert reader.checksum_failures == 0 and not reader.truncated
    assert f"{records} records" in stderr


@pytest.mark.parametrize("mode", ["push", "pull"])
def test_record_a_count_of_snapshots_from_a_node_flooding_events(tmp_path, mode):
    """Issue 9, case 8: with 20 000 events/s filling the server's queue for this
    session, `record --count` still gets its snapshots (events go before snapshots,
    §4.6) and stops. The timeout bounds a failure; it is not a speed claim."""
    out = tmp_path / f"flood-{mode}.mock"
    with running([*CLI[1:], "serve", "--source", "mock", "--events-per-second", "20000",
                  "--interval-ms", "200", "--port", "0"]) as (_, url):  # fmt: skip
        result = subprocess.run([*CLI, "record", url, "-o", str(out), "--mode", mode,
                                 "--count", "8", "--no-progress"],
                                capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "8 snapshots" in result.stderr and "completed" in result.stderr
    instants, events = [], 0
    with RecordingReader(out) as reader:
        for record in reader:
            message = record.message()
            kind = message.WhichOneof("payload")
            if kind == "state":
                instants.append(message.state.instant_ts)
            events += kind == "event"
        assert reader.checksum_failures == 0 and not reader.truncated
    assert len(instants) == 8 and instants == sorted(set(instants))
    assert events > 0  # the flood was on


def test_inspect_reports_a_snapshot_over_the_limits_and_the_option_raises_them(tmp_path):
    from hostile_records import empty_connections_state, normal_state, runtime, write

    path = write(tmp_path / "wide.mock", [runtime(), normal_state(1_000),
                                          empty_connections_state(50_000, 2_000)])  # fmt: skip
    result = subprocess.run([*CLI, "inspect", str(path)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 record over the expansion limits skipped" in result.stdout
    assert "more than 40,000 connections" in result.stdout
    result = subprocess.run([*CLI, "inspect", str(path), "--json", "--max-connections", "50000"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    summary = json.loads(result.stdout)
    assert summary["over_limit"] == 0 and summary["states"]["last_connections"] == 50_000


def test_serve_a_hostile_recording_logs_what_it_skips_and_keeps_serving(tmp_path):
    from hostile_records import empty_connections_state, normal_state, runtime, write

    path = write(tmp_path / "mixed.mock", [
        runtime(), normal_state(1_000), empty_connections_state(1_000_000, 2_000),
        normal_state(3_000)])  # fmt: skip
    with running([*CLI[1:], "serve", "--source", str(path), "--speed", "20", "--loop",
                  "--port", "0"]) as (server, url):  # fmt: skip
        result = subprocess.run([*CLI, "watch", url, "--count", "4", "--no-events", "--json"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [line["kind"] for line in lines] == ["runtime"] + ["state"] * 4
        assert all(line["connections"] == 2 for line in lines[1:])
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
        stderr = server.stderr.read()
    assert "more than 40,000 connections" in stderr and "skipped" in stderr
