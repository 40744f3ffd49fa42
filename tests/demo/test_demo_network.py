"""The demo network: real py-libp2p nodes on loopback, started, exercised, churned, stopped."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from event_checks import ToolkitDhtShape
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL_ID
from libp2p.peer.id import ID as PeerID

from libp2p_introspection.demo import (
    BULK_PROTOCOL_ID,
    ECHO_PROTOCOL_ID,
    PING_PROTOCOL_ID,
    DemoNetwork,
    DemoNode,
    DemoOptions,
)
from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.protocol import pb

#: Options for tests: no automatic churn unless asked, reproducible choices.
QUIET = DemoOptions(nodes=4, seed=1234, churn=False)
START_TIMEOUT_S = 20


@asynccontextmanager
async def running(options: DemoOptions) -> AsyncIterator[DemoNetwork]:
    """Run a demo network for the duration of the block, then cancel it."""
    net = DemoNetwork(options)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT_S):
            await nursery.start(net.run)
        yield net
        nursery.cancel_scope.cancel()


def connected(node: DemoNode) -> set[PeerID]:
    return set(node.host.get_connected_peers())


def stream_protocols(node: DemoNode) -> set[str]:
    """Protocols of the streams currently open on ``node``'s connections."""
    return {
        str(s.get_protocol())
        for conn in node.host.get_network().get_connections()
        for s in conn.get_streams()
        if s.get_protocol() is not None
    }


def open_streams(node: DemoNode) -> int:
    return sum(len(c.get_streams()) for c in node.host.get_network().get_connections())


def test_options_validation() -> None:
    with pytest.raises(ValueError):
        DemoOptions(nodes=1)
    with pytest.raises(ValueError):
        DemoOptions(observed_share=1.5)
    with pytest.raises(ValueError):
        DemoOptions(bulk_min_bytes=10, bulk_max_bytes=5)
    assert DemoOptions().nodes == 4


async def test_observed_hook_runs_before_any_connection_and_all_nodes_connect() -> None:
    seen: list[tuple[str, int, int]] = []

    async def hook(node: DemoNode) -> None:
        # The host is listening and the DHT runs, but nothing else exists yet.
        seen.append((node.name, len(connected(node)), len(node.host.get_addrs())))
        await trio.sleep(0)

    async with running(replace(QUIET, on_observed_ready=hook, mplex_node=True)) as net:
        assert seen == [("observed", 0, 1)]
        assert len(net.nodes) == 4
        assert all(n.online for n in net.nodes)
        assert net.observed.is_observed and net.observed is net.nodes[0]
        others = {n.peer_id for n in net.others}
        assert others <= connected(net.observed)
        # Every node listens on loopback only.
        for node in net.nodes:
            assert str(node.listen_addr).startswith("/ip4/127.0.0.1/tcp/")
        # Peer ids derive from the seed.
        assert [n.peer_id for n in DemoNetwork(QUIET).nodes] == [n.peer_id for n in net.nodes]
        # The last node speaks only mplex, the others yamux.
        muxers = {
            conn.muxed_conn.peer_id: conn.get_negotiated_muxer_protocol()
            for conn in net.observed.host.get_network().get_connections()
        }
        assert muxers[net.nodes[-1].peer_id] == "/mplex/6.7.0"
        assert muxers[net.nodes[1].peer_id] == "/yamux/1.0.0"


async def test_sync_hook_and_dht_routing_tables_fill() -> None:
    calls: list[DemoNode] = []
    opts = replace(QUIET, nodes=3, dht_rate=4.0, on_observed_ready=calls.append)
    async with running(opts) as net:
        assert calls == [net.observed]
        # Bootstrapped: the observed node's routing table holds every other node.
        assert net.observed.dht.get_routing_table_size() == 2
        for node in net.others:
            assert node.dht.get_routing_table_size() >= 1
        # Inbound DHT queries reach the observed node continuously.
        with trio.fail_after(15):
            before = net.observed.stats.streams_in[KAD_PROTOCOL_ID]
            while net.observed.stats.streams_in[KAD_PROTOCOL_ID] < before + 3:
                await trio.sleep(0.1)


