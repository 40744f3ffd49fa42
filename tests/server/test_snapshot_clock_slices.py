"""The snapshot clock builds on the node's loop without holding it: it takes each
snapshot through the source's async build (which may yield between slices) and yields
between the build, the copy into a ServerMessage, the checksum and the framing."""

from __future__ import annotations

import trio

from libp2p_introspection.abc import SampledSource
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_state_frame, parse_server_message


class Outlet:
    interval_ms = 50

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def publish_snapshot(self, frame: bytes) -> None:
        self.frames.append(frame)

    def publish_event(self, event: pb.Event, frame: bytes | None = None) -> None:
        pass

    def publish_runtime(self, runtime: pb.Runtime) -> None:
        pass


class SlicedSource(SampledSource):
    """A source whose async build yields three times, as a big node's does."""

    def __init__(self) -> None:
        self.count = 0
        self.async_builds = 0

    def runtime(self) -> pb.Runtime:
        return pb.Runtime(implementation="test")

    def state(self) -> pb.State:
        self.count += 1
        return pb.State(instant_ts=self.count)

    async def encoded_state_async(self) -> bytes:
        self.async_builds += 1
        for _ in range(3):
            await trio.sleep(0)
        return self.encoded_state()


async def test_the_clock_builds_through_the_async_path_and_lets_other_tasks_run() -> None:
    source, outlet = SlicedSource(), Outlet()
    ran_meanwhile = 0
    done = trio.Event()

    async def other_task() -> None:
        nonlocal ran_meanwhile
        while not done.is_set():
            await trio.sleep(0)
            ran_meanwhile += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.sleep(0)
        before = ran_meanwhile
        await nursery.start(source.run, outlet)  # returns once the first snapshot is out
        during_first = ran_meanwhile - before
        with trio.fail_after(5):
            while len(outlet.frames) < 3:
                await trio.sleep(0.01)
        done.set()
        nursery.cancel_scope.cancel()
    assert source.async_builds >= 3
    # Three yields inside the build, three between build, copy, checksum and framing.
    assert during_first >= 6
    # The same bytes as the synchronous path, frame for frame.
    for number, frame in enumerate(outlet.frames[:3], start=1):
        assert frame == encode_state_frame(pb.State(instant_ts=number).SerializeToString())
        assert parse_server_message(frame).state.instant_ts == number
