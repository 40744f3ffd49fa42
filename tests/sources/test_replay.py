"""Replay of a recording (§4.10) on trio's mock clock: pacing, order, bytes, loops."""

from __future__ import annotations

import itertools
import logging

import pytest
import trio
from hostile_records import START_MS, empty_connections_state, event, runtime, state, write

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import decode_frame
from libp2p_introspection.protocol.recording import RecordingReader, RecordingWriter
from libp2p_introspection.protocol.wire import RecordLimits
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.replay import ReplaySource
from libp2p_introspection.server.sources.replay_scan import ReplayError, scan


class Outlet:
    """Collects what the replay publishes, with the (mock) time of each release."""

    def __init__(self) -> None:
        self.released: list[tuple[float, str, bytes]] = []

    interval_ms = 1000

    def publish_snapshot(self, frame: bytes) -> None:
        self.released.append((trio.current_time(), "state", decode_frame(frame)))

    def publish_event(self, event: pb.Event, frame: bytes | None = None) -> None:
        assert frame is not None, "replay must publish the file's bytes"
        self.released.append((trio.current_time(), "event", decode_frame(frame)))


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
    assert shape.span_ms == (4000 - 1000) + 1500  # span + median gap
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


# ------------------------------------------------------------- hostile files

MAX = 2**64 - 1


class BoundedOutlet(Outlet):
    """An outlet that fails the test instead of spinning forever (a replay that never
    waits would keep a mock clock from ever advancing)."""

    def __init__(self, bound: int = 500) -> None:
        super().__init__()
        self.bound = bound

    def publish_snapshot(self, frame: bytes) -> None:
        super().publish_snapshot(frame)
        if len(self.released) > self.bound:
            raise AssertionError(f"more than {self.bound} releases: the replay spins")


async def _run_bounded(source, seconds, bound=500):
    outlet = BoundedOutlet(bound)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run, outlet)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return outlet.released


def _states(path, stamps, *, open_ts=None):
    """A recording of one-connection snapshots at these instants (``open_ts``: of the
    connections, default 500 ms before each)."""
    messages = [runtime()]
    for stamp in stamps:
        message = pb.ServerMessage()
        message.state.instant_ts = stamp
        connection = message.state.subsystems.connections.add()
        connection.timeline.open_ts = open_ts if open_ts is not None else max(stamp - 500, 0)
        messages.append(message.SerializeToString())
    return write(path, messages)


def _instants(released):
    return [pb.ServerMessage.FromString(data).state.instant_ts for _, k, data in released
            if k == "state"]  # fmt: skip


async def test_a_record_over_the_limits_is_skipped_and_logged(tmp_path, autojump_clock, caplog):
    path = write(tmp_path / "r.mock", [
        runtime(), state([b""], 1_000), empty_connections_state(50_000, 2_000),
        state([b""], 3_000)])  # fmt: skip
    released = await _run_bounded(ReplaySource(path), 10)
    assert _instants(released) == [1_000, 3_000]
    assert "1 records hold more than the replay's limits" in caplog.text
    assert "more than 40,000 connections" in caplog.text
    assert _instants(await _run_bounded(
        ReplaySource(path, limits=RecordLimits(max_connections=50_000)), 10
    )) == [1_000, 2_000, 3_000]  # fmt: skip


async def test_timestamps_near_2_64_end_the_loop_with_a_reason(tmp_path, autojump_clock, caplog):
    path = _states(tmp_path / "r.mock", [MAX - 2_000, MAX - 1_000])
    source = ReplaySource(path, loop=True)
    released = await _run_bounded(source, 30)  # it crashed with "Value out of range"
    assert _instants(released) == [MAX - 2_000, MAX - 1_000]  # the first pass, whole
    assert source.passes_done == 1
    assert "2^64 - 1" in source.stopped_because and "stops looping" in caplog.text


async def test_a_nested_timestamp_that_would_overflow_ends_the_loop(tmp_path, autojump_clock,
                                                                   caplog):  # fmt: skip
    path = _states(tmp_path / "r.mock", [1_000, 2_000], open_ts=MAX - 10)
    source = ReplaySource(path, loop=True)
    released = await _run_bounded(source, 30)
    assert _instants(released) == [1_000, 2_000]
    assert "in pass 2" in source.stopped_because and str(MAX - 10) in source.stopped_because


async def test_snapshots_without_time_are_played_once_with_a_reason(tmp_path, autojump_clock,
                                                                   caplog):  # fmt: skip
    path = _states(tmp_path / "r.mock", [0, 0, 0])
    source = ReplaySource(path, loop=True)  # looping spun, repeating time 0 without a word
    released = await _run_bounded(source, 60)
    assert _instants(released) == [0, 0, 0] and not source.loop
    assert "no snapshot has an instant_ts" in caplog.text


