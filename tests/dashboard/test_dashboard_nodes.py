"""The Nodes view's data: real introspection servers on loopback, registered in a
registry of the test's own, followed by a real dashboard; the gone and cap rules on
a fake clock. Every wait is bounded; nothing is timed."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import pytest
import trio

from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.dashboard.caps import capped
from libp2p_introspection.dashboard.nodes import MAX_SHOWN, FleetFull, NodeFleet, NodeStatus
from libp2p_introspection.protocol.discovery import ServerEntry
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

HOSTILE_PEER = "<img src=x onerror=xss('peer')>\u202e12D3Koo\x00W"
HOSTILE_IMPL = "<b class=xss>py</b>{0}%s\u0000"
OPTIONS = dict(connections=7, streams=3, churn=0.0, events_per_second=0, pubsub_topics=0)


def _request(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers,
                                     method="POST" if body is not None else "GET")  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def http(url: str, body: Any = None) -> tuple[int, Any]:
    return await trio.to_thread.run_sync(_request, url, body)


async def eventually(check, what: str, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something true (bounded)."""
    with trio.move_on_after(timeout):
        while True:
            got = await check()
            if got:
                return got
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Renamed(SyntheticSource):
    def __init__(self, options: SyntheticOptions, peer: str, impl: str) -> None:
        super().__init__(options)
        self.names = (peer, impl)

    def runtime(self):  # type: ignore[no-untyped-def]
        runtime = super().runtime()
        runtime.peer_id, runtime.implementation = self.names
        return runtime


