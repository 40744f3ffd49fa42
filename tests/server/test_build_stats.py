"""The snapshot build statistics are part of the source interface (issue 11): the server's
health reads ``IntrospectionSource.build_stats``, never a source's attributes by name."""

from __future__ import annotations

import trio
from stub_source import StubSource

from libp2p_introspection.abc import BuildStats, IntrospectionSource
from libp2p_introspection.protocol import pb
from libp2p_introspection.server import IntrospectionServer, ServerConfig


class _CountingOwnClock(IntrospectionSource):
    """A source with a clock of its own that still builds snapshots, and says what that cost."""

    def runtime(self) -> pb.Runtime:
        return pb.Runtime(implementation="own-clock", peer_id="QmOwn")

    async def run(self, outlet, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        raise AssertionError("not run by this test")

    @property
    def build_stats(self) -> BuildStats:
        return BuildStats(builds=7, seconds=0.25, errors=2)


def test_the_health_reports_the_sources_build_stats():
    health = IntrospectionServer(_CountingOwnClock(), ServerConfig(port=0)).health()
    assert (health.snapshot_builds, health.snapshot_build_seconds) == (7, 0.25)
    assert health.snapshot_errors_total == 2


def test_a_source_that_builds_nothing_reports_zeros():
    class Silent(_CountingOwnClock):
        build_stats = IntrospectionSource.build_stats

    assert Silent().build_stats == BuildStats(0, 0.0, 0)


def test_a_sampled_source_counts_its_builds_and_failures():
    class Outlet:
        interval_ms = 1_000
        frames: list[bytes] = []

        def publish_snapshot(self, frame: bytes) -> None:
            self.frames.append(frame)

    source = StubSource()
    outlet = Outlet()
    assert source.take_snapshot(outlet) and source.take_snapshot(outlet)  # type: ignore[arg-type]
    source.fail_next_state = True
    assert not source.take_snapshot(outlet)  # type: ignore[arg-type]
    stats = source.build_stats
    assert (stats.builds, stats.errors) == (2, 1) and stats.seconds >= 0
    health = IntrospectionServer(source, ServerConfig(port=0)).health()
    assert (health.snapshot_builds, health.snapshot_errors_total) == (2, 1)