async def test_streams_on_several_protocols_open_and_close_on_observed_node() -> None:
    opts = replace(QUIET, work_rate=10.0, dht_rate=2.0)
    async with running(opts) as net:
        observed = net.observed
        demo_protocols = {str(p) for p in (PING_PROTOCOL_ID, ECHO_PROTOCOL_ID, BULK_PROTOCOL_ID)}
        live: set[str] = set()
        with trio.fail_after(20):
            while not (
                len(live & demo_protocols) >= 2
                and observed.stats.payload_bytes_sent
                and observed.stats.payload_bytes_received
            ):
                live |= stream_protocols(observed)
                await trio.sleep(0.05)
        # The demo's own counters agree: both directions, several protocols.
        stats = observed.stats
        assert len(stats.protocols()) >= 2
        assert sum(stats.streams_in.values()) > 0
        assert sum(stats.streams_out.values()) > 0
        # Streams also go away again: wait for a moment with fewer open streams.
        with trio.fail_after(10):
            peak = open_streams(observed)
            while (now := open_streams(observed)) >= peak:
                peak = max(peak, now)
                await trio.sleep(0.05)


async def test_churn_closes_and_reestablishes_a_connection() -> None:
    async with running(replace(QUIET, work_rate=2.0)) as net:
        observed = net.observed
        victim = net.nodes[2]
        assert victim.peer_id in connected(observed)
        went_away = came_back = False

        async def watch() -> None:
            nonlocal went_away, came_back
            while not came_back:
                if victim.peer_id not in connected(observed):
                    went_away = True
                elif went_away:
                    came_back = True
                await trio.sleep(0.02)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await net.churn(victim, downtime_s=0.5)
                assert victim.online
        assert went_away and came_back
        assert victim.stats.starts == 2 and victim.stats.churned == 1
        assert net.churn_events == 1
        # Same identity and port after the rejoin; the observed node never churns.
        assert victim.peer_id in connected(observed)
        with pytest.raises(ValueError):
            await net.churn(observed, downtime_s=0)


async def test_rejoin_picks_a_new_port_if_its_port_was_taken() -> None:
    async with running(replace(QUIET, nodes=3, work_rate=0, dht_rate=0)) as net:
        victim = net.nodes[1]
        old_port = victim.port
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        async def squat() -> None:
            await victim.wait_stopped()
            squatter.bind(("127.0.0.1", old_port))
            squatter.listen()

        try:
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(squat)
                    await net.churn(victim, downtime_s=0.3)
        finally:
            squatter.close()
        assert victim.online and victim.port not in (0, old_port)
        assert victim.peer_id in connected(net.observed)


async def test_churn_loop_runs_on_its_own() -> None:
    opts = replace(QUIET, nodes=3, churn=True, churn_interval_s=1.0, churn_downtime_s=0.3)
    async with running(opts) as net:
        with trio.fail_after(15):
            while net.churn_events < 2 or len(net.online_nodes()) < 3:
                await trio.sleep(0.05)
        assert net.observed.stats.starts == 1
        assert sum(n.stats.churned for n in net.others) >= 2
        # Rejoined nodes reconnect to the observed node. Churn goes on meanwhile, so
        # wait (bounded) for a moment when every online node is connected to it.
        with trio.fail_after(15):
            while not {n.peer_id for n in net.others if n.online} <= connected(net.observed):
                await trio.sleep(0.05)


async def test_cancel_stops_every_node_quickly() -> None:
    net = DemoNetwork(replace(QUIET, work_rate=10.0, dht_rate=3.0))
    with trio.fail_after(START_TIMEOUT_S + 10):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            await trio.sleep(2)  # let traffic flow
            ports = [n.port for n in net.nodes]
            nursery.cancel_scope.cancel()
            cancelled_at = time.monotonic()
    elapsed = time.monotonic() - cancelled_at
    assert elapsed < 5, f"shutdown took {elapsed:.1f} s"
    assert not any(n.online for n in net.nodes)
    assert all(len(n.host.get_network().get_connections()) == 0 for n in net.nodes)
    for port in ports:  # every listener is closed
        with pytest.raises(OSError):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.aclose()


