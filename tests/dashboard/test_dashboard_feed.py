"""The dashboard's protocol client against a real introspection server (replaying a recording).

Pull loop, events, pause/resume, reconnect with backoff, switching servers.
Everything on loopback, every wait bounded.
"""

from __future__ import annotations

from pathlib import Path

import trio

from libp2p_introspection.dashboard.feed import ConnectionState, LiveFeed
from libp2p_introspection.protocol import pb
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.replay import ReplaySource

SAMPLE_PEER = "8de3166db28fddb199f05be0acea65772e7a1b289086902160d1060e83dac2fd"


class Sink:
    """Records what the feed delivers."""

    def __init__(self) -> None:
        self.runtimes: list[pb.Runtime] = []
        self.states: list[pb.State] = []
        self.events: list[pb.Event] = []
        self.switched: list[str] = []
        self.notices = 0
        self.statuses = 0

    def feed_switched(self, url: str) -> None:
        self.switched.append(url)

    def feed_runtime(self, runtime: pb.Runtime) -> None:
        self.runtimes.append(runtime)

    def feed_state(self, state: pb.State) -> None:
        self.states.append(state)

    def feed_event(self, event: pb.Event) -> None:
        self.events.append(event)

    def feed_notice(self) -> None:
        self.notices += 1

    def feed_status(self) -> None:
        self.statuses += 1


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def replay(path: Path, speed: float = 40.0) -> ReplaySource:
    # sample recordings have 2 s between snapshots: speed 40 gives one every 50 ms.
    return ReplaySource(path, speed=speed, loop=True)


async def test_pull_loop_reads_runtime_snapshots_and_events(fixtures_dir: Path):
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            IntrospectionServer(replay(fixtures_dir / "sample-1min.mock"), ServerConfig(port=0)).run
        )
        sink = Sink()
        feed = LiveFeed(server.url, sink, retention_ms=60_000)
        await nursery.start(feed.run)
        await wait_for(lambda: len(sink.states) >= 8 and sink.events, what="snapshots and events")
        assert feed.state == ConnectionState.CONNECTED
        assert sink.runtimes[0].peer_id == SAMPLE_PEER
        instants = [s.instant_ts for s in sink.states]
        assert instants == sorted(set(instants))  # each snapshot once, rising (§4.1)
        await wait_for(lambda: feed.effective_config, what="the HELLO response")
        assert feed.effective_config["retentionPeriodMs"] == 60_000
        nursery.cancel_scope.cancel()


async def test_pause_stops_snapshots_and_events_and_resume_restarts_them(fixtures_dir: Path):
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            IntrospectionServer(replay(fixtures_dir / "sample-1min.mock"), ServerConfig(port=0)).run
        )
        sink = Sink()
        feed = LiveFeed(server.url, sink)
        await nursery.start(feed.run)
        await wait_for(lambda: len(sink.states) >= 3 and sink.events, what="a running feed")
        feed.pause()
        # A snapshot asked for before the pause may still arrive; then none.
        await wait_for(lambda: not feed.awaiting_state, what="the last ready answered")
        states, events = len(sink.states), len(sink.events)
        await trio.sleep(0.6)  # 12 snapshot intervals of the replay
        assert (len(sink.states), len(sink.events)) == (states, events)
        feed.resume()
        await wait_for(lambda: len(sink.states) >= states + 3, what="snapshots after resume")
        await wait_for(lambda: len(sink.events) > events, what="events after resume")
        nursery.cancel_scope.cancel()


async def test_reconnects_with_backoff_when_the_server_goes_and_comes_back(fixtures_dir: Path):
    path = fixtures_dir / "sample-1min.mock"
    async with trio.open_nursery() as nursery:
        sink = Sink()
        async with trio.open_nursery() as first:
            server = await first.start(IntrospectionServer(replay(path), ServerConfig(port=0)).run)
            port = server.port
            feed = LiveFeed(server.url, sink)
            await nursery.start(feed.run)
            await wait_for(lambda: feed.state == ConnectionState.CONNECTED, what="connected")
            first.cancel_scope.cancel()
        await wait_for(lambda: feed.state == ConnectionState.RECONNECTING, what="reconnecting")
        assert feed.error
        before = len(sink.states)
        await trio.sleep(0.8)  # a couple of failed attempts
        assert feed.state == ConnectionState.RECONNECTING and len(sink.states) == before
        await nursery.start(IntrospectionServer(replay(path), ServerConfig(port=port)).run)
        await wait_for(lambda: feed.state == ConnectionState.CONNECTED, timeout=15, what="back")
        assert feed.sessions == 2 and feed.error == ""
        await wait_for(lambda: len(sink.states) > before + 2, what="snapshots again")
        nursery.cancel_scope.cancel()


async def test_never_reachable_server_is_reconnecting_with_a_reason():
    async with trio.open_nursery() as nursery:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()  # nothing listens there now
        sink = Sink()
        feed = LiveFeed(f"ws://127.0.0.1:{port}/introspect", sink)
        assert feed.state == ConnectionState.CONNECTING
        await nursery.start(feed.run)
        await wait_for(lambda: feed.state == ConnectionState.RECONNECTING, what="reconnecting")
        assert "connect" in feed.error
        nursery.cancel_scope.cancel()


async def test_switch_to_another_server_and_stop(fixtures_dir: Path):
    async with trio.open_nursery() as nursery:
        one = await nursery.start(
            IntrospectionServer(replay(fixtures_dir / "sample-1min.mock"), ServerConfig(port=0)).run
        )
        two = await nursery.start(
            IntrospectionServer(replay(fixtures_dir / "sample-dht-2min.mock"), ServerConfig(port=0)).run
        )
        sink = Sink()
        feed = LiveFeed(one.url, sink)
        await nursery.start(feed.run)
        await wait_for(lambda: len(sink.states) >= 2, what="first server")
        feed.switch(two.url)
        assert sink.switched == [two.url]
        await wait_for(lambda: len(sink.runtimes) >= 2 and feed.state == ConnectionState.CONNECTED,
                       what="second server")  # fmt: skip
        assert feed.url == two.url and feed.sessions == 2
        feed.stop()
        assert feed.state == ConnectionState.DISCONNECTED
        await trio.sleep(0.3)
        states = len(sink.states)
        await trio.sleep(0.4)
        assert len(sink.states) == states and feed.state == ConnectionState.DISCONNECTED
        feed.switch(one.url)
        await wait_for(lambda: feed.state == ConnectionState.CONNECTED, what="back to the first")
        nursery.cancel_scope.cancel()


async def test_an_unexpected_error_in_the_sink_is_retried_not_fatal(fixtures_dir: Path):
    class FailsOnce(Sink):
        def feed_state(self, state: pb.State) -> None:
            if not self.states and not getattr(self, "failed", False):
                self.failed = True
                raise KeyError("a bug in the dashboard's handling")
            super().feed_state(state)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            IntrospectionServer(replay(fixtures_dir / "sample-1min.mock"), ServerConfig(port=0)).run
        )
        sink = FailsOnce()
        feed = LiveFeed(server.url, sink)
        await nursery.start(feed.run)
        await wait_for(lambda: len(sink.states) >= 2, timeout=15, what="snapshots after the retry")
        assert feed.sessions >= 1 and feed.state == ConnectionState.CONNECTED
        nursery.cancel_scope.cancel()
