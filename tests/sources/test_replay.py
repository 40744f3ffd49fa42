"""Replay of a recording (§4.10) on trio's mock clock: pacing, order, bytes, loops."""

from __future__ import annotations

import trio

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import decode_frame
from libp2p_introspection.protocol.recording import RecordingReader, RecordingWriter
from libp2p_introspection.server.sources.replay import ReplayError, ReplaySource, scan


class Outlet:
    """Collects what the replay publishes, with the (mock) time of each release."""

    def __init__(self) -> None:
        self.released: list[tuple[float, str, bytes]] = []

    def publish_snapshot_frame(self, frame: bytes) -> None:
        self.released.append((trio.current_time(), "state", decode_frame(frame)))

    def publish_state(self, state: pb.State) -> None:  # pragma: no cover - unused by replay
        raise AssertionError

    def publish_event(self, event: pb.Event) -> None:  # pragma: no cover
        raise AssertionError("replay must publish encoded events")

    def publish_event_item(self, item) -> None:
        self.released.append((trio.current_time(), "event", decode_frame(item.frame)))


def _write(path, items):
    with RecordingWriter(path) as writer:
        runtime = pb.ServerMessage()
        runtime.runtime.implementation = "rec"
        writer.write_message(runtime)
        for kind, stamp in items:
            message = pb.ServerMessage()
            if kind == "state":
                message.state.instant_ts = stamp
                message.state.start_ts = stamp - 1000
                connection = message.state.subsystems.connections.add()
                connection.timeline.open_ts = stamp - 500
                connection.timeline.close_ts = 0
            else:
                message.event.type.name = "E"
                message.event.ts = stamp
                message.event.content = "{}"
            writer.write_message(message)


RECORDING = [("event", 900), ("state", 1000), ("event", 1500), ("event", 1200),
             ("state", 3000), ("event", 3500), ("state", 4000)]  # fmt: skip


async def _run(source, seconds):
    outlet = Outlet()
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run, outlet)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return outlet.released


async def test_pacing_order_and_bytes(tmp_path, autojump_clock):
    path = tmp_path / "r.mock"
    _write(path, RECORDING)
    start = trio.current_time()
    released = await _run(ReplaySource(path, speed=2.0), 100)
    kinds = [k for _, k, _ in released]
    # File order, with the event recorded before the first state held until it.
    assert kinds == ["state", "event", "event", "event", "state", "event", "state"]
    times = [round(t - start, 3) for t, _, _ in released]
    # Each at max(its ts, the previous release), from the first state, halved by speed 2.
    assert times == [0.0, 0.0, 0.25, 0.25, 1.0, 1.25, 1.5]
    with RecordingReader(path) as reader:
        file_states = [r.data for r in reader if r.message().WhichOneof("payload") == "state"]
    assert [data for _, k, data in released if k == "state"] == file_states  # byte-identical


async def test_loop_shifts_time_so_it_keeps_rising(tmp_path, autojump_clock):
    path = tmp_path / "r.mock"
    _write(path, RECORDING)
    shape = scan(path)
    assert shape.length_ms == (4000 - 1000) + 1500  # span + mean gap
    released = await _run(ReplaySource(path, speed=1.0, loop=True), 20)
    instants = []
    for _, kind, data in released:
        message = pb.ServerMessage()
        message.ParseFromString(data)
        if kind == "state":
            instants.append(message.state.instant_ts)
            connection = message.state.subsystems.connections[0]
            assert connection.timeline.open_ts == message.state.instant_ts - 500
            assert connection.timeline.close_ts == 0  # zeros stay zero
    assert len(instants) >= 9
    assert instants == sorted(set(instants))
    assert instants[3:6] == [1000 + 4500, 3000 + 4500, 4000 + 4500]


async def test_recording_without_state_or_runtime_is_refused(tmp_path):
    path = tmp_path / "events-only.mock"
    _write(path, [("event", 1)])
    try:
        ReplaySource(path)
    except ReplayError as exc:
        assert "no State" in str(exc)
    else:
        raise AssertionError("expected ReplayError")
