"""The §3.1 extensions (PROTOCOL.md) in the dashboard's JSON: the node, its peers'
identify data, per-protocol traffic, pubsub and the resource manager.

:mod:`~libp2p_introspection.dashboard.convert` adds these to each converted
snapshot; an extension the snapshot lacks is ``null`` (the node does not run
that subsystem, or was recorded before it was reported), never an empty
object. Shapes (byte counts in bytes, rates in bytes per second, message
rates in messages per second; strings and lists capped as
:mod:`~libp2p_introspection.dashboard.caps` says)::

    NODE      = {"listen": [multiaddr], "observed": [multiaddr],
                 "reachability": "UNKNOWN"|"PUBLIC"|"PRIVATE"|"NOT_RUNNING",
                 "protocols": [protocol id]}
    PEERINFO  = {"agent": str, "protoVersion": str, "protocols": [str],
                 "listen": [multiaddr], "observed": multiaddr}
    PROTOCOL  = {"proto": protocol id ("" for streams that closed before
                 negotiating one), "active": n, "opened": n, ...TRAFFIC fields}
    PUBSUB    = {"router": protocol id, "topics": [TOPIC], "peers": [PSPEER]}
    TOPIC     = {"name": str, "subscribed": bool, "mesh": n, "fanout": n,
                 "known": n, "meshPeers": [peer id], "msgIn": n, "msgOut": n,
                 "bytesIn": bytes, "bytesOut": bytes, "bwIn": B/s, "bwOut": B/s,
                 "rateIn": msg/s or null, "rateOut": msg/s or null}
    PSPEER    = {"peer": peer id, "protocol": str, "score": number or null
                 (null for a score that is not a finite number), "topics": [str]}
    RESOURCES = {"blocked": n, "scopes": [{"name": str, "usage": USAGE,
                 "limit": USAGE (0 = no limit)}]}
    USAGE     = {"connsIn", "connsOut", "connsTotal", "streamsIn", "streamsOut",
                 "streamsTotal", "memory" (bytes), "fds"}

A topic's ``rateIn``/``rateOut`` are messages per second between this snapshot
and the previous one of the same source that held the topic (:class:`TopicRates`),
``null`` for the first; the schema carries only the cumulative counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from libp2p_introspection.dashboard.caps import MAX_PEER_ID, MAX_TEXT, capped, capped_list
from libp2p_introspection.protocol import pb

JSON = dict[str, Any]

_REACHABILITY = {v: k for k, v in pb.NodeInfo.Reachability.items()}
#: Protocols kept in one chart point (the most bytes in and out first).
MAX_SUMMARY_PROTOCOLS = 12


def traffic_fields(traffic: pb.Traffic, into: JSON) -> JSON:
    """``into`` with a ``Traffic``'s TRAFFIC fields (:mod:`.convert_swarm`'s module doc) set."""
    into["in"] = traffic.traffic_in.cum_bytes
    into["out"] = traffic.traffic_out.cum_bytes
    into["inPkts"] = traffic.traffic_in.cum_packets
    into["outPkts"] = traffic.traffic_out.cum_packets
    into["bwIn"] = traffic.traffic_in.inst_bw
    into["bwOut"] = traffic.traffic_out.inst_bw
    return into


def node_to_json(state: pb.State) -> JSON | None:
    """``State.node`` (shape ``NODE``), or ``None`` when the snapshot has none."""
    if not state.HasField("node"):
        return None
    node = state.node
    return {
        "listen": capped_list(node.listen_addrs),
        "observed": capped_list(node.observed_addrs),
        "reachability": _REACHABILITY.get(node.reachability, str(node.reachability)),
        "protocols": capped_list(node.protocols),
    }


def peer_info_to_json(conn: pb.Connection) -> JSON | None:
    """``Connection.peer`` (shape ``PEERINFO``), or ``None`` until the peer was identified."""
    if not conn.HasField("peer"):
        return None
    peer = conn.peer
    return {
        "agent": capped(peer.agent_version, MAX_TEXT),
        "protoVersion": capped(peer.protocol_version, MAX_TEXT),
        "protocols": capped_list(peer.protocols),
        "listen": capped_list(peer.listen_addrs),
        "observed": capped(peer.observed_addr, MAX_TEXT),
    }


def protocols_to_json(state: pb.State) -> list[JSON]:
    """``State.protocols`` (shape ``PROTOCOL`` each; empty for a snapshot without them)."""
    return [
        traffic_fields(
            p.traffic,
            {
                "proto": capped(p.protocol, MAX_TEXT),
                "active": p.active_streams,
                "opened": p.streams_opened,
            },
        )
        for p in state.protocols
    ]


def _usage(usage: pb.ResourceUsage) -> JSON:
    return {
        "connsIn": usage.conns_inbound,
        "connsOut": usage.conns_outbound,
        "connsTotal": usage.conns_total,
        "streamsIn": usage.streams_inbound,
        "streamsOut": usage.streams_outbound,
        "streamsTotal": usage.streams_total,
        "memory": usage.memory,
        "fds": usage.fds,
    }


def resources_to_json(subsystems: pb.Subsystems) -> JSON | None:
    """``Subsystems.resources`` (shape ``RESOURCES``), or ``None`` when the resource
    manager is off (or the snapshot predates it)."""
    if not subsystems.HasField("resources"):
        return None
    rm = subsystems.resources
    return {
        "blocked": rm.blocked,
        "scopes": [
            {"name": capped(s.name, MAX_TEXT), "usage": _usage(s.usage), "limit": _usage(s.limit)}
            for s in rm.scopes
        ],
    }


def _score(value: float) -> float | None:
    return value if math.isfinite(value) else None  # NaN and infinities are not JSON


@dataclass
class TopicRates:
    """Messages per second per topic, from the cumulative counts of successive
    snapshots of one source: remembers each topic's counts of the last snapshot
    (only the topics of that snapshot, so it holds no more than one snapshot's)."""

    #: Topic name -> (instant_ts ms, messages in, messages out) of the last snapshot.
    _last: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: The counts of the snapshot being converted, kept once it is (:meth:`commit`).
    _pending: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget every topic (a new source)."""
        self._last = {}
        self._pending = {}

    def commit(self) -> None:
        """Keep the counts of the last :meth:`rates` call (its snapshot was converted;
        one that was refused leaves the rates as they were)."""
        self._last = self._pending
        self._pending = {}

    def rates(self, ts: int, topics: list[tuple[str, int, int]]) -> list[tuple[Any, Any]]:
        """``(rate in, rate out)`` in messages per second for each ``(name, in, out)``
        at ``ts``, against the last committed counts; ``None`` where there is no
        earlier count, time did not move forward, or a count went down (another
        node, a restart)."""
        out: list[tuple[Any, Any]] = []
        now: dict[str, tuple[int, int, int]] = {}
        for name, got, sent in topics:
            before = self._last.get(name)
            now[name] = (ts, got, sent)
            if before is None or ts <= before[0] or got < before[1] or sent < before[2]:
                out.append((None, None))
                continue
            seconds = (ts - before[0]) / 1000
            out.append(
                (round((got - before[1]) / seconds, 3), round((sent - before[2]) / seconds, 3))
            )
        self._pending = now
        return out


class PubsubPeers:
    """The pubsub peers of the last snapshot converted, by their serialized bytes
    (a router's peers rarely change between snapshots: a peer whose bytes are the
    same is converted to the same dict, not converted again). Holds one
    snapshot's peers: those of the last :func:`pubsub_to_json` call."""

    def __init__(self) -> None:
        self._by_bytes: dict[bytes, JSON] = {}

    def reset(self) -> None:
        """Forget every peer (a new source)."""
        self._by_bytes = {}

    def convert(self, peers: Iterable[pb.PubSubPeer]) -> list[JSON]:
        """Each of ``peers`` as a ``PUBSUB`` peer, in order (shared dicts: not to be
        modified); what it keeps for the next call is these peers."""
        before = self._by_bytes
        now: dict[bytes, JSON] = {}
        out: list[JSON] = []
        for p in peers:
            key = p.SerializeToString()
            data = before.get(key)
            if data is None:
                data = now.get(key) or _pubsub_peer(p)
            now[key] = data
            out.append(data)
        self._by_bytes = now
        return out


def _pubsub_peer(p: pb.PubSubPeer) -> JSON:
    return {
        "peer": capped(p.peer_id, MAX_PEER_ID),
        "protocol": capped(p.protocol, MAX_TEXT),
        "score": _score(p.score),
        "topics": capped_list(p.topics),
    }


def pubsub_to_json(
    subsystems: pb.Subsystems, ts: int, rates: TopicRates, peers: PubsubPeers | None = None
) -> JSON | None:
    """``Subsystems.pubsub`` (shape ``PUBSUB``), or ``None`` when the host runs no
    pubsub router; ``ts`` is the snapshot's ``instant_ts`` (ms), for the rates;
    ``peers``: the peers of the source's last snapshot, reused where unchanged."""
    if not subsystems.HasField("pubsub"):
        return None
    ps = subsystems.pubsub
    topics = []
    counts = []
    for t in ps.topics:
        name = capped(t.name, MAX_TEXT)
        counts.append((name, t.messages_in.cum_packets, t.messages_out.cum_packets))
        topics.append({
            "name": name, "subscribed": t.subscribed, "mesh": len(t.mesh_peers),
            "fanout": len(t.fanout_peers), "known": len(t.peers),
            "meshPeers": capped_list(t.mesh_peers, MAX_PEER_ID),
            "msgIn": t.messages_in.cum_packets, "msgOut": t.messages_out.cum_packets,
            "bytesIn": t.messages_in.cum_bytes, "bytesOut": t.messages_out.cum_bytes,
            "bwIn": t.messages_in.inst_bw, "bwOut": t.messages_out.inst_bw,
        })  # fmt: skip
    for topic, (rate_in, rate_out) in zip(topics, rates.rates(ts, counts), strict=True):
        topic["rateIn"], topic["rateOut"] = rate_in, rate_out
    return {
        "router": capped(ps.router, MAX_TEXT),
        "topics": topics,
        "peers": [_pubsub_peer(p) for p in ps.peers] if peers is None else peers.convert(ps.peers),
    }


def summarize_protocols(protocols: list[JSON]) -> dict[str, list[int]]:
    """One chart point's per-protocol bandwidth: ``{protocol: [bwIn, bwOut]}`` (B/s)
    for the :data:`MAX_SUMMARY_PROTOCOLS` protocols with the most bytes in and out."""
    top = sorted(protocols, key=lambda p: p["in"] + p["out"], reverse=True)
    return {p["proto"]: [p["bwIn"], p["bwOut"]] for p in top[:MAX_SUMMARY_PROTOCOLS]}
