"""The C encoder loops (``_snapcode.c``) when a set probe runs Python code.

``stream_pass``/``connection_pass`` probe the encoder's sets (rebuild, dirty, hot) with
the records and streams they work on. A probe runs Python code when the set holds a key
whose hash collides with the probed object's and whose ``__eq__`` is Python's; that code
may drop the last reference to what the loop borrowed (the stream's code, its counter,
the connection's parts). The loops must then neither touch freed memory nor write into
objects the stream no longer has: they hand the stream (or connection) to the Python
code, which reads everything again.

Each case runs in a child interpreter with ``PYTHONMALLOC=debug`` (freed memory is
overwritten, so a use after free crashes it instead of passing by luck); under
AddressSanitizer every case, the connection loop's too, reports the use after free
without the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from libp2p_introspection.introspector import encoder as encoder_module

pytestmark = pytest.mark.skipif(
    not encoder_module.ACCELERATED, reason="the C encoder loops are not built here"
)

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import gc, sys
    from test_incremental_snapshot import PRELUDE, World
    from libp2p_introspection.introspector import encoder as enc

    which = sys.argv[1]
    snap = enc._snapcode
    world = World(incremental=True)
    for op in PRELUDE:
        world.apply(op)
    world.apply(("tick", 1000))
    world.snapshot()
    for i in range(8):  # every stream moves: each is the C loop's common case
        world.apply(("traffic", i, 1, 100, 1))
    world.apply(("tick", 1000))
    records = [world.registry.stream_record(s) for _, s in world.streams]
    victim = next(r for r in records if r is not None and r.code is not None
                  and r.code.slot >= 0)
    conn = victim.conn

    class Collider:
        # Hashes like ``target``; the first comparison runs ``action``.
        def __init__(self, target, action):
            self.h, self.action, self.fired = hash(target), action, False
        def __hash__(self):
            return self.h
        def __eq__(self, other):
            if not self.fired:
                self.fired = True
                self.action()
            return False

    def drop_stream_state():
        victim.code = enc._StreamCode()  # the last references to the old ones
        victim.traffic = type(victim.traffic)()
        conn.code.parts = []
        gc.collect()

    def drop_connection_code():
        conn.code = enc._ConnectionCode()
        gc.collect()

    if which in ("records-cleared", "streams-cleared"):
        # The loops walk the list they are given by index (no copy): a probe's Python
        # code that empties it must stop the walk, not send it past the list's end.
        others = [r for r in records if r is not None and r is not victim]
        rebuild, hot = set(), set()
        if which == "records-cleared":
            walked = [conn] + [r.conn for r in others if r.conn is not conn]
            rebuild = {Collider(conn, lambda: (walked.clear(), gc.collect()))}
            out = snap.connection_pass(walked, 1000, rebuild, set(), [0, 0, 0, 0],
                                       lambda peer: b"", lambda c: 0, lambda r, p: b"slow")
        else:
            walked = [victim] + others
            hot = {Collider(victim, lambda: (walked.clear(), gc.collect()))}
            out = snap.stream_pass(walked, 1000, set(), set(), hot)
        probe = next(x for x in (*rebuild, *hot) if isinstance(x, Collider))
        assert probe.fired and walked == [], (probe.fired, walked)
        assert all(isinstance(x, (bytes, type(victim))) for x in out), out
    elif which == "connection":
        rebuild = {Collider(conn, drop_connection_code)}
        out = snap.connection_pass([conn], 1000, rebuild, set(), [0, 0, 0, 0],
                                   lambda peer: b"", lambda c: 0, lambda r, p: b"slow")
        assert out == [b"slow"], out
    else:
        rebuild, dirty, hot = set(), set(), set()
        target = victim if which == "hot" else conn
        {"rebuild": rebuild, "dirty": dirty, "hot": hot}[which].add(
            Collider(target, drop_stream_state))
        left = snap.stream_pass([victim], 1000, rebuild, dirty, hot)
        # What the stream holds now is not what the loop read: the Python code does it.
        assert left == [victim], left
    print("held")
    """
)


@pytest.mark.parametrize(
    "probe", ["rebuild", "dirty", "hot", "connection", "records-cleared", "streams-cleared"]
)
def test_a_set_probe_that_runs_python_code_does_not_break_the_c_loops(probe: str) -> None:
    env = dict(os.environ, PYTHONMALLOC="debug")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *sys.path])
    env.pop("LIBP2P_INTROSPECTION_PURE_PYTHON", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("held"), done.stdout
