"""One real Prometheus follows every node of ``demo --all`` through the service
discovery file of ``nodes --prometheus-sd`` (README "Many nodes"), and what it
stores is what the introspection snapshots say.

Three demo nodes (real py-libp2p hosts, a subprocess, as a user starts them) each
serve introspection and ``/metrics`` behind a token; ``nodes --prometheus-sd FILE``
keeps the file current; Debian's ``/usr/bin/prometheus`` scrapes every target in it
with the token. Then, per node, at a scrape whose
``libp2p_introspection_snapshot_instant_ts_ms`` is the ``instant_ts`` of a snapshot
our client received, PromQL gives exactly that snapshot's open connections,
per-protocol bytes and DHT routing table; and every go-libp2p swarm dashboard query
a TCP node can answer returns data for each node.

Skipped without Prometheus, except under CI (env ``CI``), where it must run.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import multiaddr
import pytest
import trio
from cli_process import running
from go_dashboards import QUERIES, promql
from libp2p import new_host
from libp2p.peer.id import ID as PeerID
from libp2p.peer.peerinfo import PeerInfo
from metrics_helpers import prometheus_binary

from libp2p_introspection.client import FollowedNode, follow
from libp2p_introspection.client.discovery import read_registry
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.discovery import ServerEntry

TOKEN = "demo-prometheus-token"
NODES = 3
#: Scrapes each node must have had before the checks (and again after the visit).
SCRAPES = 3
#: Bounds of the waits, seconds: the test fails past them, it never times anything.
START_S = 120
WAIT_S = 120
#: Snapshots kept per node (4 a second): the last minute, covering every scrape compared.
KEPT = 240
IDENTIFY = "/ipfs/id/1.0.0"
#: A connection's statuses while go's swarm counts it open (opened, not yet closed).
OPEN = (pb.ACTIVE, pb.CLOSING)
#: go-libp2p's swarm queries a node that has only TCP connections cannot answer.
NOT_FOR_TCP_ONLY = "QUIC"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(api: str, path: str, **params: str) -> dict:
    url = f"{api}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]


async def _query(api: str, expr: str, **params: str) -> list[dict]:
    data = await trio.to_thread.run_sync(lambda: _api(api, "/api/v1/query", query=expr, **params))
    return data["result"]


async def _printed_urls(demo: subprocess.Popen, first: str) -> set[str]:
    """The ``ws://`` words of what ``demo`` prints up to its "What to do next" block."""
    assert demo.stdout is not None
    lines = [first]
    with trio.fail_after(START_S):
        for _ in range(100):  # a bound: the demo prints a dozen lines
            line = await trio.to_thread.run_sync(demo.stdout.readline, abandon_on_cancel=True)
            if not line or line.startswith("What to do next"):
                break
            lines.append(line)
    return {word for line in lines for word in line.split() if word.startswith("ws://")}


def _instance(entry: ServerEntry) -> str:
    """The ``instance`` label Prometheus gives the entry's metrics endpoint."""
    assert entry.metrics_url is not None, entry
    return urllib.parse.urlsplit(entry.metrics_url).netloc


async def _wait_for_sd_file(path: Path, writer: subprocess.Popen) -> list[dict]:
    with trio.move_on_after(WAIT_S):
        while True:
            assert writer.poll() is None, "nodes --prometheus-sd exited"
            try:
                groups = json.loads(path.read_text())
            except (OSError, ValueError):
                groups = []
            if len(groups) >= NODES:
                return groups
            await trio.sleep(0.3)
    pytest.fail(f"{path} did not list {NODES} targets within {WAIT_S} s")


async def _wait_for_scrapes(
    api: str, prometheus: subprocess.Popen, instances: set[str], since: float, count: int
) -> float:
    """Wait until every instance in ``instances`` was scraped successfully ``count``
    times after ``since`` (Prometheus's time, seconds); return the newest such scrape.
    A failed scrape (``up`` 0: a refused token, or a reply slower than the 1 s scrape
    timeout on a loaded machine) is not counted, and the failure says which."""
    scrapes: dict[str, list[tuple[float, str]]] = {}
    with trio.move_on_after(WAIT_S):
        while True:
            assert prometheus.poll() is None, "prometheus exited"
            try:
                rows = await _query(api, 'up{job="py-libp2p"}[5m]')
            except OSError:
                rows = []  # not listening yet
            scrapes = {
                row["metric"]["instance"]: [(float(t), v) for t, v in row["values"]
                                            if float(t) > since]
                for row in rows
            }  # fmt: skip
            good = {i: [t for t, v in s if v == "1"] for i, s in scrapes.items()}
            if all(len(good.get(i, [])) >= count for i in instances):
                return max(t for i in instances for t in good[i])
            await trio.sleep(0.5)
    pytest.fail(f"prometheus did not scrape {instances} {count} times in {WAIT_S} s: {scrapes}")


