"""A snapshot above the 64 MiB message limit is a fault of the source, not of the clock.

``SampledSource.take_snapshot``: "A fault of the source does not reach the caller (nor
stop the clock): it is logged and counted in ``snapshot_errors``, and the previous
snapshot stays the latest." ``HostIntrospector.take_snapshot``/``take_snapshot_async``
(the one-copy frame, ``_frame_pieces``) raise ``FrameTooLargeError`` out of the call
instead, and ``SampledSource.run`` (the server-wide snapshot clock) does not catch it:
one snapshot of a node large enough (PROTOCOL.md: a message is at most 64 MiB) ends
the clock and the server's nursery with it.

The limit is lowered here so that a small node passes it (a 64 MiB snapshot takes
seconds to build).
"""

from __future__ import annotations

from typing import Any

import pytest
from test_incremental_snapshot import PRELUDE, World

from libp2p_introspection.introspector import encoder as encoder_module
from libp2p_introspection.introspector import host as host_module
from libp2p_introspection.protocol import framing

LIMIT = 200  # bytes: below the PRELUDE node's snapshot (about 900)


class Outlet:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def publish_snapshot(self, frame: bytes) -> None:
        self.frames.append(frame)


@pytest.fixture(params=["c", "python"])
def world(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> World:
    if request.param == "python":
        monkeypatch.setattr(encoder_module, "_snapcode", None)
        if hasattr(host_module, "_accel"):
            monkeypatch.setattr(host_module._accel, "snapcode", None)
    elif not encoder_module.ACCELERATED:
        pytest.skip("the C accelerator is not built here")
    world = World(incremental=True)
    for op in [*PRELUDE, ("tick", 1_000)]:
        world.apply(op)
    monkeypatch.setattr(host_module, "MAX_MESSAGE_SIZE", LIMIT, raising=False)
    monkeypatch.setattr(framing, "MAX_MESSAGE_SIZE", LIMIT)
    return world


def test_an_oversized_snapshot_is_counted_not_raised(world: World) -> None:
    outlet = Outlet()
    assert world.intro.take_snapshot(outlet) is False  # type: ignore[arg-type]
    assert outlet.frames == []  # the previous snapshot stays the latest
    assert world.intro.snapshot_errors == 1


async def test_an_oversized_snapshot_does_not_stop_the_clock(world: World) -> None:
    outlet: Any = Outlet()
    assert await world.intro.take_snapshot_async(outlet) is False
    assert outlet.frames == []
    assert world.intro.snapshot_errors == 1
