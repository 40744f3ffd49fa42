"""The live feed's snapshots are converted off the trio loop (:meth:`.model.DashboardModel.
take_state`): while one converts, the loop answers pages (``/api/streams`` of the snapshot
before, any other task); a reset while it converts (another feed, another node at the URL,
a recording shown) drops it, so nothing of the old source reaches the new store; and the
feed reads nothing on while a snapshot is being taken, so events never overtake it.

Every wait is bounded; the conversion thread is held by a :class:`threading.Event`, never
by a timer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from libp2p_introspection.dashboard.convert import SnapshotConverter
from libp2p_introspection.dashboard.feed import LiveFeed
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.recording import RecordingInfo
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.dashboard.streams_api import StreamQuery
from libp2p_introspection.protocol import pb
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.replay import ReplaySource
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

START_MS = 1_700_000_000_000
HOLD_S = 10.0  # the most a test waits for the conversion thread to start or end


class HeldConverter(SnapshotConverter):
    """A real converter whose conversion waits, in its thread, until released."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.entered = threading.Event()
        self.release = threading.Event()

    def convert_text(self, state: pb.State):
        self.entered.set()
        assert self.release.wait(HOLD_S), "the test never released the conversion"
        return super().convert_text(state)


def _states(n: int, seed: int = 1) -> list[pb.State]:
    now = [START_MS]

    def clock() -> int:
        now[0] += 1_000
        return now[0]

    source = SyntheticSource(SyntheticOptions(connections=6, streams=3, seed=seed, clock_ms=clock))
    return [source.state() for _ in range(n)]


def _model() -> DashboardModel:
    model = DashboardModel(Store())
    model.converter = HeldConverter(**model._converter_options)
    return model


async def _entered(converter: HeldConverter) -> None:
    with trio.fail_after(HOLD_S):
        while not converter.entered.is_set():
            await trio.sleep(0.005)


async def test_the_loop_answers_pages_while_a_snapshot_converts():
    first, second = _states(2)
    model = _model()
    model.converter.release.set()
    model.feed_state(first)  # stored the old way: on the calling thread
    model.converter.release.clear()
    query = StreamQuery(ts=None)
    before = model.streams.answer(model.store, query)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(model.take_state, second)
        await _entered(model.converter)
        # The thread is converting; the loop is free: a page's /api/streams is answered
        # (from the snapshot before: the new one is not stored until converted).
        assert model.streams.answer(model.store, query) == before
        assert model.store.latest.ts == first.instant_ts
        model.converter.release.set()
    assert model.store.latest.ts == second.instant_ts
    assert [s.ts for s in model.store.snapshots()] == [first.instant_ts, second.instant_ts]


@pytest.mark.parametrize("reset", ["feed switched", "another node", "recording shown"])
async def test_a_reset_while_converting_drops_the_conversion(reset):
    old, new = _states(1, seed=1)[0], _states(1, seed=2)[0]
    model = _model()
    held = model.converter
    model.feed_runtime(pb.Runtime(peer_id="old-node"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(model.take_state, old)
        await _entered(held)
        if reset == "feed switched":
            model.feed_switched("ws://127.0.0.1:1/introspect")
        elif reset == "another node":
            model.feed_runtime(pb.Runtime(peer_id="new-node"))
        else:
            model.show_recording(
                Store(retention_ms=None), RecordingInfo("r.bin", 0, 0, 0, 0, False)
            )
        store = model.store
        assert model.converter is not held  # the thread keeps the old one to itself
        held.release.set()
    assert model.store is store and store.latest is None  # nothing of the old source
    await model.take_state(new)  # the new source's snapshots go in, converted afresh
    assert [s.ts for s in store.snapshots()] == [new.instant_ts]
    assert model.converter.kept_connections == len(new.subsystems.connections)


async def test_a_snapshot_over_the_budget_in_the_thread_is_skipped_and_said(caplog):
    (state,) = _states(1)
    model = DashboardModel(Store(), max_snapshot_bytes=100)
    await model.take_state(state)
    assert model.store.latest is None
    assert "skipped a snapshot" in caplog.text


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class TakingSink:
    """A sink that takes its snapshots asynchronously (as the dashboard's model does) and
    notes whether anything was delivered while one was being taken."""

    def __init__(self) -> None:
        self.states: list[pb.State] = []
        self.events: list[pb.Event] = []
        self.taking = False
        self.overtaken: list[str] = []
        self.order: list[str] = []

    def feed_switched(self, url: str) -> None:
        pass

    def feed_runtime(self, runtime: pb.Runtime) -> None:
        if self.taking:
            self.overtaken.append("runtime")

    def feed_notice(self) -> None:
        pass

    def feed_status(self) -> None:
        pass

    async def take_state(self, state: pb.State) -> None:
        assert not self.taking
        self.taking = True
        for _ in range(5):  # as a conversion thread would: the loop runs other tasks
            await trio.sleep(0.005)
        self.taking = False
        self.states.append(state)
        self.order.append("state")

    def feed_event(self, event: pb.Event) -> None:
        if self.taking:
            self.overtaken.append("event")
        self.events.append(event)
        self.order.append("event")

    def feed_state(self, state: pb.State) -> None:  # pragma: no cover - must not be used
        raise AssertionError("the feed must take snapshots through take_state")


async def test_the_feed_awaits_a_sink_taking_a_snapshot_before_reading_on(fixtures_dir: Path):
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            IntrospectionServer(
                ReplaySource(fixtures_dir / "sample-1min.mock", speed=40.0, loop=True),
                ServerConfig(port=0),
            ).run
        )
        sink = TakingSink()
        feed = LiveFeed(server.url, sink, retention_ms=60_000)
        await nursery.start(feed.run)
        await wait_for(lambda: len(sink.states) >= 6 and sink.events, what="snapshots and events")
        nursery.cancel_scope.cancel()
    assert sink.overtaken == []  # nothing was delivered while a snapshot was being taken
    instants = [s.instant_ts for s in sink.states]
    assert instants == sorted(set(instants))
    assert "event" in sink.order[sink.order.index("state") :]