async def test_demo_dht_query_events_have_the_toolkits_shape(fixtures_dir: Path) -> None:
    """The observed node's introspector reports the demo's DHT work in the keys of the
    observer-toolkit's own recording; peerIds match its routing table's peer ids."""
    shape = ToolkitDhtShape.read(fixtures_dir / "sample-1min.mock")
    log: list[pb.Event] = []
    intros: list[HostIntrospector] = []

    def attach(node: DemoNode) -> None:
        intro = HostIntrospector(node.host, dht=node.dht)
        intro.set_event_sink(log.append)
        intros.append(intro)

    opts = replace(QUIET, nodes=3, dht_rate=8.0, observed_dht_share=0.5, on_observed_ready=attach)
    async with running(opts) as net:
        # py-libp2p's own refresh, as the demo's "refresh" operation runs it.
        await net.observed.dht.peer_routing.refresh_routing_table()
        with trio.fail_after(20):
            while {json.loads(e.content)["direction"] for e in _dht(log)} != {
                "INBOUND",
                "OUTBOUND",
            }:
                await trio.sleep(0.1)
        table = {p.peer_id for b in intros[0].state().subsystems.dht.buckets for p in b.peers}
        others = {n.peer_id.to_base58() for n in net.others}
        assert table == others
        seen = [shape.check(e, dht_peer_ids=others) for e in _dht(log)]
        assert "DISCOVERY" in {c["trigger"] for c in seen if c["direction"] == "OUTBOUND"}
        intros[0].detach()


def _dht(log: list[pb.Event]) -> list[pb.Event]:
    return [e for e in log if e.type.name in ("InboundDHTQuery", "OutboundDHTQuery")]


async def test_demo_runs_gossipsub_and_the_observed_node_shows_it() -> None:
    """Every node runs gossipsub on the demo's topics, subscribed to all but one; the
    observed node's introspector (given its Pubsub, as ``demo`` does) shows the topics
    with their mesh, messages both ways and the grafts that formed the mesh."""
    log: list[pb.Event] = []
    intros: list[HostIntrospector] = []

    def attach(node: DemoNode) -> None:
        intro = HostIntrospector(node.host, dht=node.dht, pubsub=node.pubsub)
        intro.set_event_sink(log.append)
        intros.append(intro)

    opts = replace(QUIET, nodes=3, pubsub_rate=20.0, work_rate=0.5, dht_rate=0.5,
                   on_observed_ready=attach)  # fmt: skip
    topics = set(opts.pubsub_topics)
    async with running(opts) as net:
        observed = net.observed
        assert observed.topics == tuple(t for t in opts.pubsub_topics if t != "demo/blocks")
        for node in net.nodes:
            assert len(node.topics) == len(topics) - 1
        with trio.fail_after(20):
            while True:
                ps = intros[0].state().subsystems.pubsub
                by_name = {t.name: t for t in ps.topics}
                ours = [by_name[name] for name in observed.topics if name in by_name]
                if len(ours) == 2 and all(
                    t.mesh_peers and t.messages_in.cum_packets and t.messages_out.cum_packets
                    for t in ours
                ):
                    break
                await trio.sleep(0.1)
        assert ps.router == "/meshsub/1.2.0"
        assert set(by_name) == topics  # the one it is not subscribed to too
        assert not by_name["demo/blocks"].subscribed and by_name["demo/blocks"].peers
        others = {n.peer_id.to_base58() for n in net.others}
        assert {p.peer_id for p in ps.peers} == others
        grafts = [json.loads(e.content) for e in log if e.type.name == "PubsubGraft"]
        assert {(g["peerId"], g["topic"]) for g in grafts} >= {
            (peer, t.name) for t in ours for peer in t.mesh_peers
        }
        muxers = {c.attribs.multiplexer for c in intros[0].state().subsystems.connections}
        assert muxers == {"/yamux/1.0.0"}  # the observed node stays on yamux
        intros[0].detach()


