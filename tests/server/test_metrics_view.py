"""The Prometheus exposition: it parses, and its values are the snapshots' and events' data
(one source of truth), in go-libp2p's names and labels."""

from __future__ import annotations

import json
from collections import Counter

from metrics_helpers import (
    T0,
    FakeClockMs,
    connection,
    exposition,
    hub_with_view,
    publish,
    samples,
    state,
    value,
)

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.events import CONNECTION_OPENED, build_event
from libp2p_introspection.server.metrics import labels as lbl
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

OPENED = "libp2p_swarm_connections_opened_total"
CLOSED = "libp2p_swarm_connections_closed_total"


def _labels_of_event(content: dict) -> tuple[str, str, str, str]:
    return (content["direction"], content["transport"], content["encryption"],
            content["multiplexer"])  # fmt: skip


def test_connections_opened_and_closed_are_the_mock_sources_events_and_snapshots():
    clock = FakeClockMs()
    hub, view = hub_with_view()
    source = SyntheticSource(
        SyntheticOptions(connections=12, churn=0.25, dht_peers=0, seed=7, clock_ms=clock)
    )
    seen: list[pb.Event] = []

    def sink(event: pb.Event) -> None:
        seen.append(event)
        hub.publish_event(event)

    source.set_event_sink(sink)
    first = source.state()  # its churn closed some before the view saw them: not counted
    publish(hub, first)
    before_first = len(seen)
    # The connections it starts with come with no event: counted from the snapshot.
    announced = {json.loads(e.content)["connId"] for e in seen
                 if e.type.name == "ConnectionOpened"}  # fmt: skip
    expected_opened: Counter[tuple[str, ...]] = Counter(
        ("outbound" if c.role == pb.INITIATOR else "inbound", c.transport_id.decode(),
         c.attribs.encryption, c.attribs.multiplexer)
        for c in first.subsystems.connections
        if c.status == pb.ACTIVE and c.id.hex() not in announced
    )  # fmt: skip
    for _ in range(6):
        clock.now += 1_000
        source.take_snapshot(hub)
    last = view.state
    closed_events = [json.loads(e.content) for e in seen[before_first:]
                     if e.type.name == "ConnectionClosed"]  # fmt: skip
    for event in seen:
        if event.type.name == "ConnectionOpened":
            expected_opened[_labels_of_event(json.loads(event.content))] += 1
    assert closed_events and sum(expected_opened.values()) > 12  # churn happened

    text = exposition(view)
    for (direction, transport, security, muxer), count in expected_opened.items():
        labels = dict(dir=direction, transport=transport, security=security, muxer=muxer)
        assert value(text, OPENED, **labels) == count, labels
    assert value(text, CLOSED) == len(closed_events)
    active = sum(1 for c in last.subsystems.connections if c.status == pb.ACTIVE)
    assert value(text, OPENED) - value(text, CLOSED) == active == 12
    # every closed connection's duration observed, from the events' open and close times
    assert value(text, "libp2p_swarm_connection_duration_seconds_count") == len(closed_events)
    total = sum(c["closeTs"] - c["openTs"] for c in closed_events) / 1000
    assert abs(value(text, "libp2p_swarm_connection_duration_seconds_sum") - total) < 1e-6
    # the exposition says which snapshot it agrees with
    assert value(text, "libp2p_introspection_snapshot_instant_ts_ms") == last.instant_ts
    assert value(text, "libp2p_introspection_snapshot_number") == hub.latest.number == 7


def test_events_after_the_latest_snapshot_wait_for_the_next_one():
    hub, view = hub_with_view()
    publish(hub, state())
    content = {"peerId": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "connId": "00000000000000ff",
               "direction": "inbound", "localAddr": "/ip6/::1/tcp/1", "remoteAddr": "/ip6/::1/tcp/2",
               "transport": "tcp", "multiplexer": "/mplex/6.7.0", "encryption": "/noise",
               "openTs": T0}  # fmt: skip
    hub.publish_event(build_event(CONNECTION_OPENED, T0, content))
    assert value(exposition(view), OPENED) == 0  # the snapshot it agrees with had none
    conn = connection(0xFF, role=pb.RESPONDER, local="/ip6/::1/tcp/1")
    publish(hub, state(conn, instant_ts=T0 + 2_000))
    text = exposition(view)
    assert value(text, OPENED, dir="inbound", ip_version="ip6", muxer="/mplex/6.7.0") == 1
    assert value(text, OPENED) == 1  # the event and the snapshot are one connection
    assert value(text, "libp2p_swarm_key_types_total", dir="inbound", key_type="unknown") == 1


