"""A recording of a node that reports every §3.1 extension (the views' test data).

Built with ``pb`` and written with the project's :class:`RecordingWriter`: a
runtime declaring the six §3.1 event types, :data:`SNAPSHOTS` snapshots one
second apart with every §3.1 field set (node, per-protocol traffic growing
each second, identified peers, pubsub with three topics, the resource manager
with a no-limit value), and one event of each new type. ``hostile=True`` puts
:func:`payload` (the form of ``dashboard/hostile_recording.py``) in every new string field instead (named
``ext.<field>``), to check the page shows them as text. ``extensions=False``
leaves every extension out (a node recorded before them).
"""

from __future__ import annotations

import json
from pathlib import Path

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingWriter

START_MS = 1_700_000_000_000
SNAPSHOTS = 4
PEER_A = "12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
PEER_B = "12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
OWN_PEER = "12D3KooWOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwn"
_PROP = pb.EventType.EventProperty

#: The new string fields of the hostile variant, by name.
HOSTILE_FIELDS = (
    "ext.listen", "ext.observed", "ext.node.protocol", "ext.agent", "ext.protocol_version",
    "ext.peer.protocol", "ext.peer.listen", "ext.observed_addr", "ext.protocol",
    "ext.router", "ext.topic", "ext.mesh_peer", "ext.pubsub.peer", "ext.pubsub.protocol",
    "ext.pubsub.topic", "ext.scope", "ext.event.agent", "ext.event.topic",
    "ext.event.addr", "ext.event.reachability",
)  # fmt: skip

EVENT_TYPES = {
    "PeerIdentified": [("peerId", _PROP.PEERID, False), ("agentVersion", _PROP.STRING, False),
                       ("protocolVersion", _PROP.STRING, False), ("protocols", _PROP.STRING, True)],
    "ListenAddrsChanged": [("added", _PROP.MULTIADDR, True), ("removed", _PROP.MULTIADDR, True)],
    "ReachabilityChanged": [("reachability", _PROP.STRING, False)],
    "PubsubSubscriptionChanged": [("peerId", _PROP.PEERID, False), ("topic", _PROP.STRING, False),
                                  ("subscribed", _PROP.JSON, False)],
    "PubsubGraft": [("peerId", _PROP.PEERID, False), ("topic", _PROP.STRING, False),
                    ("direction", _PROP.STRING, False)],
    "PubsubPrune": [("peerId", _PROP.PEERID, False), ("topic", _PROP.STRING, False),
                    ("direction", _PROP.STRING, False)],
}  # fmt: skip


def payload(field: str) -> str:
    """The hostile string put in ``field`` (what a page that parsed it as markup runs)."""
    return f'<img src=x onerror="xss(\'{field}\')"><b class="xss">{field}</b>'


class _Texts:
    """The strings of the recording: honest ones, or a payload per field."""

    def __init__(self, hostile: bool) -> None:
        self.hostile = hostile

    def __call__(self, name: str, honest: str) -> str:
        return payload(name) if self.hostile else honest


def _gauge(cum_bytes: int, packets: int, bw: int) -> pb.DataGauge:
    return pb.DataGauge(cum_bytes=cum_bytes, cum_packets=packets, inst_bw=bw)