async def test_one_shared_instant_loops_at_the_base_interval(tmp_path, autojump_clock, caplog):
    path = _states(tmp_path / "r.mock", [5_000, 5_000, 5_000])
    start = trio.current_time()
    released = await _run_bounded(ReplaySource(path, loop=True, interval_ms=1_000), 2.5)
    times = [round(t - start, 3) for t, k, _ in released if k == "state"]
    assert times == [0.0] * 3 + [1.0] * 3 + [2.0] * 3  # a pass lasted 1 ms: it spun
    assert _instants(released) == [5_000] * 3 + [6_000] * 3 + [7_000] * 3
    assert "share instant_ts 5000" in caplog.text


async def test_a_gap_past_the_cap_is_waited_as_the_cap(tmp_path, autojump_clock, caplog):
    path = _states(tmp_path / "r.mock", [START_MS, MAX, START_MS + 1_000])
    start = trio.current_time()
    released = await _run_bounded(ReplaySource(path), 700)  # it waited 5.8e8 years
    times = [round(t - start, 3) for t, _, _ in released]
    assert times == [0.0, 600.0, 600.0]
    assert "waited as 600000 ms" in caplog.text


async def test_an_untimed_snapshot_is_released_with_the_one_before(tmp_path, autojump_clock):
    path = _states(tmp_path / "r.mock", [0, START_MS, 0, START_MS + 1_000])
    start = trio.current_time()
    released = await _run_bounded(ReplaySource(path), 10)  # it waited START_MS ms (54 years)
    assert [round(t - start, 3) for t, _, _ in released] == [0.0, 0.0, 0.0, 1.0]


async def test_many_events_before_the_first_snapshot_follow_it_in_order(tmp_path,
                                                                       autojump_clock):  # fmt: skip
    path = write(tmp_path / "r.mock", [runtime(), *(event(10 + n) for n in range(3_000)),
                                       state([b""], 5_000)])  # fmt: skip
    released = await _run_bounded(ReplaySource(path), 5)
    assert [k for _, k, _ in released][:2] == ["state", "event"]
    stamps = [pb.ServerMessage.FromString(d).event.ts for _, k, d in released if k == "event"]
    assert stamps == [10 + n for n in range(3_000)]


class _Steps(trio.abc.Instrument):
    """Counts the steps the replay's task takes (it yields between steps)."""

    def __init__(self) -> None:
        self.replay_steps = 0

    def after_task_step(self, task) -> None:
        if task.name.endswith("ReplaySource.run"):
            self.replay_steps += 1


async def test_the_work_on_a_big_snapshot_yields_to_the_event_loop(tmp_path, autojump_clock):
    # 6,000 connections of 2 streams: re-encoded (shifted) on each loop pass; it ran
    # in one step, keeping the server from answering handshakes for seconds at a time.
    big = pb.ServerMessage()
    for n in range(6_000):
        conn = big.state.subsystems.connections.add(id=n.to_bytes(4, "big"))
        conn.timeline.open_ts = 500
        for s in range(2):
            conn.streams.streams.add(id=bytes([s])).timeline.open_ts = 600
    messages = [runtime()]
    for stamp in (1_000, 2_000):
        big.state.instant_ts = stamp
        messages.append(big.SerializeToString())
    path = write(tmp_path / "big.mock", messages)
    steps = _Steps()
    trio.lowlevel.add_instrument(steps)
    marks: list[int] = []
    outlet = BoundedOutlet()
    publish = outlet.publish_snapshot

    def counting(frame: bytes) -> None:
        marks.append(steps.replay_steps)
        publish(frame)

    outlet.publish_snapshot = counting
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(ReplaySource(path, loop=True).run, outlet)
            await trio.sleep(4.5)  # passes 1 and 2, and the first snapshot of pass 3
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert len(marks) >= 4
    # Between publishing one shifted snapshot and the next: its walk, parse, shift in
    # slices of 2,000 connections and streams, and encoding, each a step of its own.
    assert min(b - a for a, b in itertools.pairwise(marks[1:])) >= 9


# --------------------------------------------- the base interval (§4.10)

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source


def _command(cid: int, cmd: int, source: int = Source.STATE, **config: int) -> bytes:
    message = pb.ClientCommand(id=cid, command=cmd, source=source)
    if config:
        message.config.CopyFrom(pb.Configuration(**config))
    return message.SerializeToString()


class _Member:
    """A session in the hub's fan-out with no I/O: the test reads its frames itself."""

    peer = "test"

    def __init__(self, session) -> None:
        self.session = session

    def notify(self) -> None:
        pass

    def cancel(self) -> None:
        pass


