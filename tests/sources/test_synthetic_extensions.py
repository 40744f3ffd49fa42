"""The synthetic node's §3.1 data (PROTOCOL.md): node, peers, per-protocol traffic, pubsub,
resource manager and their events, consistent with each other and with its streams."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import multiaddr
from event_checks import FakeClock, check_events
from libp2p.peer.id import ID

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.wire import measure
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource


class Harness:
    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.events: list[pb.Event] = []
        self.source = SyntheticSource(SyntheticOptions(clock_ms=self.clock, **options))
        self.source.set_event_sink(self.events.append)

    def state(self, advance_ms: int = 1_000) -> pb.State:
        self.clock.advance(advance_ms)
        return self.source.state()

    def take(self, name: str) -> list[dict[str, Any]]:
        found = [json.loads(e.content) for e in self.events if e.type.name == name]
        return found


def test_protocol_totals_are_exact_sums_of_every_stream_ever_reported() -> None:
    h = Harness(connections=40, streams=5, churn=0.1)
    last: dict[bytes, tuple[str, int, int, int, int]] = {}
    opened: set[bytes] = set()
    for step in (1_000, 0, 1_000, 700, 2_000, 1_000, 1_000, 1_000):
        state = h.state(step)
        active = Counter()
        for conn in state.subsystems.connections:
            for s in conn.streams.streams:
                t = s.traffic
                last[s.id] = (
                    s.protocol, t.traffic_in.cum_bytes, t.traffic_in.cum_packets,
                    t.traffic_out.cum_bytes, t.traffic_out.cum_packets,
                )  # fmt: skip
                opened.add(s.id)
                if s.status == pb.ACTIVE:
                    active[s.protocol] += 1
        sums: dict[str, list[int]] = {}
        for protocol, *values in last.values():
            total = sums.setdefault(protocol, [0, 0, 0, 0])
            for i, value in enumerate(values):
                total[i] += value
        reported = {
            p.protocol: [
                p.traffic.traffic_in.cum_bytes, p.traffic.traffic_in.cum_packets,
                p.traffic.traffic_out.cum_bytes, p.traffic.traffic_out.cum_packets,
            ]
            for p in state.protocols
        }  # fmt: skip
        assert reported == sums  # to the byte, closed and purged streams included
        assert {p.protocol: p.active_streams for p in state.protocols} == {
            p: active.get(p, 0) for p in reported
        }
        opened_by = Counter(v[0] for k, v in last.items() if k in opened)
        assert {p.protocol: p.streams_opened for p in state.protocols} == dict(opened_by)
        for p in state.protocols:
            assert p.traffic.HasField("traffic_in") and p.traffic.HasField("traffic_out")


def test_peers_are_identified_with_their_agent_and_streams_run_what_they_speak() -> None:
    h = Harness(connections=60, streams=4, churn=0.1)
    runtime = h.source.runtime()
    for _ in range(3):
        state = h.state()
        node = state.node
        agents = Counter()
        for conn in state.subsystems.connections:
            assert conn.HasField("peer")
            peer = conn.peer
            agents[peer.agent_version] += 1
            assert peer.protocol_version and peer.protocols
            for s in conn.streams.streams:
                assert s.protocol in peer.protocols  # a protocol its peer speaks
            assert peer.observed_addr in node.observed_addrs
            for addr in (*peer.listen_addrs, peer.observed_addr):
                multiaddr.Multiaddr(addr)
        assert len(agents) >= 4 and any(a.startswith("kubo/") for a in agents)
    identified = h.take("PeerIdentified")
    opened = h.take("ConnectionOpened")
    assert [e["peerId"] for e in identified] == [e["peerId"] for e in opened]
    conns = {c.peer_id: c.peer for c in state.subsystems.connections}
    for event in identified:
        if event["peerId"] in conns:
            peer = conns[event["peerId"]]
            assert event["agentVersion"] == peer.agent_version
            assert event["protocols"] == list(peer.protocols)
    check_events(runtime, h.events)


def test_node_info_reachability_and_listen_addrs_change_with_their_events() -> None:
    h = Harness(connections=20, streams=3)
    reachabilities, listens = [], []
    for _ in range(7):
        node = h.state().node
        reachabilities.append(pb.NodeInfo.Reachability.Name(node.reachability))
        listens.append(list(node.listen_addrs))
        for addr in (*node.listen_addrs, *node.observed_addrs):
            multiaddr.Multiaddr(addr)
            assert "/p2p/" not in addr
        assert "/ipfs/id/1.0.0" in node.protocols and "/meshsub/1.1.0" in node.protocols
    assert reachabilities == ["UNKNOWN"] * 2 + ["PUBLIC"] * 5
    assert h.take("ReachabilityChanged") == [{"reachability": "PUBLIC"}]
    (change,) = h.take("ListenAddrsChanged")
    assert listens[4] + change["added"] == listens[5] and change["removed"] == []


def test_pubsub_is_consistent_with_connections_and_its_events() -> None:
    h = Harness(connections=80, streams=4, churn=0.05, pubsub_topics=12)
    previous: dict[str, set[str]] | None = None
    for _ in range(12):
        h.events.clear()
        state = h.state()
        pubsub = state.subsystems.pubsub
        assert pubsub.router == "/meshsub/1.1.0"
        active = {c.peer_id: c for c in state.subsystems.connections if c.status == pb.ACTIVE}
        peers = {p.peer_id: p for p in pubsub.peers}
        assert set(peers) <= set(active)
        for peer in pubsub.peers:
            conn = active[peer.peer_id]
            assert peer.protocol in conn.peer.protocols
            assert any(s.protocol == peer.protocol for s in conn.streams.streams)
        assert len(pubsub.topics) == 12
        for topic in pubsub.topics:
            assert set(topic.mesh_peers) <= set(topic.peers) and set(topic.fanout_peers) <= set(
                topic.peers
            )
            assert set(topic.peers) == {p for p, x in peers.items() if topic.name in x.topics}
            if topic.subscribed:
                assert not topic.fanout_peers and len(topic.mesh_peers) <= 12
            else:
                assert not topic.mesh_peers and topic.messages_in.cum_packets == 0
        assert sum(t.subscribed for t in pubsub.topics) == 10
        mesh = {t.name: set(t.mesh_peers) for t in pubsub.topics}
        if previous is not None:
            # Every graft and prune of this snapshot is a change between the two meshes.
            for event in h.take("PubsubGraft"):
                assert event["peerId"] in mesh[event["topic"]]
                assert event["peerId"] not in previous[event["topic"]]
                assert event["direction"] in ("INBOUND", "OUTBOUND")
            for event in h.take("PubsubPrune"):
                assert event["peerId"] not in mesh[event["topic"]]
                assert event["peerId"] in previous[event["topic"]]
        for event in h.take("PubsubSubscriptionChanged"):
            topic = next(t for t in pubsub.topics if t.name == event["topic"])
            assert (event["peerId"] in topic.peers) == event["subscribed"]
        previous = mesh
    assert any(t.messages_in.cum_packets and t.messages_in.inst_bw for t in pubsub.topics)
    assert any(t.messages_out.cum_packets for t in pubsub.topics)
    check_events(h.source.runtime(), h.events)


def test_resource_manager_agrees_with_connections_and_protocols() -> None:
    h = Harness(connections=50, streams=6, churn=0.1)
    blocked = 0
    for _ in range(15):
        state = h.state()
        resources = state.subsystems.resources
        scopes = {s.name: s for s in resources.scopes}
        system = scopes["system"]
        active = [c for c in state.subsystems.connections if c.status == pb.ACTIVE]
        assert system.usage.conns_total == len(active) == 50
        assert system.usage.streams_total == sum(p.active_streams for p in state.protocols)
        assert system.usage.memory > 0 and system.usage.fds == 0
        assert system.usage.conns_inbound == system.usage.conns_outbound == 0  # totals only
        by_protocol = {p.protocol: p.active_streams for p in state.protocols}
        for name, scope in scopes.items():
            assert name == "system" or name.startswith(("protocol:", "service:"))
            if name.startswith("protocol:"):
                assert scope.usage.streams_total == by_protocol.get(name.split(":", 1)[1], 0)
            for field in ("conns_total", "streams_total", "memory"):
                limit = getattr(scope.limit, field)
                assert limit == 0 or getattr(scope.usage, field) <= limit
        assert scopes["service:pubsub"].usage.streams_total == by_protocol.get(
            "/meshsub/1.1.0", 0
        ) + by_protocol.get("/meshsub/1.0.0", 0)
        assert resources.blocked >= blocked
        blocked = resources.blocked
    assert blocked > 0


def test_subsystems_switched_off_are_absent_and_undeclared() -> None:
    h = Harness(connections=10, streams=2, pubsub_topics=0, resource_manager=False)
    state = h.state()
    assert not state.subsystems.HasField("pubsub")
    assert not state.subsystems.HasField("resources")
    assert state.HasField("node") and state.protocols
    names = {t.name for t in h.source.runtime().event_types}
    assert "PubsubGraft" not in names and "PeerIdentified" in names


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    def run(seed: int) -> tuple[list[bytes], list[bytes]]:
        h = Harness(connections=30, streams=3, churn=0.1, seed=seed, pubsub_topics=6)
        states = []
        for _ in range(6):
            h.clock.advance(1_000)
            states.append(h.source.encoded_state())
        return states, [e.SerializeToString() for e in h.events]

    assert run(3) == run(3)
    assert run(3)[0] != run(4)[0]


def test_peer_ids_in_pubsub_and_events_are_real_peer_ids() -> None:
    h = Harness(connections=20, streams=2, churn=0.2, pubsub_topics=4)
    for _ in range(5):
        state = h.state()
    for peer in state.subsystems.pubsub.peers:
        assert ID.from_base58(peer.peer_id).to_base58() == peer.peer_id
    check_events(h.source.runtime(), h.events)


def test_five_thousand_connections_with_pubsub_on_fifty_topics() -> None:
    """Issue 12 deliverable 5: the synthetic node at scale, as ``serve --source mock
    --connections 5000 --pubsub-topics 50`` serves it; two snapshots, the server's path."""

    def snapshots(seed: int) -> tuple[list[bytes], list[bytes]]:
        h = Harness(connections=5_000, pubsub_topics=50, seed=seed)
        states = []
        for _ in range(2):
            h.clock.advance(1_000)
            states.append(h.source.encoded_state())
        return states, [e.SerializeToString() for e in h.events]

    encoded, events = snapshots(seed=11)
    assert (encoded, events) == snapshots(seed=11)  # the same seed, the same bytes
    previous: dict[str, tuple[int, int, int, int]] = {}
    for data in encoded:
        message = pb.ServerMessage(state=pb.State.FromString(data))
        counts = measure(message.SerializeToString())
        assert counts.ok, counts  # within the record caps every reader applies
        state = message.state
        active = {c.peer_id for c in state.subsystems.connections if c.status == pb.ACTIVE}
        assert len(active) == 5_000
        system = next(s for s in state.subsystems.resources.scopes if s.name == "system")
        assert system.usage.conns_total == 5_000
        pubsub = state.subsystems.pubsub
        assert len(pubsub.topics) == len({t.name for t in pubsub.topics}) == 50
        assert len(pubsub.peers) > 1_000 and {p.peer_id for p in pubsub.peers} <= active
        for topic in pubsub.topics:
            assert set(topic.peers) <= active
            assert set(topic.mesh_peers) | set(topic.fanout_peers) <= set(topic.peers)
        assert sum(len(t.mesh_peers) for t in pubsub.topics) > 100
        counters = {
            t.name: (t.messages_in.cum_packets, t.messages_in.cum_bytes,
                     t.messages_out.cum_packets, t.messages_out.cum_bytes)
            for t in pubsub.topics
        }  # fmt: skip
        if previous:
            for name, now in counters.items():
                assert all(a >= b for a, b in zip(now, previous[name], strict=True)), name
            assert all(
                sum(c[i] for c in counters.values()) > sum(c[i] for c in previous.values())
                for i in range(4)
            )  # messages flow both ways on the node's topics
        previous = counters
    names = {pb.Event.FromString(e).type.name for e in events}
    assert {"PubsubSubscriptionChanged", "PubsubGraft"} <= names
