"""`inspect`'s summary on hostile recordings: what a record holds never sets what it costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_records import empty_connections_state, event, normal_state, runtime, write

from libp2p_introspection.client.inspect_file import dump, render, summarize
from libp2p_introspection.protocol.wire import RecordLimits

HOSTILE_CONNECTIONS = 1_000_000  # 2 MB on the wire


@pytest.fixture(scope="module")
def hostile_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "million.mock"
    return write(path, [runtime(), normal_state(1_000), empty_connections_state(HOSTILE_CONNECTIONS,
                                                                              2_000)])


@pytest.fixture(scope="module")
def benign_file(tmp_path_factory, hostile_file) -> Path:
    """As many bytes as the hostile file, in one event's content: costs only its bytes."""
    path = tmp_path_factory.mktemp("benign") / "big-event.mock"
    size = hostile_file.stat().st_size
    return write(path, [runtime(), normal_state(1_000), event(2_000, "x" * (size - 200))])


def test_a_snapshot_over_the_limits_is_skipped_and_reported(hostile_file):
    summary = summarize(hostile_file)
    assert summary["records"] == 3 and summary["over_limit"] == 1
    assert "more than 40,000 connections" in summary["over_limit_reason"]
    assert summary["kinds"]["state"] == 1  # the honest one
    assert summary["states"]["last_connections"] == 2
    assert summary["states"]["last_instant_ts"] == 1_000
    text = render(summary)
    assert "1 record over the expansion limits skipped" in text and "40,000 connections" in text


def test_with_the_limits_raised_the_walk_counts_what_it_never_builds(hostile_file):
    summary = summarize(hostile_file, limits=RecordLimits(max_connections=2_000_000))
    assert summary["over_limit"] == 0
    assert summary["states"]["last_connections"] == HOSTILE_CONNECTIONS
    assert summary["states"]["last_instant_ts"] == 2_000


def test_dump_skips_what_it_cannot_parse_safely_and_says_so(hostile_file):
    notes: list[str] = []
    lines = [json.loads(line) for line in dump(hostile_file, on_skip=notes.append)]
    assert [next(iter(line.keys() - {"version"})) for line in lines] == ["runtime", "state"]
    assert len(notes) == 1 and "40,000 connections" in notes[0]


# VmHWM (this process's own peak RSS, KiB), not ru_maxrss: on Linux ru_maxrss carries
# the parent's peak across fork and exec, so in a large pytest process "before" could
# already be above anything summarize() reaches and the test would check nothing.
_PEAK = """
import sys
from libp2p_introspection.client.inspect_file import summarize
{imports}
def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
before = peak()
summary = summarize(sys.argv[1]{limits})
print(peak() - before)
"""


def _peak_growth_mb(path: Path, raised: bool = False) -> float:
    code = _PEAK.format(
        imports="from libp2p_introspection.protocol.wire import RecordLimits" if raised else "",
        limits=", limits=RecordLimits(max_connections=2_000_000)" if raised else "",
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=120, check=True)  # fmt: skip
    return int(result.stdout) / 1024  # VmHWM is in KiB


def test_memory_does_not_follow_what_a_record_holds(hostile_file, benign_file):
    # Parsing the million connections took 160 MB more than the benign file (193 MB peak).
    benign = _peak_growth_mb(benign_file)
    assert _peak_growth_mb(hostile_file) < benign + 16
    # Even walked to the end and counted, the record costs what its bytes cost.
    assert _peak_growth_mb(hostile_file, raised=True) < benign + 16
