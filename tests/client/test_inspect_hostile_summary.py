"""``inspect``'s summary on recordings built to mislead it: a faulty snapshot changes no
count but ``unparsable``, a flood of distinct event type names costs bounded memory, and
no string from the file can forge a line of the text summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hostile_records import event, field, normal_state, runtime, varint_field, write

from libp2p_introspection.client.inspect_file import (
    MAX_EVENT_TYPES,
    MAX_TYPE_NAME,
    render,
    summarize,
)
from libp2p_introspection.protocol import pb, wire

START = 1_700_000_000_000


def _state_with_node(node: bytes, ts: int) -> bytes:
    """A snapshot whose ``NodeInfo`` (State field 100) body is ``node``."""
    inner = field(1, b"") + varint_field(3, ts) + field(100, node)
    return field(1, varint_field(1, 1)) + field(2, inner)


def _faulty_node_state(ts: int) -> bytes:
    """A snapshot the wire walk accepts but whose ``NodeInfo`` holds field number 0:
    protowire, which reads the §3.1 counts, refuses it (so a parser would)."""
    return _state_with_node(b"\x00\x00", ts)


@pytest.fixture(params=["C", "Python"])
def walk(request, monkeypatch):
    """Each test runs with the C walk (where built) and with the Python one alone."""
    if request.param == "C":
        if not wire.ACCELERATED:
            pytest.skip("the C walk is not built here")
    else:
        monkeypatch.setattr(wire, "_wirewalk", None)
    return request.param


def test_a_faulty_last_snapshot_leaves_the_states_of_the_sound_ones(tmp_path, walk):
    sound = _state_with_node(varint_field(3, 1), START)  # reachability PUBLIC
    path = write(tmp_path / "faulty-last.mock", [runtime(), sound, _faulty_node_state(START + 9)])
    summary = summarize(path)
    assert summary["unparsable"] == 1 and summary["kinds"]["state"] == 1
    alone = summarize(write(tmp_path / "sound.mock", [runtime(), sound]))
    assert summary["states"] == alone["states"]
    assert summary["states"]["last_instant_ts"] == START
    assert summary["states"]["last_extensions"]["reachability"] == "PUBLIC"


def test_a_faulty_first_snapshot_sets_no_first_instant(tmp_path, walk):
    path = write(
        tmp_path / "faulty-first.mock",
        [runtime(), _faulty_node_state(1), normal_state(START, connections=3)],
    )
    summary = summarize(path)
    assert summary["unparsable"] == 1 and summary["kinds"]["state"] == 1
    assert summary["states"]["first_instant_ts"] == START
    assert summary["states"]["last_instant_ts"] == START
    assert summary["states"]["last_connections"] == 3


def test_only_faulty_snapshots_leave_no_states(tmp_path, walk):
    path = write(tmp_path / "faulty-only.mock", [_faulty_node_state(5), _faulty_node_state(6)])
    summary = summarize(path)
    assert summary["unparsable"] == 2 and summary["kinds"]["state"] == 0
    assert set(summary["states"].values()) == {None}


# ------------------------------------------------------ many distinct type names

NAMES = MAX_EVENT_TYPES + 20_000  # distinct 2,000-character names: 64 MB of file
LONG = "x" * 2_000


@pytest.fixture(scope="module")
def many_names(tmp_path_factory):
    path = tmp_path_factory.mktemp("names") / "many-names.mock"
    return write(path, (event(START + n, name=f"E{n:07d}{LONG}") for n in range(NAMES)))


def test_distinct_type_names_past_the_cap_are_counted_together(many_names):
    summary = summarize(many_names)
    events = summary["events"]
    assert len(events) == MAX_EVENT_TYPES
    assert summary["events_other_types"] == NAMES - MAX_EVENT_TYPES
    assert sum(events.values()) + summary["events_other_types"] == summary["kinds"]["event"]
    # Each name kept is cut as `watch` cuts a value, and still says which type it is.
    assert {len(name) for name in events} == {MAX_TYPE_NAME + 1}
    assert all(name.endswith("…") for name in events)
    assert f"E{0:07d}{LONG[: MAX_TYPE_NAME - 8]}…" in events
    text = render(summary)
    assert f"{NAMES - MAX_EVENT_TYPES} events of further types counted together" in text
    assert json.loads(json.dumps(summary))["events_other_types"] == NAMES - MAX_EVENT_TYPES


# The process's own peak (VmHWM, KiB): ru_maxrss would carry pytest's over the exec.
_PEAK = """
import sys
from libp2p_introspection.client.inspect_file import summarize
def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
before = peak()
summarize(sys.argv[1])
print(peak() - before)
"""


def test_memory_does_not_follow_the_number_of_type_names(many_names):
    # Every name counted kept 30,000 x 2 KB of keys: 65 MB more at the peak (4 MB now).
    result = subprocess.run([sys.executable, "-c", _PEAK, str(many_names)], capture_output=True,
                            text=True, timeout=120, check=True)  # fmt: skip
    assert int(result.stdout) / 1024 < 16  # MB


def test_a_normal_files_events_are_all_counted_by_name(tmp_path):
    names = [f"Type{n % 7}" for n in range(70)]
    path = write(tmp_path / "normal.mock", [runtime(), *(event(START, name=n) for n in names)])
    summary = summarize(path)
    assert summary["events"] == {f"Type{k}": 10 for k in range(7)}
    assert summary["events_other_types"] == 0
    assert "further types" not in render(summary)


# ------------------------------------------------------------- forged lines

FORGED = "QmReal\n  no damaged records\r\n  runtime: go-libp2p v0.40 on linux, peer QmTrusted"


def _forging_file(path):
    message = pb.ServerMessage()
    message.version.version = 1
    message.runtime.implementation = "go-libp2p\n  FORGED implementation"
    message.runtime.version = "v1\r  FORGED version"
    message.runtime.platform = "linux\t\u2028FORGED platform"
    message.runtime.peer_id = FORGED
    message.runtime.event_types.add(name="T\n  FORGED event types")
    records = [message.SerializeToString(), event(START, name="E\x0bFORGED events"), event(1)]
    write(path, records)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # the last record now fails its checksum: the file is damaged
    path.write_bytes(bytes(data))
    return path


def _assert_no_forged_line(text):
    lines = text.splitlines()
    assert "  no damaged records" not in lines
    assert not any(line.startswith("  runtime: go-libp2p v0.40") for line in lines)
    assert not any(line.lstrip().startswith("FORGED") for line in lines)
    assert "\r" not in text and "\t" not in text


def test_no_string_from_the_file_starts_a_line_of_the_text_summary(tmp_path):
    summary = summarize(_forging_file(tmp_path / "forged.mock"))
    assert summary["checksum_failures"] == 1
    assert summary["runtime"]["peer_id"] == FORGED  # the data itself is kept as it was
    text = render(summary)
    _assert_no_forged_line(text)
    # file, kinds, damage, runtime, event types, events
    assert len(text.splitlines()) == 6
    assert "events: E\\x0bFORGED events 1" in text
    # Still there, as escapes a person can read.
    assert "peer QmReal\\n  no damaged records\\r\\n  runtime: go-libp2p" in text
    assert "event types: T\\n  FORGED event types" in text


def test_the_cli_prints_the_files_strings_escaped_once(tmp_path):
    path = _forging_file(tmp_path / "forged.mock")
    result = subprocess.run([sys.executable, "-m", "libp2p_introspection.cli", "inspect",
                             str(path)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 3, result.stderr  # damaged
    _assert_no_forged_line(result.stdout)
    assert "peer QmReal\\n  no damaged records\\r\\n" in result.stdout  # not \\\\n
    assert "1 record failed its checksum" in result.stdout