async def _collect(node: FollowedNode, kept: dict[int, pb.State]) -> None:
    """Keep every pushed snapshot of ``node`` by ``instant_ts`` (the last :data:`KEPT`)."""
    async for state in node.snapshots(push=True):
        kept[state.instant_ts] = state
        while len(kept) > KEPT:
            del kept[min(kept)]


def _at_scrapes(rows: list[dict], key: tuple[str, ...]) -> dict[float, Counter]:
    """A range vector's samples by scrape time: ``{t: Counter({label values: value})}``."""
    found: dict[float, Counter] = {}
    for row in rows:
        labels = tuple(row["metric"].get(name, "") for name in key)
        for t, value in row["values"]:
            found.setdefault(float(t), Counter())[labels] += float(value)
    return found


def _count(state: pb.State, statuses: tuple[int, ...]) -> int:
    return sum(1 for conn in state.subsystems.connections if conn.status in statuses)


def _protocol_bytes(state: pb.State) -> Counter:
    found: Counter = Counter()
    for stats in state.protocols:
        found[(stats.protocol, "inbound")] += stats.traffic.traffic_in.cum_bytes
        found[(stats.protocol, "outbound")] += stats.traffic.traffic_out.cum_bytes
    return found


def _streams_opened(state: pb.State, protocol: str) -> int:
    return sum(s.streams_opened for s in state.protocols if s.protocol == protocol)


def _dht_peers(state: pb.State) -> int:
    return sum(len(bucket.peers) for bucket in state.subsystems.dht.buckets)


async def _visit(nodes: dict[str, tuple[ServerEntry, FollowedNode, dict[int, pb.State]]]) -> None:
    """A py-libp2p host of the test connects to every node and, once every node's
    snapshots show it, closes: each node opens, upgrades and closes one connection
    while Prometheus watches (a demo node with churn off made its connections before
    the first scrape, so ``rate()`` over them would have nothing to say)."""
    visitor = new_host()
    me = str(visitor.get_id())

    def shown(kept: dict[int, pb.State]) -> bool:
        return any(c.peer_id == me and c.status in OPEN
                   for c in kept[max(kept)].subsystems.connections)  # fmt: skip

    async with visitor.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        for entry, node, _ in nodes.values():
            addrs = [multiaddr.Multiaddr(a) for a in node.latest.node.listen_addrs]
            await visitor.connect(PeerInfo(PeerID.from_base58(entry.peer_id), addrs))
        with trio.fail_after(WAIT_S):
            while not all(shown(kept) for _, _, kept in nodes.values()):
                await trio.sleep(0.1)
        # Closed here, not by disconnect(): py-libp2p's auto-connector would dial again.
        with trio.move_on_after(WAIT_S):
            await visitor.close()
    with trio.fail_after(WAIT_S):
        while any(shown(kept) for _, _, kept in nodes.values()):
            await trio.sleep(0.1)


