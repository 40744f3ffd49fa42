"""Hostile recordings in the dashboard: a file costs what its snapshots may hold, not
what a field's value asks for, and the page says what was skipped."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import trio
from hostile_records import (
    START_MS,
    connection,
    empty_connections_state,
    field,
    normal_state,
    runtime,
    state,
    varint_field,
    write,
)

from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.recording import RecordingLoadError, load_recording
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.protocol.wire import RecordLimits


@pytest.fixture(scope="module")
def million(tmp_path_factory) -> Path:
    """Two honest snapshots around one of a million empty connections (2 MB)."""
    path = tmp_path_factory.mktemp("hostile") / "million.mock"
    return write(path, [runtime(), normal_state(1_000), empty_connections_state(1_000_000, 2_000),
                        normal_state(3_000)])  # fmt: skip


def test_a_snapshot_over_the_limits_is_skipped_and_reported(million):
    store, info = load_recording(million)
    assert (info.records, info.states, info.over_limit) == (4, 2, 1)
    assert "more than 40,000 connections" in info.over_limit_reason
    assert store.timeline() == [1_000, 3_000]
    assert info.to_json()["overLimit"] == 1
    model = DashboardModel(Store())
    model.show_recording(store, info)
    notice = model.status()["overLimit"]
    assert notice["count"] == 1
    assert notice["reason"].startswith("1 record over the expansion limits skipped")
    assert "40,000 connections" in notice["reason"]


def test_no_snapshot_within_the_limits_is_an_error_that_says_so():
    data = io.BytesIO()
    write(data, [runtime(), empty_connections_state(50_000)])  # type: ignore[arg-type]
    data.seek(0)
    with pytest.raises(RecordingLoadError, match=r"no snapshot within the dashboard's limits.*"
                                                 r"more than 40,000 connections"):  # fmt: skip
        load_recording(data, name="all-hostile.mock")
    data.seek(0)
    _, info = load_recording(data, name="ok.mock", limits=RecordLimits(max_connections=50_000))
    assert info.states == 1 and info.over_limit == 0


_LOAD = """
import resource, sys
from libp2p_introspection.dashboard.recording import load_recording
{imports}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_recording(sys.argv[1]{limits})
finally:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def _load_growth_mb(path: Path, limits: str = "") -> float:
    code = _LOAD.format(
        imports="from libp2p_introspection.protocol.wire import RecordLimits" if limits else "",
        limits=f", limits={limits}" if limits else "",
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def test_the_million_connection_file_costs_what_its_bytes_do(million):
    # It grew the dashboard by 1.7 GB (peak) and held it 13 s.
    assert _load_growth_mb(million) < 32


def test_memory_at_the_limits_stays_within_the_stated_multiple(tmp_path):
    # A snapshot exactly at (scaled-down) limits, the worst shape there is: every
    # connection and stream empty, so each wire byte becomes the most objects.
    connections, streams_each = 2_000, 10
    limits = RecordLimits(max_connections=connections, max_streams=connections * streams_each)
    path = write(tmp_path / "at-limits.mock", [
        runtime(), state([connection(streams_each)] * connections)])  # fmt: skip
    growth = _load_growth_mb(
        path, f"RecordLimits(max_connections={connections}, max_streams={limits.max_streams})"
    )
    # The documented cost (dashboard/recording.py, README): 2.5 KB per connection and
    # 1.5 KB per stream allowed, plus ten times the record's bytes, at most.
    stated = (2.5 * connections + 1.5 * connections * streams_each) / 1024 + 10 * (
        path.stat().st_size / 2**20
    )
    assert growth < stated + 8  # MB, with slack for the allocator


async def test_an_upload_reports_the_skipped_snapshot_on_the_page(million, nursery):
    dashboard = await nursery.start(
        Dashboard(DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0)).run
    )

    def upload() -> dict:
        request = urllib.request.Request(dashboard.url + "api/recording", data=million.read_bytes(),
                                         headers={"X-File-Name": "million.mock"}, method="POST")  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    answer = await trio.to_thread.run_sync(upload)
    status = answer["status"]
    assert status["recording"]["states"] == 2 and status["recording"]["overLimit"] == 1
    assert "40,000 connections" in status["overLimit"]["reason"]


def test_event_content_that_json_would_blow_up_is_kept_as_text(tmp_path):
    from hostile_records import event

    deep = "[" * 100_000  # json.loads raised RecursionError: the whole load failed
    wide = "[" + "{}," * 20_000 + "{}]"  # 60 KB of text, 20,000 dicts once parsed
    path = write(tmp_path / "events.mock", [runtime(), normal_state(1_000), event(1_001, deep),
                                            event(1_002, wide), event(1_003, '{"a": 1}')])  # fmt: skip
    store, info = load_recording(path)
    assert info.events == 3
    contents = [e["content"] for e in store.events()]
    cut = deep[: 64 * 1024] + f"…(+{100_000 - 64 * 1024} chars)"  # and cut at 64 KiB
    assert contents == [cut, wide, {"a": 1}]


@pytest.mark.parametrize("clock", ["never closing", "frozen clock"])
def test_connections_that_vanish_never_pile_up_past_the_limit(tmp_path, clock):
    # Every record held 10,000 new connections (within the limit), each with close_ts =
    # 2^64 - 1 or all at one instant_ts: the dashboard carried every one that vanished, so
    # an 8.4 MB upload took 75 s of CPU and 1.7 GB, its last snapshot 400,000 connections.
    per, records = 500, 12
    limits = RecordLimits(max_connections=per)

    def record(k: int) -> bytes:
        close = field(6, varint_field(3, 2**64 - 1))
        conns = [field(1, (k * per + i).to_bytes(4, "big")) + close for i in range(per)]
        return state(conns, START_MS if clock == "frozen clock" else START_MS + 1_000 * k)

    path = write(tmp_path / "carry.mock", [runtime(), *(record(k) for k in range(records))])
    store, info = load_recording(path, limits=limits)
    assert info.states == records and info.over_limit == 0
    sizes = [s.summary["conns"] for s in store.snapshots()]
    assert max(sizes) == per, sizes
    assert len(store.latest.data["conns"]) == per
