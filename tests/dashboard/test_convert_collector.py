"""The dashboard process's garbage collector (:func:`.convert.tune_collector`): following
a big node, a snapshot no longer sets off a full collection (which walks every object
the process holds) or two; what the snapshots leave is freed all the same."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

from click.testing import CliRunner

from libp2p_introspection.cli import clients, main
from libp2p_introspection.dashboard.convert import COLLECTOR_THRESHOLDS, tune_collector

#: A process of its own, as the dashboard is: it follows 20 snapshots of a node of
#: 1,000 connections x 10 streams (the mock's churn), then prints how many full
#: collections ran meanwhile and how many objects the process held before and after.
FOLLOW = textwrap.dedent(
    """
    import gc, sys
    from libp2p_introspection.dashboard.convert import tune_collector
    from libp2p_introspection.dashboard.model import DashboardModel
    from libp2p_introspection.dashboard.store import Store
    from libp2p_introspection.protocol import pb
    from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

    now = [1_700_000_000_000]
    def clock():
        now[0] += 1_000
        return now[0]
    source = SyntheticSource(SyntheticOptions(connections=1000, streams=10, seed=3,
                                              clock_ms=clock))
    raws = [source.state().SerializeToString() for _ in range(22)]
    del source
    if sys.argv[1] == "tuned":
        tune_collector()
    model = DashboardModel(Store(retention_ms=5_000))
    def feed(raw):
        state = pb.State()
        state.ParseFromString(raw)
        model.feed_state(state)
    feed(raws[0]); feed(raws[1])
    gc.collect()
    held = len(gc.get_objects())
    full = gc.get_stats()[2]["collections"]
    for raw in raws[2:]:
        feed(raw)
    full = gc.get_stats()[2]["collections"] - full
    gc.collect()
    print(full, held, len(gc.get_objects()))
    """
)


def _follow(how: str) -> tuple[int, int, int]:
    result = subprocess.run([sys.executable, "-c", FOLLOW, how], capture_output=True,
                            text=True, timeout=300, check=True)  # fmt: skip
    full, held, after = map(int, result.stdout.split())
    return full, held, after


def test_following_a_big_node_sets_off_no_full_collection_per_snapshot():
    full, held, after = _follow("tuned")
    assert full <= 1  # of 20 (CPython's defaults: 4 here, 1 or 2 a snapshot at 5,000 conns)
    assert after < held * 1.1  # and nothing piles up: the snapshots' objects were freed


def test_tune_collector_says_what_it_changed():
    before = gc.get_threshold()
    try:
        assert tune_collector() == before
        assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    finally:
        gc.set_threshold(*before)


def test_the_dashboard_command_tunes_its_collector(monkeypatch):
    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(clients, "run", lambda task: seen.append(gc.get_threshold()))
    before = gc.get_threshold()
    try:
        result = CliRunner().invoke(main, ["dashboard", "ws://127.0.0.1:1/introspect"])
    finally:
        gc.set_threshold(*before)
    assert result.exit_code == 0, result.output
    assert seen == [COLLECTOR_THRESHOLDS]
