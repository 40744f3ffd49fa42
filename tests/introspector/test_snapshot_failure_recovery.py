"""A snapshot build that fails half-way must not spoil the snapshots after it.

``HostIntrospector.take_snapshot`` counts a build that raises in ``snapshot_errors``
and keeps the previous snapshot as the latest (``SampledSource.take_snapshot``): the
fault stays there. The incremental encoder, though, takes (and empties) the registry's
moved streams and touched connections at the start of a build (``begin``); when the
stream pass raises after that, the streams it had not reached are never looked at
again until they move once more, and the next snapshots report their old counters.

The fault here is an exception raised by a set probe of the stream pass (the
``__eq__`` of a key colliding with a connection record in the encoder's ``dirty``
set), which both the C loop (``_snapcode.stream_pass``, ``PySet_Add``) and the Python
loop (``dirty.add``) run; a ``MemoryError`` (any exception of the pass: an allocation
that fails, a bug in ``_stream``) reaches the same place.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_incremental_snapshot import PRELUDE, World

from libp2p_introspection.introspector import encoder as encoder_module
from libp2p_introspection.protocol import pb


class Outlet:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def publish_snapshot(self, frame: bytes) -> None:
        self.frames.append(frame)


class FailingProbe:
    """Hashes like ``target``; the first comparison raises ``MemoryError``."""

    def __init__(self, target: object) -> None:
        self.h = hash(target)
        self.armed = True

    def __hash__(self) -> int:
        return self.h

    def __eq__(self, other: object) -> bool:
        if self.armed:
            self.armed = False
            raise MemoryError("the stream pass failed half-way")
        return False


@pytest.mark.parametrize("loops", ["c", "python"])
def test_a_snapshot_that_failed_in_the_stream_pass_leaves_the_next_ones_right(
    loops: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if loops == "python":
        monkeypatch.setattr(encoder_module, "_snapcode", None)
    elif not encoder_module.ACCELERATED:
        pytest.skip("the C encoder loops are not built here")
    incremental, scratch = World(incremental=True), World(incremental=False)

    def both(ops: list[Any]) -> None:
        for op in ops:
            incremental.apply(op)
            scratch.apply(op)

    both([*PRELUDE, ("tick", 1_000)])
    assert incremental.snapshot() == scratch.snapshot()
    # Every stream moves; the build fails at the first connection the stream pass marks.
    both([*(("traffic", i, 1, 100, 1) for i in range(8)), ("tick", 1_000)])
    encoder = incremental.intro._encoder
    begin = encoder.begin
    probes: list[FailingProbe] = []

    def begin_with_a_failing_probe() -> list[Any]:
        streams = begin()
        probe = FailingProbe(streams[0].conn)
        probes.append(probe)
        encoder._dirty.add(probe)
        return streams

    monkeypatch.setattr(encoder, "begin", begin_with_a_failing_probe)
    assert not incremental.intro.take_snapshot(Outlet())  # type: ignore[arg-type]
    assert incremental.intro.snapshot_errors == 1
    assert probes and not probes[0].armed  # it did fail, in the stream pass
    monkeypatch.setattr(encoder, "begin", begin)
    for s in (encoder._rebuild, encoder._dirty, encoder._hot):
        s.discard(probes[0])
    # The failed snapshot was dropped: the next ones must report every stream's 100
    # bytes, as the from-scratch build does; from the second on (a window without
    # traffic, so no bandwidth depends on where the failed pass stopped), the same bytes.
    for at, ops in enumerate(
        ([("tick", 1_000)], [("tick", 1_000)], [("ping", 0), ("tick", 1_000)])
    ):
        both(ops)
        got, want = incremental.snapshot(), scratch.snapshot()
        got_state, want_state = pb.State.FromString(got), pb.State.FromString(want)
        cum = sorted(
            s.traffic.traffic_in.cum_bytes
            for c in got_state.subsystems.connections
            for s in c.streams.streams
        )
        assert cum == [100] * 8, (at, cum)
        if at:
            assert got_state == want_state
            assert got == want