async def test_observed_node_learns_its_reachability_from_its_peers() -> None:
    """Every node answers AutoNAT; the observed node asks its peers, which dial it back on
    loopback: the introspector handed its AutoNAT service reports PUBLIC, with the event."""
    introspectors: list[HostIntrospector] = []
    events: list[pb.Event] = []

    def attach(node: DemoNode) -> None:
        intro = HostIntrospector(node.host, dht=node.dht, autonat=node.autonat)
        intro.set_event_sink(events.append)
        introspectors.append(intro)

    opts = replace(QUIET, nodes=3, work_rate=0.0, dht_rate=0.0, on_observed_ready=attach)
    async with running(opts) as net:
        (intro,) = introspectors
        assert net.observed.autonat.confirmations == 2  # all the peers a 3-node network has
        with trio.fail_after(20):
            while intro.state().node.reachability != pb.NodeInfo.PUBLIC:
                await trio.sleep(0.05)
        changes = [json.loads(e.content) for e in events if e.type.name == "ReachabilityChanged"]
        assert changes == [{"reachability": "PUBLIC"}]
        assert "/libp2p/autonat/1.0.0" in intro.state().node.protocols
        intro.detach()


async def test_a_node_that_rejoins_is_identified_again_on_its_new_connection() -> None:
    """Issue 12 deliverable 4, "identify everywhere": a churned node comes back as a new
    host, and the observed node identifies it on the new connection (py-libp2p would
    take what it said on the previous one as still true: PeerIdentified never came)."""
    log: list[pb.Event] = []
    intros: list[HostIntrospector] = []

    def attach(node: DemoNode) -> None:
        intro = HostIntrospector(node.host, dht=node.dht)
        intro.set_event_sink(log.append)
        intros.append(intro)

    def identified(peer: PeerID) -> list[dict]:
        found = [json.loads(e.content) for e in log if e.type.name == "PeerIdentified"]
        return [c for c in found if c["peerId"] == peer.to_base58()]

    def outbound_identify_streams() -> int:
        opened = [json.loads(e.content) for e in log if e.type.name == "StreamOpened"]
        return sum(
            1 for c in opened
            if c["protocol"] == "/ipfs/id/1.0.0" and c["direction"] == "outbound"
        )  # fmt: skip

    opts = replace(QUIET, nodes=2, work_rate=0, dht_rate=0, pubsub_rate=0,
                   on_observed_ready=attach)  # fmt: skip
    async with running(opts) as net:
        victim = net.nodes[1]
        with trio.fail_after(20):
            while not identified(victim.peer_id):
                await trio.sleep(0.05)
        asked = outbound_identify_streams()
        assert asked >= 1
        await net.churn(victim, downtime_s=0.2)
        with trio.fail_after(20):
            while len(identified(victim.peer_id)) < 2:
                await trio.sleep(0.05)
        assert outbound_identify_streams() > asked  # the observed node asked, itself
        content = identified(victim.peer_id)[-1]
        assert content["agentVersion"] and "/ipfs/id/1.0.0" in content["protocols"]
        intros[0].detach()


async def test_subscriptions_are_read_so_no_message_is_dropped() -> None:
    """py-libp2p queues at most 32 messages per subscription and drops the rest with a
    WARNING each ("fail to deliver message to subscription"): the demo reads its
    subscriptions as an application does, so none is dropped however long it runs."""
    from libp2p.crypto.ed25519 import create_new_key_pair

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    pubsub_logger = logging.getLogger("libp2p.pubsub.pubsub")
    keep = Keep(level=logging.WARNING)
    pubsub_logger.addHandler(keep)
    node = DemoNode(0, create_new_key_pair(b"\x07" * 32), topics=("demo/chat",))
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(START_TIMEOUT_S):
                await nursery.start(node.run)
            await node.join_topics()
            for _ in range(80):  # well past py-libp2p's 32-message queue
                await node.pubsub.publish("demo/chat", b"hello")
                await trio.sleep(0)
            with trio.fail_after(10):
                while node.stats.pubsub_received["demo/chat"] < 80:
                    await trio.sleep(0.01)
            node.leave()
    finally:
        pubsub_logger.removeHandler(keep)
    assert not [r for r in records if "fail to deliver" in r.getMessage()]
    assert node.stats.pubsub_received["demo/chat"] == 80