async def test_one_prometheus_scrapes_every_demo_node_and_agrees_with_its_snapshots(
    tmp_path: Path,
):
    binary = prometheus_binary()
    demo_args = ["-m", "libp2p_introspection", "demo", "--all", "--nodes", str(NODES),
                 "--no-dashboard", "--port", "0", "--metrics-port", "0",
                 "--interval-ms", "250", "--token", TOKEN]  # fmt: skip
    sd_file = tmp_path / "py-libp2p.json"
    with running(demo_args, first_line_timeout=START_S) as (demo, first):
        printed = await _printed_urls(demo, first)
        writer = subprocess.Popen(
            [sys.executable, "-m", "libp2p_introspection", "nodes", "--prometheus-sd",
             str(sd_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        prometheus = None
        try:
            groups = await _wait_for_sd_file(sd_file, writer)
            entries = [e for e in read_registry().entries if e.metrics_url]
            assert len(entries) == NODES and len(groups) == NODES, (entries, groups)
            by_instance = {_instance(entry): entry for entry in entries}
            # What the demo printed a user can copy: every node's URL, as registered.
            assert printed == {entry.url for entry in entries}, printed
            # The file names every node's endpoint, labelled with that node's peer id.
            assert {target: group["labels"]["peer_id"] for group in groups
                    for target in group["targets"]} == {
                i: e.peer_id for i, e in by_instance.items()}  # fmt: skip
            assert all(g["labels"]["token_required"] == "true" for g in groups)

            web = _free_port()
            (tmp_path / "prometheus.yml").write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: py-libp2p\n"
                f"    authorization:\n      type: Bearer\n      credentials: {TOKEN}\n"
                "    file_sd_configs:\n"
                f"      - files: ['{sd_file}']\n        refresh_interval: 1s\n"
            )
            prometheus = subprocess.Popen(
                [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{web}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            api = f"http://127.0.0.1:{web}"
            async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
                nodes = {}
                for instance, entry in by_instance.items():
                    node = await stack.enter_async_context(follow(entry.url, token=TOKEN))
                    kept: dict[int, pb.State] = {}
                    nursery.start_soon(_collect, node, kept)
                    nodes[instance] = (entry, node, kept)
                    assert node.runtime.peer_id == entry.peer_id
                await _wait_for_scrapes(api, prometheus, set(nodes), 0.0, SCRAPES)
                with trio.fail_after(WAIT_S):
                    while not all(kept for _, _, kept in nodes.values()):
                        await trio.sleep(0.1)
                visited = await trio.to_thread.run_sync(
                    lambda: float(_api(api, "/api/v1/query", query="time()")["result"][0])
                )
                await _visit(nodes)
                now = await _wait_for_scrapes(api, prometheus, set(nodes), visited, SCRAPES)
                empty = []
                for instance, (entry, _, kept) in nodes.items():
                    await _check_node(api, instance, entry, kept, now)
                    empty += await _empty_swarm_panels(api, instance, now, now - visited)
                assert empty == [], "\n".join(empty)
                nursery.cancel_scope.cancel()
        finally:
            for process in (prometheus, writer):
                if process is None:
                    continue
                process.send_signal(signal.SIGINT if process is writer else signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def _check_node(
    api: str, instance: str, entry: ServerEntry, kept: dict[int, pb.State], now: float
) -> None:
    """At every scrape of ``instance`` whose exposition agreed with a snapshot we hold
    (same ``instant_ts``), PromQL gives that snapshot's numbers exactly."""
    at = {"time": f"{now:.3f}"}
    where = f'instance="{instance}"'

    async def samples(expr: str, *key: str) -> dict[float, Counter]:
        return _at_scrapes(await _query(api, f"{expr}[2m]", **at), key)

    agreed = {t: int(c[()]) for t, c in (await samples(
        f"libp2p_introspection_snapshot_instant_ts_ms{{{where}}}")).items()}  # fmt: skip
    matched = {t: kept[ts] for t, ts in agreed.items() if ts in kept}
    assert len(matched) >= SCRAPES, (
        f"{instance}: too few scrapes agree with a snapshot we received: "
        f"{sorted(agreed.values())} vs {sorted(kept)[:3]}..{sorted(kept)[-3:]}"
    )
    connections = await samples(f'libp2p_host_connections{{{where},status="active"}}')
    opened = await samples(f"libp2p_swarm_connections_opened_total{{{where}}}")
    closed = await samples(f"libp2p_swarm_connections_closed_total{{{where}}}")
    traffic = await samples(f"libp2p_protocol_bytes_total{{{where}}}", "protocol", "dir")
    dht = await samples(f"libp2p_dht_routing_table_peers{{{where}}}")
    identify = await samples(f"libp2p_identify_identify_total{{{where}}}")
    for t, state in sorted(matched.items()):
        what = f"{instance} at instant_ts {state.instant_ts}"
        assert connections[t][()] == _count(state, (pb.ACTIVE,)) > 0, what
        assert opened[t][()] - closed[t][()] == _count(state, OPEN), what
        assert +traffic[t] == +_protocol_bytes(state) and traffic[t], what
        assert dht[t][()] == _dht_peers(state) > 0, what
        # go's identify exchanges, both ways, are the node's identify streams.
        assert identify[t][()] == _streams_opened(state, IDENTIFY) > 0, what
    # Every series of the instance carries the SD file's labels of its own node.
    info = await _query(api, f"libp2p_host_info{{{where}}}", **at)
    assert [row["metric"]["peer_id"] for row in info] == [entry.peer_id]
    assert info[0]["metric"]["exported_peer_id"] == entry.peer_id  # the node's own label


async def _empty_swarm_panels(api: str, instance: str, now: float, since_visit: float) -> list[str]:
    """The go-libp2p swarm dashboard queries a TCP-only node can answer that return no
    data for ``instance`` at ``now``, their windows reaching back before the visit
    (``since_visit`` seconds ago, and a few scrapes more)."""
    window = f"{math.ceil(since_visit) + 5}s"
    empty = []
    for dashboard, panel, expr, cannot in QUERIES:
        if dashboard != "swarm" or cannot or NOT_FOR_TCP_ONLY in panel:
            continue
        one = promql(expr, rate_interval=window, range_=window).replace(
            'instance=~".+"', f'instance="{instance}"'
        )
        result = await _query(api, one, time=f"{now:.3f}")
        if not any(math.isfinite(float(row["value"][1])) for row in result):
            empty.append(f"{instance} {panel}: {one} -> {result}")
    return empty