async def start_server(nursery: trio.Nursery, registry: str, seed: int, *, token: str = "",
                       source: SyntheticSource | None = None) -> tuple[IntrospectionServer, trio.CancelScope]:  # fmt: skip
    """A registered server of a synthetic node in its own cancel scope (cancel it to stop it)."""
    source = source or SyntheticSource(SyntheticOptions(seed=seed, **OPTIONS))
    server = IntrospectionServer(source, ServerConfig(port=0, interval_ms=100, token=token),
                                 registry_dir=registry)  # fmt: skip

    async def serve(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                await inner.start(server.run)
                task_status.started(scope)

    scope = await nursery.start(serve)
    return server, scope


def rows_by_url(nodes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["url"]: row for row in nodes["nodes"]}


@pytest.fixture
def registry(tmp_path) -> str:
    return str(tmp_path / "registry")


async def test_the_view_lists_every_registered_server_live_and_a_stopped_one_gone(registry):
    async with trio.open_nursery() as nursery:
        started = [await start_server(nursery, registry, seed) for seed in (1, 2, 3)]
        servers = [server for server, _ in started]
        dashboard = await nursery.start(Dashboard(DashboardConfig(
            port=0, url=servers[0].url, registry_dir=registry, node_pull_s=0.1)).run)  # fmt: skip
        api = dashboard.url + "api/nodes"

        async def all_live() -> Any:
            _, nodes = await http(api)
            rows = rows_by_url(nodes)
            urls = {s.url for s in servers}
            live = [r for u, r in rows.items() if u in urls and r["status"] == "live" and r["ts"]]
            return nodes if len(live) == 3 and len(rows) == 3 else None

        nodes = await eventually(all_live, "three live rows")
        rows = rows_by_url(nodes)
        for server in servers:
            row = rows[server.url]
            assert row["peerId"] == server.runtime.peer_id
            assert row["implementation"] == "py-libp2p (synthetic)"
            assert "registry" in row["origins"]
            assert row["conns"] == row["connsTotal"] == 7  # counted on the node's snapshot
            assert row["streams"] >= 21 and row["bwIn"] >= 0 and row["spark"]
        # The focused node's numbers agree with the full snapshot the other views show.
        focused = rows[servers[0].url]
        stored = dashboard.model.store.at(focused["ts"])
        assert stored is not None and stored.ts == focused["ts"]
        summary = stored.summary
        assert (focused["conns"], focused["streams"]) == (summary["active"], summary["streams"])
        assert (focused["bwIn"], focused["bwOut"]) == (summary["bwIn"], summary["bwOut"])
        assert rows[servers[0].url]["origins"] == ["added", "registry"]  # the command line's URL
        assert nodes["focus"] == rows[servers[0].url]["id"]
        assert nodes["max"] == 64 and nodes["notFollowed"] == 0

        stopped = servers[1].url
        started[1][1].cancel()  # the second server stops (and leaves the registry)

        async def second_gone() -> Any:
            _, nodes = await http(api)
            row = rows_by_url(nodes).get(stopped)
            # Shown gone, and no longer registered (the next reading of the registry).
            return nodes if row and row["status"] == "gone" and not row["origins"] else None

        nodes = await eventually(second_gone, "the stopped server shown gone")
        rows = rows_by_url(nodes)
        assert rows[stopped]["error"]
        assert rows[stopped]["peerId"] == servers[1].runtime.peer_id  # still named
        assert rows[servers[0].url]["status"] == rows[servers[2].url]["status"] == "live"
        nursery.cancel_scope.cancel()


async def test_focus_switches_the_feed_and_commands_refuse_what_they_should(registry):
    async with trio.open_nursery() as nursery:
        servers = [(await start_server(nursery, registry, seed))[0] for seed in (4, 5)]
        dashboard = await nursery.start(Dashboard(DashboardConfig(
            port=0, url=servers[0].url, registry_dir=registry, node_pull_s=0.1)).run)  # fmt: skip
        base = dashboard.url + "api/"

        async def listed() -> Any:
            _, nodes = await http(base + "nodes")
            return rows_by_url(nodes) if len(nodes["nodes"]) == 2 else None

        rows = await eventually(listed, "two rows")
        status, answer = await http(base + "nodes/focus", {"id": rows[servers[1].url]["id"]})
        assert status == 200 and answer["status"]["url"] == servers[1].url

        async def showing_second() -> Any:
            runtime = dashboard.model.store.runtime
            return runtime and runtime["peerId"] == servers[1].runtime.peer_id

        await eventually(showing_second, "the store filled from the focused node")
        assert dashboard.model.nodes_json()["focus"] == rows[servers[1].url]["id"]

        assert (await http(base + "nodes/focus", {"id": "n999"}))[0] == 404
        assert (await http(base + "nodes/focus", ["n1"]))[0] == 400
        assert (await http(base + "nodes/add", {"url": "http://x"}))[0] == 400
        # Removing a registered node added by URL too leaves it listed, as found.
        status, answer = await http(base + "nodes/remove", {"id": rows[servers[0].url]["id"]})
        assert status == 200
        assert rows_by_url(answer["nodes"])[servers[0].url]["origins"] == ["registry"]
        nursery.cancel_scope.cancel()


async def test_a_server_that_wants_a_token_shows_refused_unless_it_is_the_dashboards_own(registry):
    async with trio.open_nursery() as nursery:
        own, _ = await start_server(nursery, registry, 6, token="s3cret-own")
        other, _ = await start_server(nursery, registry, 7, token="s3cret-other")
        dashboard = await nursery.start(Dashboard(DashboardConfig(
            port=0, url=own.url, token="s3cret-own", registry_dir=registry,
            node_pull_s=0.1)).run)  # fmt: skip

        async def settled() -> Any:
            _, nodes = await http(dashboard.url + "api/nodes")
            rows = rows_by_url(nodes)
            ok = rows.get(own.url, {}).get("status") == "live"
            return rows if ok and rows.get(other.url, {}).get("status") == "refused" else None

        rows = await eventually(settled, "own live, the other refused")
        assert "401" in rows[other.url]["error"] or "403" in rows[other.url]["error"]
        assert rows[other.url]["tokenRequired"] is True
        assert "s3cret" not in json.dumps(rows)
        nursery.cancel_scope.cancel()


async def test_hostile_names_are_kept_as_text_and_capped(registry):
    long_peer = HOSTILE_PEER + "x" * 10_000
    async with trio.open_nursery() as nursery:
        source = Renamed(SyntheticOptions(seed=8, **OPTIONS), long_peer, HOSTILE_IMPL)
        server, _ = await start_server(nursery, registry, 8, source=source)
        dashboard = await nursery.start(Dashboard(DashboardConfig(
            port=0, url=server.url, registry_dir=registry, node_pull_s=0.1)).run)  # fmt: skip

        async def live() -> Any:
            _, nodes = await http(dashboard.url + "api/nodes")
            row = rows_by_url(nodes).get(server.url)
            return row if row and row["status"] == "live" else None

        row = await eventually(live, "the hostile node live")
        assert row["implementation"] == HOSTILE_IMPL
        assert row["peerId"] == capped(long_peer, MAX_SHOWN)  # cut, and the cut shown
        assert row["peerId"].startswith(HOSTILE_PEER)
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------- pure rules


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(port: int, peer: str = "12D3KooWpeer") -> ServerEntry:
    return ServerEntry(url=f"ws://127.0.0.1:{port}/introspect", peer_id=peer,
                       implementation="py-libp2p", pid=os.getpid(), started_ms=0,
                       token_required=False)  # fmt: skip


def test_a_node_no_longer_found_stays_listed_as_gone_for_the_ttl_then_goes():
    clock = Clock()
    fleet = NodeFleet(clock=clock, gone_ttl_s=60)
    fleet.found([entry(1), entry(2)], "registry")
    added = fleet.add("ws://127.0.0.1:3/introspect")
    assert [n.peer_id for n in fleet.nodes.values()] == ["12D3KooWpeer", "12D3KooWpeer", ""]
    first = next(iter(fleet.nodes.values()))
    first.set_status(NodeStatus.GONE, "cannot connect")
    added.set_status(NodeStatus.GONE, "cannot connect")
    fleet.found([entry(2)], "registry")  # the first left the registry
    clock.now += 59
    fleet.expire()
    assert first.key in fleet.nodes and first.to_json()["status"] == "gone"
    clock.now += 1
    fleet.expire()
    assert first.key not in fleet.nodes  # gone for the TTL: dropped
    assert added.key in fleet.nodes  # added by URL: stays (and keeps trying) until removed
    assert first.scope.cancel_called


def test_a_live_node_no_longer_registered_stays_while_it_is_live():
    clock = Clock()
    fleet = NodeFleet(clock=clock, gone_ttl_s=60)
    fleet.found([entry(1)], "registry")
    node = next(iter(fleet.nodes.values()))
    node.set_status(NodeStatus.LIVE)
    fleet.found([], "registry")
    clock.now += 600
    fleet.expire()
    assert node.key in fleet.nodes
    node.set_status(NodeStatus.GONE, "the server ended the session")
    clock.now += 59
    fleet.expire()
    assert node.key in fleet.nodes  # counted from when it was last live
    clock.now += 1
    fleet.expire()
    assert node.key not in fleet.nodes


def test_at_most_max_nodes_are_followed():
    fleet = NodeFleet(max_nodes=2, clock=Clock())
    fleet.found([entry(1), entry(2), entry(3)], "registry")
    assert len(fleet.nodes) == 2 and fleet.to_json()["notFollowed"] == 1
    with pytest.raises(FleetFull, match="2 nodes"):
        fleet.add("ws://127.0.0.1:4/introspect")
    fleet.add("ws://127.0.0.1:1/introspect")  # already followed: no new node
    assert len(fleet.nodes) == 2


def test_a_node_keeps_a_bounded_sparkline_and_capped_strings():
    from libp2p_introspection.dashboard.nodes import SPARK_POINTS

    fleet = NodeFleet(clock=Clock())
    fleet.found([entry(1, peer="p" * 100_000)], "registry")
    node = next(iter(fleet.nodes.values()))
    assert len(node.peer_id) < MAX_SHOWN + 30
    source = SyntheticSource(SyntheticOptions(**OPTIONS))

    class Received:
        skipped = ""

        def __init__(self, state) -> None:  # type: ignore[no-untyped-def]
            self.message = type("M", (), {"state": state})

    for ms in range(SPARK_POINTS * 3):
        state = source.state()
        state.instant_ts = 1_000 + ms
        fleet._take(node, Received(state))
    assert len(node.spark) == SPARK_POINTS
    assert node.spark[-1][0] == 1_000 + SPARK_POINTS * 3 - 1