async def test_a_push_at_the_recordings_interval_gets_every_snapshot(fixtures_dir,
                                                                     autojump_clock):  # fmt: skip
    # serve --source FILE with the default --interval-ms (1,000) and 2 s recorded gaps:
    # a session asking for 2,000 ms was told 2,000 but got every second snapshot.
    source = ReplaySource(fixtures_dir / "sample-1min.mock")
    server = IntrospectionServer(source, ServerConfig(port=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run, server.hub)
        session = server.hub.open_session()
        server.hub.join(_Member(session))
        now = trio.current_time()
        session.receive_command(
            _command(1, Command.UPDATE_CONFIG, state_snapshot_interval_ms=2_000), now
        )
        session.receive_command(_command(2, Command.PUSH_ENABLE), now)
        await trio.sleep(20.5)  # mock time: ten more recorded gaps
        nursery.cancel_scope.cancel()
    messages = []
    while (frame := session.next_frame()) is not None:
        messages.append(pb.ServerMessage.FromString(decode_frame(frame)))
        session.frame_sent(trio.current_time())
    responses = [m.response for m in messages if m.WhichOneof("payload") == "response"]
    assert responses[0].effective_config.state_snapshot_interval_ms == 2_000
    instants = [m.state.instant_ts for m in messages if m.WhichOneof("payload") == "state"]
    assert len(instants) == 11  # the first, from start-up, then every one of ten
    assert {b - a for a, b in itertools.pairwise(instants)} == {2_000}
    assert server.config.interval_ms == 2_000  # the recording's, not --interval-ms


@pytest.mark.parametrize(
    ("stamps", "speed", "expected"),
    [
        ([1_000, 3_000, 5_000, 7_000], 1.0, 2_000),
        ([1_000, 3_000, 5_000, 7_000], 4.0, 500),
        ([1_000, 3_000, 5_000, 7_000], 3.0, 667),  # 666.67 rounded
        ([1_000, 2_000, 4_000, 6_000, 600_000], 1.0, 2_000),  # the median, not the mean
        ([1_000, 3_000, 2_000, 4_000], 1.0, 2_000),  # only positive gaps count
        ([1_000, 0, 1_001, 1_002], 1_000.0, 1),  # at least 1 ms
        ([5_000, 5_000], 1.0, 750),  # fewer than two distinct instants: interval_ms
        ([5_000], 2.0, 750),
        ([START_MS, MAX], 1.0, 600_000),  # a gap of 5.8e8 years is waited as 10 minutes
    ],
)
def test_the_base_interval_comes_from_the_recording(tmp_path, stamps, speed, expected):
    path = _states(tmp_path / "r.mock", stamps)
    assert ReplaySource(path, speed=speed, interval_ms=750).base_interval_ms == expected


def test_max_retention_is_raised_to_the_base_interval_and_logged(tmp_path, caplog):
    path = _states(tmp_path / "r.mock", [1_000, 301_000, 601_000])  # 5-minute snapshots
    caplog.set_level(logging.INFO, logger="libp2p_introspection")
    server = IntrospectionServer(ReplaySource(path), ServerConfig(port=0))
    assert server.hub.limits.base_interval_ms == 300_000
    assert server.hub.limits.max_retention_ms == 300_000  # the default is 120,000
    assert "max retention raised from 120000 ms to the 300000 ms base interval" in caplog.text
    assert "base snapshot interval: 300000 ms, from the source" in caplog.text


async def test_a_loop_pass_of_one_instant_lasts_the_base_interval_at_any_speed(
    tmp_path, autojump_clock
):
    path = _states(tmp_path / "r.mock", [5_000, 5_000])
    start = trio.current_time()
    source = ReplaySource(path, loop=True, speed=4.0, interval_ms=1_000)
    released = await _run_bounded(source, 2.5)
    times = [round(t - start, 3) for t, k, _ in released if k == "state"]
    assert times == [0.0] * 2 + [1.0] * 2 + [2.0] * 2  # it lasted 0.25 s at speed 4
    assert _instants(released) == [5_000] * 2 + [9_000] * 2 + [13_000] * 2


async def test_a_loop_of_time_that_goes_back_still_rises_pass_to_pass(
    tmp_path, autojump_clock, caplog
):
    # instant_ts decreases through the file (a clock stepped back, a hostile file): the
    # first pass plays it as recorded, and each later pass is shifted by more than the
    # recording's spread, so every instant of a pass is above every one before (§4.1).
    stamps = [10_000, 9_000, 8_000, 7_000, 6_000]
    path = _states(tmp_path / "r.mock", stamps)
    source = ReplaySource(path, loop=True, speed=1.0, interval_ms=1_000)
    released = _instants(await _run_bounded(source, 60))
    passes = [released[i : i + 5] for i in range(0, len(released) - 4, 5)]
    assert len(passes) >= 3
    assert passes[0] == stamps  # byte-identical first pass
    for number, instants in enumerate(passes):
        assert instants == [stamp + number * source.pass_length_ms for stamp in stamps]
    for before, after in itertools.pairwise(passes):
        assert min(after) > max(before)
    assert source.shape.spread_ms == 4_000 and source.pass_length_ms == 4_001
    assert "4 snapshots have an instant_ts below the one before" in caplog.text


async def test_a_loop_shifts_past_events_after_the_last_snapshot(tmp_path, autojump_clock):
    path = tmp_path / "r.mock"
    _write(path, [("state", 5_000), ("state", 4_000), ("event", 9_000)])
    source = ReplaySource(path, loop=True, interval_ms=1_000)
    assert source.pass_length_ms > 9_000 - 4_000  # the latest stamp less the earliest instant
    released = await _run_bounded(source, 60)
    instants = _instants(released)
    shift = source.pass_length_ms
    assert instants[:4] == [5_000, 4_000, 5_000 + shift, 4_000 + shift]
    assert min(instants[2:4]) > 9_000  # above the first pass's event too


def _typed(name: str) -> pb.EventType:
    event_type = pb.EventType(name=name)
    event_type.property_types.add(name="n", type=pb.EventType.EventProperty.NUMBER)
    return event_type


def _declaring_later(path):
    """A recording whose first Runtime declares "Known"; a later Runtime declares
    "Later"; "Carried" is declared only by its first event (as a recorder that joined
    before the type existed got it, §3)."""
    with RecordingWriter(path) as writer:
        first = pb.ServerMessage()
        first.runtime.implementation = "rec"
        first.runtime.event_types.append(_typed("Known"))
        writer.write_message(first)
        for stamp, item in [(1_000, "state"), (1_100, "Carried+"), (1_200, "Runtime"),
                            (2_000, "state"), (2_100, "Carried"), (2_200, "Later"),
                            (3_000, "state"), (3_100, "Carried"), (3_200, "Later")]:  # fmt: skip
            message = pb.ServerMessage()
            if item == "state":
                message.state.instant_ts = stamp
            elif item == "Runtime":
                message.runtime.CopyFrom(first.runtime)
                message.runtime.event_types.append(_typed("Later"))
            elif item == "Carried+":
                message.event.ts, message.event.content = stamp, '{"n": 1}'
                message.event.type.CopyFrom(_typed("Carried"))
            else:
                message.event.ts, message.event.content = stamp, '{"n": 2}'
                message.event.type.name = item
            writer.write_message(message)
    return path


def test_the_served_runtime_declares_every_type_the_recording_declares(tmp_path):
    """§3 vs §4.10: a replayed event is the file's bytes, so it names its type only; the
    served Runtime declares every type declared anywhere in the recording (first wins)."""
    source = ReplaySource(_declaring_later(tmp_path / "r.mock"))
    declared = {t.name: t for t in source.runtime().event_types}
    assert list(declared) == ["Known", "Carried", "Later"]
    assert all(t.property_types[0].name == "n" for t in declared.values())


async def test_a_client_joining_mid_replay_is_told_every_types_properties(
    tmp_path, autojump_clock
):
    """A session opened after the recorded first "Carried" event (the one with its
    property types) gets name-only "Carried" and "Later" events: its Runtime told it
    their property types; the events stay byte-identical to the file."""
    from libp2p_introspection.protocol.framing import parse_server_message
    from libp2p_introspection.protocol.session import Session
    from libp2p_introspection.server.hub import Hub

    path = _declaring_later(tmp_path / "r.mock")
    source = ReplaySource(path)
    hub = Hub(ServerConfig().for_source(source.base_interval_ms).limits, source.runtime(),
              clock=trio.current_time)  # fmt: skip

    class Member:
        def __init__(self, session: Session) -> None:
            self.session, self.peer = session, "late"

        def notify(self) -> None: ...

        def cancel(self) -> None: ...

    async with trio.open_nursery() as nursery:
        await nursery.start(source.run, hub)
        await trio.sleep(0.5)  # past the recorded first "Carried" and the later Runtime
        member = Member(hub.open_session())
        hub.join(member)
        enable = pb.ClientCommand(id=1, command=pb.ClientCommand.PUSH_ENABLE,
                                  source=pb.ClientCommand.EVENTS)  # fmt: skip
        enable.version.version = 1
        member.session.receive_command(enable.SerializeToString(), trio.current_time())
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    messages = []
    while (frame := member.session.next_frame()) is not None:
        messages.append(parse_server_message(frame))
        member.session.frame_sent(trio.current_time())
    told = {t.name: t for t in messages[0].runtime.event_types}
    events = [m.event for m in messages if m.WhichOneof("payload") == "event"]
    assert [e.type.name for e in events] == ["Carried", "Later", "Carried", "Later"]
    for received in events:
        assert not received.type.property_types  # the file's name-only bytes
        assert told[received.type.name].property_types[0].name == "n"
