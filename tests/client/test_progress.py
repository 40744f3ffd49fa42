"""The recorder's progress lines (stderr not a terminal) say what the file holds."""

from __future__ import annotations

import logging

from libp2p_introspection.client import progress
from libp2p_introspection.client.recorder import RecordStats


def test_the_first_progress_line_counts_the_first_snapshot(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.INFO, logger="libp2p_introspection.record")
    stats = RecordStats(started=clock[0])
    with progress.progress_reporter(terminal=False, total=3) as report:
        stats.runtimes, stats.records, stats.bytes = 1, 1, 120
        report(stats)  # the Runtime alone is written first: no line yet
        stats.snapshots, stats.records, stats.bytes = 1, 2, 978
        report(stats)
        stats.snapshots = 2
        clock[0] += 1
        report(stats)  # within LOG_EVERY_S of the last line: none
        clock[0] += progress.LOG_EVERY_S
        stats.snapshots, stats.events = 3, 1
        report(stats)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" (")[0] for line in lines] == [
        "recorded 1 snapshot, 0 events, 978 bytes",
        "recorded 3 snapshots, 1 event, 978 bytes",
    ]