def _traffic(cum_in: int, cum_out: int, bw_in: int, bw_out: int) -> pb.Traffic:
    return pb.Traffic(traffic_in=_gauge(cum_in, cum_in // 100, bw_in),
                      traffic_out=_gauge(cum_out, cum_out // 100, bw_out))  # fmt: skip


def runtime(hostile: bool = False) -> pb.Runtime:
    rt = pb.Runtime(implementation="py-libp2p", version="0.8.1", platform="linux", peer_id=OWN_PEER)
    for name, props in EVENT_TYPES.items():
        event_type = rt.event_types.add(name=name)
        for prop, kind, multiple in props:
            event_type.property_types.add(name=prop, type=kind, has_multiple=multiple)
    return rt


def _connection(t: _Texts, n: int, peer: str, ts: int, identified: bool) -> pb.Connection:
    conn = pb.Connection(id=bytes([n]) * 8, peer_id=peer, status=pb.ACTIVE, transport_id=b"tcp",
                         role=pb.INITIATOR, latency_ns=1_200_000)  # fmt: skip
    conn.endpoints.src_multiaddr = "/ip4/127.0.0.1/tcp/4001"
    conn.endpoints.dst_multiaddr = f"/ip4/127.0.0.{n}/tcp/4001"
    conn.timeline.open_ts = START_MS - 10_000
    conn.attribs.multiplexer = "/yamux/1.0.0"
    conn.attribs.encryption = "/noise"
    conn.traffic.CopyFrom(_traffic(1000 * n, 900 * n, 10, 9))
    stream = conn.streams.streams.add(id=bytes([n, 1]), protocol="/meshsub/1.1.0", status=pb.ACTIVE)
    stream.timeline.open_ts = START_MS - 9_000
    stream.traffic.CopyFrom(_traffic(500, 400, 5, 4))
    if identified:
        conn.peer.agent_version = t("ext.agent", f"py-libp2p/0.8.{n}")
        conn.peer.protocol_version = t("ext.protocol_version", "ipfs/0.1.0")
        conn.peer.protocols.extend([t("ext.peer.protocol", "/ipfs/id/1.0.0"), "/meshsub/1.1.0"])
        conn.peer.listen_addrs.append(t("ext.peer.listen", f"/ip4/10.0.0.{n}/tcp/4001"))
        conn.peer.observed_addr = t("ext.observed_addr", "/ip4/127.0.0.1/tcp/4001")
    return conn


def state(i: int, *, hostile: bool = False, extensions: bool = True) -> pb.State:
    """The ``i``-th snapshot (``i`` from 0): traffic and message counts grow with ``i``."""
    t = _Texts(hostile)
    ts = START_MS + i * 1000
    s = pb.State(instant_ts=ts, start_ts=ts - 1000, snapshot_duration_ms=1000)
    s.traffic.CopyFrom(_traffic(10_000 * (i + 1), 8_000 * (i + 1), 10_000, 8_000))
    s.subsystems.connections.append(_connection(t, 1, PEER_A, ts, identified=extensions))
    s.subsystems.connections.append(_connection(t, 2, PEER_B, ts, identified=False))
    if not extensions:
        return s
    s.node.listen_addrs.extend([t("ext.listen", "/ip4/127.0.0.1/tcp/4001"), "/ip4/10.1.1.1/tcp/4001"])
    s.node.observed_addrs.append(t("ext.observed", "/ip4/203.0.113.7/tcp/4001"))
    s.node.reachability = pb.NodeInfo.PRIVATE
    s.node.protocols.extend([t("ext.node.protocol", "/ipfs/id/1.0.0"), "/ipfs/ping/1.0.0",
                             "/meshsub/1.1.0"])  # fmt: skip
    for name, per_s, active in ((t("ext.protocol", "/meshsub/1.1.0"), 3000, 2),
                                ("/ipfs/ping/1.0.0", 200, 1), ("", 0, 0)):  # fmt: skip
        s.protocols.add(protocol=name, active_streams=active, streams_opened=active + 3,
                        traffic=_traffic(per_s * (i + 1), per_s * (i + 1) // 2, per_s, per_s // 2))  # fmt: skip
    ps = s.subsystems.pubsub
    ps.router = t("ext.router", "/meshsub/1.1.0")
    for k, (name, subscribed) in enumerate(((t("ext.topic", "blocks"), True), ("txs", True),
                                            ("others", False))):  # fmt: skip
        topic = ps.topics.add(name=name, subscribed=subscribed)
        if subscribed:
            topic.mesh_peers.append(t("ext.mesh_peer", PEER_A))
        else:
            topic.fanout_peers.append(PEER_B)
        topic.peers.extend([PEER_A, PEER_B])
        topic.messages_in.CopyFrom(_gauge(100 * (k + 1) * (i + 1), 5 * (k + 1) * (i + 1), 100))
        topic.messages_out.CopyFrom(_gauge(50 * (k + 1) * (i + 1), 2 * (k + 1) * (i + 1), 50))
    ps.peers.add(peer_id=t("ext.pubsub.peer", PEER_A), protocol=t("ext.pubsub.protocol", "/meshsub/1.1.0"),
                 score=-1.25, topics=[t("ext.pubsub.topic", "blocks"), "txs"])  # fmt: skip
    ps.peers.add(peer_id=PEER_B, protocol="/meshsub/1.1.0", score=2.5, topics=["others"])
    rm = s.subsystems.resources
    rm.blocked = 3 + i
    rm.scopes.add(name=t("ext.scope", "system"),
                  usage=pb.ResourceUsage(conns_inbound=1, conns_outbound=1, conns_total=2,
                                         streams_inbound=2, streams_outbound=1, streams_total=3,
                                         memory=5 << 20, fds=0),
                  limit=pb.ResourceUsage(conns_inbound=64, conns_outbound=64, conns_total=128,
                                         streams_inbound=512, streams_outbound=512,
                                         streams_total=1024, memory=128 << 20, fds=0))  # fmt: skip
    rm.scopes.add(name="protocol:/meshsub/1.1.0", usage=pb.ResourceUsage(streams_total=2),
                  limit=pb.ResourceUsage(streams_total=0))  # fmt: skip
    return s


def events(hostile: bool = False) -> list[pb.Event]:
    """One event of each §3.1 type."""
    t = _Texts(hostile)
    contents = {
        "PeerIdentified": {"peerId": PEER_A, "agentVersion": t("ext.event.agent", "py-libp2p/0.8.1"),
                           "protocolVersion": "ipfs/0.1.0", "protocols": ["/ipfs/id/1.0.0"]},
        "ListenAddrsChanged": {"added": [t("ext.event.addr", "/ip4/10.1.1.1/tcp/4001")], "removed": []},
        "ReachabilityChanged": {"reachability": t("ext.event.reachability", "PRIVATE")},
        "PubsubSubscriptionChanged": {"peerId": PEER_B, "topic": "txs", "subscribed": True},
        "PubsubGraft": {"peerId": PEER_A, "topic": t("ext.event.topic", "blocks"), "direction": "INBOUND"},
        "PubsubPrune": {"peerId": PEER_A, "topic": "txs", "direction": "OUTBOUND"},
    }  # fmt: skip
    return [
        pb.Event(type=pb.EventType(name=name), ts=START_MS + 100 + k, content=json.dumps(content))
        for k, (name, content) in enumerate(contents.items())
    ]


def write_full_recording(
    path: Path, *, hostile: bool = False, extensions: bool = True, then: tuple[pb.State, ...] = ()
) -> Path:
    """Write the recording (runtime, snapshots, the events after the first, then the
    snapshots ``then``) to ``path``."""
    with RecordingWriter(path, close_stream=True) as writer:
        writer.write_message(pb.ServerMessage(runtime=runtime(hostile)))
        for i in range(SNAPSHOTS):
            writer.write_message(pb.ServerMessage(state=state(i, hostile=hostile, extensions=extensions)))
            if i == 0 and extensions:
                for event in events(hostile):
                    writer.write_message(pb.ServerMessage(event=event))
        for extra in then:
            writer.write_message(pb.ServerMessage(state=extra))
    return path