def test_a_connection_missing_from_the_next_snapshot_is_closed_and_go_queries_subtract():
    hub, view = hub_with_view()
    publish(hub, state(connection(1), connection(2, role=pb.RESPONDER)))
    publish(hub, state(connection(1, status=pb.CLOSED, close_ts=T0 + 4_000)))
    text = exposition(view)
    assert value(text, CLOSED, dir="outbound") == 1 and value(text, CLOSED, dir="inbound") == 1
    assert value(text, "libp2p_swarm_connection_duration_seconds_count") == 1  # 2's is unknown
    assert value(text, "libp2p_swarm_connection_duration_seconds_bucket", le="4") == 1
    assert value(text, "libp2p_swarm_connection_duration_seconds_bucket", le="2") == 0
    # every opened label set has its closed twin (0) and an early_muxer="true" one
    opened = {tuple(sorted(labels.items())) for labels, _ in samples(text)[OPENED]}
    closed = {tuple(sorted(labels.items())) for labels, _ in samples(text)[CLOSED]}
    assert opened == closed and len(opened) == 4


def test_a_node_that_only_accepted_connections_says_0_outbound_ones_not_nothing():
    # go's "Active Connections: Outgoing" subtracts closed from opened {dir="outbound"}:
    # for a node no outbound connection was ever counted on (the demo's observed node)
    # both must exist, at 0, with the label sets the node's connections have.
    hub, view = hub_with_view()
    publish(hub, state(connection(1, role=pb.RESPONDER), connection(2, role=pb.RESPONDER)))
    text = exposition(view)
    for name in (OPENED, CLOSED):
        outbound = [
            (labels, got)
            for labels, got in samples(text)[name]
            if labels["dir"] == "outbound" and labels["early_muxer"] == "false"
        ]
        assert outbound == [({"dir": "outbound", "transport": "tcp", "security": "/noise",
                              "muxer": "/yamux/1.0.0", "early_muxer": "false",
                              "ip_version": "ip4"}, 0.0)]  # fmt: skip
    assert value(text, OPENED, dir="inbound") == 2


def test_connection_duration_is_0_from_the_first_connection_so_its_first_close_counts():
    # rate() over a series that appears with its first observation sees no increase:
    # go's "Connection Duration" panel stayed empty for a node whose first connection of
    # a label set closed. The histogram exists (0) from that set's first connection on.
    hub, view = hub_with_view()
    publish(hub, state(connection(1, role=pb.RESPONDER)))
    duration = "libp2p_swarm_connection_duration_seconds_count"
    before = exposition(view)
    assert {labels["dir"]: got for labels, got in samples(before)[duration]} == {
        "inbound": 0.0, "outbound": 0.0}  # fmt: skip
    assert value(before, "libp2p_swarm_connection_duration_seconds_bucket", le="+Inf") == 0
    publish(hub, state(connection(1, role=pb.RESPONDER, status=pb.CLOSED, close_ts=T0 + 900)))
    after = exposition(view)
    assert value(after, duration, dir="inbound") == 1 and value(after, duration) == 1
    assert value(after, "libp2p_swarm_connection_duration_seconds_bucket", dir="inbound",
                 le="1") == 1  # fmt: skip
    assert value(after, "libp2p_swarm_connection_duration_seconds_sum") == 0.9