async def test_demo_routers_keep_their_one_second_heartbeat() -> None:
    """A demo router's heartbeat step (what ``GossipSub.heartbeat`` runs each beat) keeps
    its 1 s interval: with py-libp2p's adaptive gossip it went to 30-60 s, the message
    cache then held minutes of messages, and a node that rejoined was sent them in one
    burst, above gossipsub's 10 per topic per second ("Rate limit exceeded for peer")."""
    from libp2p.crypto.ed25519 import create_new_key_pair

    node = DemoNode(0, create_new_key_pair(b"\x08" * 32), topics=("demo/chat",))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT_S):
            await nursery.start(node.run)
        await node.join_topics()  # a mesh below its degree: py-libp2p's health score 0.1
        router = node.pubsub.router
        for _ in range(5):  # as GossipSub.heartbeat does after each beat
            router.last_health_update = 0  # py-libp2p re-scores every 30 s of wall time
            if router.adaptive_gossip_enabled:
                router._update_network_health()
                router._adapt_gossip_parameters()
        assert router.heartbeat_interval == 1
        node.leave()


def test_a_repeated_libp2p_warning_cannot_bury_the_demo_text() -> None:
    """While the demo runs, a py-libp2p WARNING logged 5,000 times shows 4 lines (1st,
    10th, 100th, 1000th, each with its count); another message still shows; every ERROR
    shows; the lines go to the root handlers (the CLI's format), not to lastResort."""
    from libp2p_introspection.demo._quiet import quiet_libp2p_warnings

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    root = logging.getLogger()
    keep = Keep()
    root.addHandler(keep)
    chatty = logging.getLogger("libp2p.pubsub.pubsub")
    try:
        with quiet_libp2p_warnings():
            for i in range(5000):
                chatty.warning("fail to deliver message to subscription for topic %s", f"t{i % 3}")
            chatty.warning("something else")
            for _ in range(3):
                chatty.error("a real error")
        chatty.warning("after the demo")  # the collapsing is gone with the demo
    finally:
        root.removeHandler(keep)
    delivered = [line for line in lines if "fail to deliver" in line]
    assert len(delivered) == 4
    assert delivered[0].endswith("topic t0")
    assert [line.split("[logged ")[1].split(" ")[0] for line in delivered[1:]] == [
        "10", "100", "1000",
    ]  # fmt: skip
    assert "WARNING libp2p.pubsub.pubsub: something else" in lines
    assert lines.count("ERROR libp2p.pubsub.pubsub: a real error") == 3
    assert not [line for line in lines if "after the demo" in line]


def test_a_churned_peers_reset_is_quiet_and_other_muxer_errors_are_not() -> None:
    """yamux's ERROR for a TCP reset (a node that left: churn) is demoted like the other
    benign churn messages; the same logger's other errors stay visible."""
    from libp2p_introspection.demo._quiet import quiet_libp2p_warnings

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    root = logging.getLogger()
    keep = Keep()
    root.addHandler(keep)
    yamux = logging.getLogger("libp2p.stream_muxer.yamux.yamux")
    try:
        with quiet_libp2p_warnings():
            yamux.error("Error in handle_incoming for peer 12D3KooWX: ConnectionClosedError: "
                        "TCP connection reset by remote peer: socket connection broken")  # fmt: skip
            yamux.error("Error in handle_incoming for peer 12D3KooWX: ValueError: bad frame")
    finally:
        root.removeHandler(keep)
    assert lines == ["Error in handle_incoming for peer 12D3KooWX: ValueError: bad frame"]
