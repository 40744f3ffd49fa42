"""The script API (client/follow.py) against real servers on loopback, found through a
registry of the test's own (tests/conftest.py)."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed

from libp2p_introspection.client import CommandError, follow, follow_all
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.client.discovery import NoChoice
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource


def _source(seed: int = 1, events_per_second: float = 200) -> SyntheticSource:
    return SyntheticSource(SyntheticOptions(connections=3, streams=1, dht_peers=8,
                                            events_per_second=events_per_second, seed=seed))  # fmt: skip


def _server(seed: int = 1, **options):
    source = _source(seed)
    return open_introspection_server(source, ServerConfig(port=0, interval_ms=50, **options))


async def _serve_until_cancelled(seed: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """A server in a task of its own, so that a test can stop it under a client:
    ``task_status`` gets ``(server, cancel scope)``."""
    with trio.CancelScope() as scope:
        async with _server(seed) as server:
            task_status.started((server, scope))
            await trio.sleep_forever()


async def test_follow_without_a_url_pulls_the_registered_servers_snapshots():
    async with _server() as server:
        with trio.fail_after(30):
            async with follow() as node:
                assert node.url == server.url and node.entry is not None
                assert node.runtime.implementation.startswith("py-libp2p")
                assert node.entry.peer_id == node.runtime.peer_id
                instants = []
                async for snapshot in node.snapshots():
                    assert len(snapshot.subsystems.connections) >= 3
                    instants.append(snapshot.instant_ts)
                    if len(instants) == 4:
                        break
                assert instants == sorted(set(instants))  # each once, rising (§4.1)
                assert node.latest.instant_ts == instants[-1]


async def test_events_flow_and_pause_holds_them_until_resume():
    async with _server() as server:
        with trio.fail_after(30):
            async with follow(server.url) as node:
                names = set()
                async for event in node.events():
                    names.add(event.type.name)
                    assert event.ts > 0 and event.content.startswith("{")
                    if len(names) >= 1:
                        break
                await node.pause()
                pulled = node.snapshots()
                first = await anext(pulled)
                second = await anext(pulled)  # a pull still works while paused (§4.5)
                assert second.instant_ts > first.instant_ts
                await node.resume()
                event = await anext(node.events())  # held ones come first, then new ones
                assert event.ts > 0
                assert node.dropped == 0 and node.closed is False


async def test_a_refused_command_is_a_command_error_and_the_session_goes_on():
    async with _server() as server:
        with trio.fail_after(30):
            async with follow(server.url) as node:
                with pytest.raises(CommandError, match=r"(?i)event"):
                    await node.command(Command.REQUEST, Source.EVENTS)  # push-only (§4.3)
                snapshot = await anext(node.snapshots())
                assert snapshot.instant_ts > 0


async def test_push_snapshots_at_the_configured_interval():
    async with _server() as server:
        with trio.fail_after(30):
            async with follow(server.url) as node:
                effective = await node.configure(interval_ms=120)
                assert effective.state_snapshot_interval_ms == 150  # rounded up to 3 x 50
                seen = []
                async for snapshot in node.snapshots(push=True):
                    seen.append(snapshot.instant_ts)
                    if len(seen) == 4:
                        break
                assert seen == sorted(set(seen))


async def test_a_server_that_stops_ends_the_iteration(nursery):
    server, stop = await nursery.start(_serve_until_cancelled, 1)
    with trio.fail_after(30):
        async with follow(server.url) as node:
            count = 0
            async for _ in node.snapshots():
                count += 1
                if count == 2:
                    stop.cancel()  # the server stops under the loop
                assert count < 1000
            assert node.closed and node.close_reason is not None
            assert node.close_reason.code == 1001  # the server said it was going away
            with pytest.raises(ConnectionClosed):
                await node.pause()


async def test_follow_without_a_url_and_several_servers_asks_for_one():
    async with _server(1) as one, _server(2) as two:
        with pytest.raises(NoChoice) as caught:
            async with follow():
                pass
        assert one.url in str(caught.value) and two.url in str(caught.value)


async def test_follow_all_follows_servers_as_they_come_and_go(nursery):
    first, stop_first = await nursery.start(_serve_until_cancelled, 1)
    second, _ = await nursery.start(_serve_until_cancelled, 2)
    first_url = first.url  # a stopped server has no URL left to ask for
    with trio.fail_after(60):
        async with follow_all(rescan_s=0.05) as nodes:
            seen: set[str] = set()
            async for entry, snapshot in nodes:
                assert snapshot.instant_ts > 0
                seen.add(entry.url)
                if seen == {first_url, second.url}:
                    break
            stop_first.cancel()  # the first stops
            async for _pair in nodes:
                if first_url not in nodes.nodes:
                    break
            third, _ = await nursery.start(_serve_until_cancelled, 3)  # a third starts
            async for entry, _ in nodes:
                if entry.url == third.url:
                    break
            assert set(nodes.nodes) == {second.url, third.url}
            assert nodes.problems == []


async def test_follow_all_sends_a_token_to_the_servers_that_require_one():
    async with _server(1, token="s3cret-token") as guarded, _server(2) as open_one:
        with trio.fail_after(60):
            async with follow_all(token="s3cret-token", rescan_s=0.05) as nodes:
                seen: set[str] = set()
                async for entry, _ in nodes:
                    seen.add(entry.url)
                    if seen == {guarded.url, open_one.url}:
                        break
                assert nodes.problems == []


async def test_follow_all_reports_a_server_it_cannot_follow_and_goes_on():
    async with _server(1, token="s3cret-token") as guarded, _server(2) as open_one:
        with trio.fail_after(60):
            async with follow_all(rescan_s=0.05) as nodes:
                async for entry, _ in nodes:
                    assert entry.url == open_one.url
                    if nodes.problems:
                        break
                assert len(nodes.problems) == 1 and guarded.url in nodes.problems[0]
                assert "s3cret-token" not in nodes.problems[0]
