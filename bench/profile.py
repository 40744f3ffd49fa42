"""Profile one snapshot path with pyinstrument: ``python -m bench.profile WHAT``.

WHAT is ``synthetic`` (1,000 x 10, or ``synthetic5000``), ``introspector`` (1,000 x 10
records, every stream active) or ``introspector10`` (10% of the streams active): ten
snapshots after two warm-up ones, the same path as ``bench/snapshot.py`` times. For the
node-overhead benchmark use py-spy on a whole run instead (see bench/README.md).
"""

from __future__ import annotations

import sys

from pyinstrument import Profiler

from bench.snapshot import _Clock, _introspector, _server
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource


def main(what: str) -> None:
    clock = _Clock()
    step = None
    if what.startswith("synthetic"):
        connections = int(what.removeprefix("synthetic") or 1000)
        source = SyntheticSource(
            SyntheticOptions(
                connections=connections,
                streams=10,
                churn=0.0,
                events_per_second=0,
                clock_ms=clock,
            )
        )
        server = _server(source)
    elif what in ("introspector", "introspector10"):
        intro, stepper = _introspector(1_000, 10, clock)
        fraction = 0.1 if what == "introspector10" else 1.0

        def step() -> None:
            stepper(fraction)

        server = _server(intro)
    else:
        raise SystemExit(f"unknown profile target {what!r}")
    for _ in range(2):
        clock.now += 1_000
        if step:
            step()
        server.source.take_snapshot(server.hub)
    profiler = Profiler(interval=0.0002)
    for _ in range(10):
        clock.now += 1_000
        if step:
            step()
        profiler.start()
        server.source.take_snapshot(server.hub)
        profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "synthetic")
