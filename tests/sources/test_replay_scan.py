"""The scan of a recording (server/sources/replay_scan.py): its shape in bounded memory."""

from __future__ import annotations

from libp2p_introspection.server.sources.replay_scan import GapSample


def test_the_median_gap_of_a_long_recording_uses_bounded_memory():
    sample = GapSample(capacity=64)
    for n in range(10_000):
        sample.add(2_000 if n % 10 else 90_000)  # one gap in ten is a stall
    assert len(sample.kept) < 64 and sample.median() == 2_000