def test_handshake_latency_key_types_and_identify_come_from_the_snapshot():
    hub, view = hub_with_view()
    push = ["/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/ping/1.0.0"]
    publish(hub, state(
        connection(1, upgraded_ts=T0 + 30),
        connection(2, local="/ip4/127.0.0.1/udp/4001/quic-v1", transport=b"quic",
                   upgraded_ts=T0 + 3, protocols=push, listen_addrs=["/ip4/1.2.3.4/tcp/1"] * 3),
        connection(3, peer_id="16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",
                   protocols=["/ipfs/id/1.0.0"]),
    ))  # fmt: skip
    publish(hub, state(connection(1, upgraded_ts=T0 + 30, protocols=push)))  # identified later
    text = exposition(view)
    latency = "libp2p_swarm_handshake_latency_seconds_bucket"
    assert value(text, latency, transport="quic-v1", le="0.00371293") == 1  # 3 ms, quic
    assert value(text, latency, transport="tcp", le="+Inf") == 2
    assert value(text, "libp2p_swarm_handshake_latency_seconds_sum", transport="tcp") == 0.055
    assert value(text, "libp2p_swarm_key_types_total", key_type="Ed25519") == 2
    assert value(text, "libp2p_swarm_key_types_total", key_type="Secp256k1") == 1
    assert value(text, "libp2p_identify_conn_push_support_total", support="supported") == 2
    assert value(text, "libp2p_identify_conn_push_support_total", support="unsupported") == 1
    assert value(text, "libp2p_identify_protocols_received_count") == 3
    assert value(text, "libp2p_identify_protocols_received_sum") == 3 + 1 + 3
    assert value(text, "libp2p_identify_addrs_received_bucket", le="3") == 3


def _full_state() -> pb.State:
    snapshot = state(connection(1, protocols=["/ipfs/id/1.0.0"]))
    snapshot.traffic.traffic_in.cum_bytes = 5_000
    snapshot.traffic.traffic_out.cum_bytes = 7_000
    snapshot.node.listen_addrs.extend(["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"])
    snapshot.node.protocols.extend(["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/ipfs/kad/1.0.0"])
    snapshot.node.reachability = pb.NodeInfo.PRIVATE
    for name, in_bytes, active in (("/ipfs/ping/1.0.0", 640, 2), ("", 0, 0)):
        stats = snapshot.protocols.add(protocol=name, active_streams=active, streams_opened=9)
        stats.traffic.traffic_in.cum_bytes = in_bytes
        stats.traffic.traffic_out.cum_bytes = 2 * in_bytes
    resources = snapshot.subsystems.resources
    resources.blocked = 4
    system = resources.scopes.add(name="system")
    system.usage.conns_inbound, system.usage.conns_outbound = 2, 3
    system.usage.streams_total, system.usage.memory = 11, 1 << 20
    system.limit.conns_total, system.limit.streams_total = 100, 1_000
    ping = resources.scopes.add(name="protocol:/ipfs/ping/1.0.0")
    ping.usage.streams_total, ping.usage.memory = 2, 4096
    resources.scopes.add(name="service:libp2p.autonat").usage.memory = 512
    pubsub = snapshot.subsystems.pubsub
    pubsub.router = "/meshsub/1.1.0"
    mine = pubsub.topics.add(name="blocks", subscribed=True, mesh_peers=["a", "b"],
                             peers=["a", "b", "c"])  # fmt: skip
    mine.messages_in.cum_packets, mine.messages_in.cum_bytes = 10, 1_000
    pubsub.topics.add(name="theirs", peers=["c"])  # only a peer's: not a series
    pubsub.peers.add(peer_id="a")
    dht = snapshot.subsystems.dht
    dht.enabled = True
    bucket = dht.buckets.add(cpl=0)
    bucket.peers.add(peer_id="a", status=pb.DHT.PeerInDHT.ACTIVE)
    bucket.peers.add(peer_id="b", status=pb.DHT.PeerInDHT.MISSING)
    dht.outgoing_queries.success, dht.incoming_queries.timeout = 5, 1
    return snapshot


def test_node_protocols_rcmgr_pubsub_and_dht_families_are_the_snapshots_fields():
    hub, view = hub_with_view()
    publish(hub, _full_state())
    text = exposition(view)
    assert value(text, "libp2p_identify_addrs_count") == 2
    assert value(text, "libp2p_identify_protocols_count") == 3
    assert value(text, "libp2p_host_reachability", reachability="private") == 1
    assert value(text, "libp2p_host_bytes_total", dir="inbound") == 5_000
    assert value(text, "libp2p_protocol_bytes_total", protocol="/ipfs/ping/1.0.0",
                 dir="outbound") == 1_280  # fmt: skip
    assert value(text, "libp2p_protocol_streams", protocol="/ipfs/ping/1.0.0") == 2
    assert value(text, "libp2p_protocol_streams_opened_total", protocol="") == 9
    # go's resource-manager families: directions, and a total-only value as "unknown"
    assert value(text, "libp2p_rcmgr_connections", scope="system", dir="outbound") == 3
    assert value(text, "libp2p_rcmgr_streams", scope="system", dir="unknown") == 11
    assert value(text, "libp2p_rcmgr_streams", scope="protocol",
                 protocol="/ipfs/ping/1.0.0") == 2  # fmt: skip
    assert value(text, "libp2p_rcmgr_memory", scope="system") == 1 << 20
    assert value(text, "libp2p_rcmgr_memory", scope="service", service="libp2p.autonat") == 512
    assert value(text, "libp2p_rcmgr_limit", scope="system", resource="conns") == 100
    assert value(text, "libp2p_rcmgr_blocked_resources") == 4
    assert "# TYPE libp2p_rcmgr_blocked_resources untyped" in text  # go's name, no _total
    assert value(text, "libp2p_pubsub_topic_mesh_peers", topic="blocks") == 2
    assert value(text, "libp2p_pubsub_messages_total", topic="blocks", dir="inbound") == 10
    assert not [s for s in samples(text)["libp2p_pubsub_topic_peers"] if s[0]["topic"] == "theirs"]
    assert value(text, "libp2p_pubsub_other_topics") == 1
    assert value(text, "libp2p_dht_routing_table_peers", status="missing") == 1
    assert value(text, "libp2p_dht_queries_total", dir="outbound", result="success") == 5
    assert value(text, "libp2p_dht_queries_total", dir="inbound", result="timeout") == 1


def test_no_peer_id_label_unless_the_per_peer_option_is_on():
    many = [connection(n, peer_id=f"12D3KooWpeer{n}") for n in range(1, 6)]
    for per_peer, series in ((False, 0), (True, 5)):
        hub, view = hub_with_view(per_peer=per_peer)
        publish(hub, state(*many))
        found = samples(exposition(view))
        with_peer = [s for rows in found.values() for s in rows if "peer_id" in s[0]]
        host_info = found["libp2p_host_info"]
        assert len(with_peer) - len(host_info) == (0 if not per_peer else 4 * series)


def test_labels_from_the_data_are_capped_and_nothing_it_sends_raises():
    hub, view = hub_with_view()
    snapshot = state()
    for n in range(lbl.MAX_VALUES + 50):
        snapshot.protocols.add(protocol=f"/p/{n}/" + "x" * 500, streams_opened=1)
    publish(hub, snapshot)
    opened = samples(exposition(view))["libp2p_protocol_streams_opened_total"]
    assert len(opened) == lbl.MAX_VALUES + 1
    assert max(len(labels["protocol"]) for labels, _ in opened) == lbl.MAX_LABEL_CHARS
    assert dict(opened[-1][0]) == {"protocol": "other"} or any(
        labels["protocol"] == "other" and v == 50 for labels, v in opened
    )
    bad = pb.Event(ts=T0, content="{not json")
    bad.type.name = "ConnectionOpened"
    hub.publish_event(bad)
    wrong = pb.Event(ts=T0, content='{"connId": "zz"}')
    wrong.type.name = "ConnectionClosed"
    hub.publish_event(wrong)
    hub.publish_snapshot(b"garbage, not a frame")
    publish(hub, state())
    assert view.unreadable_events == 2 and view.unreadable_snapshots == 1
    assert view.snapshot_number == 3  # the next good one is read


def test_key_types_of_peer_ids():
    assert lbl.key_type("12D3KooWGRUVh1ZWWrcVz6bx3YNkpyjF5ZoL48WRZvoC3jFTnXaa") == "Ed25519"
    assert lbl.key_type("16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY") == "Secp256k1"
    assert lbl.key_type("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N") == "unknown"
    assert lbl.key_type("not a peer id!") == "unknown"
    assert lbl.transport_of("tcp", "/ip4/1.2.3.4/tcp/1/ws") == "ws"
    assert lbl.transport_of("", "") == "unknown"
