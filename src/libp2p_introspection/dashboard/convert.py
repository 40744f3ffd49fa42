"""Protobuf to the compact JSON the dashboard's page reads.

Each snapshot is converted **once**, when it enters the store; every browser
gets the same text. Shapes (all timestamps ms since the Unix epoch, byte
counts in bytes, rates in bytes per second, latency in ns; absent timestamps
are ``0``; ids are lowercase hex of the schema's ``bytes`` ids):

Snapshot (:meth:`SnapshotConverter.convert`)::

    {"ts": instant_ts, "start": start_ts, "dur": snapshot_duration_ms,
     "traffic": TRAFFIC,
     "conns": [CONNECTION, ...],
     "dht": DHT or null,
     "node": NODE or null, "protocols": [PROTOCOL, ...],
     "pubsub": PUBSUB or null, "resources": RESOURCES or null}

    (NODE, PROTOCOL, PUBSUB, RESOURCES and PEERINFO, the §3.1 extensions: see
    :mod:`~libp2p_introspection.dashboard.convert_ext`; null when the snapshot
    lacks that subsystem, as every recording made before them does.)

    TRAFFIC    = {"in": bytes, "out": bytes, "inPkts": n, "outPkts": n,
                  "bwIn": B/s, "bwOut": B/s}
    CONNECTION = {"id": hex, "peer": peer id, "status": "ACTIVE"|"CLOSED"|...,
                  "role": "INITIATOR"|"RESPONDER", "src": multiaddr,
                  "dst": multiaddr, "transport": text (or hex), "mux": str,
                  "sec": str, "open": ms, "upgraded": ms, "close": ms,
                  "lat": ns, "relayedOver": hex or "", "tags": [str],
                  "gone": bool (no longer in the server's snapshot; kept here
                  as CLOSED until it ages out), "peerInfo": PEERINFO or null,
                  ...TRAFFIC fields, "streams": [STREAM, ...]}
    STREAM     = {"id": hex, "proto": protocol id, "role": ..., "status": ...,
                  "open": ms, "close": ms, "lat": ns, ...TRAFFIC fields}
    DHT        = {"protocol": str, "enabled": bool, "start": ms,
                  "params": {"k", "alpha", "disjointPaths", "beta"},
                  "buckets": [{"cpl": n, "peers": [{"peer": id,
                              "status": "ACTIVE"|"MISSING"|..., "age": ms}]}],
                  "qin": QUERIES, "qout": QUERIES}
    QUERIES    = {"success": n, "error": n, "timeout": n}

Summary (:func:`summarize`, one point of the charts' time series)::

    {"ts", "bwIn", "bwOut", "in", "out", "conns", "active", "streams",
     "dhtPeers", "qin": QUERIES, "qout": QUERIES,
     "protos": {protocol: [bwIn, bwOut]} (the busiest protocols, B/s)}

Runtime (:func:`runtime_to_json`)::

    {"implementation", "version", "platform", "peerId",
     "eventTypes": [{"name", "properties": [{"name", "type", "multiple"}]}]}

Event (:func:`event_to_json`)::

    {"seq": n (assigned by the store), "ts": ms, "type": name,
     "content": the event's JSON object (or its text, if it is not JSON,
                nests too deep, or is over MAX_PARSED_CONTENT characters),
     "query": QUERY (only for an InboundDHTQuery / OutboundDHTQuery),
     "says": a sentence (only for a §3.1 event type whose content has its
             shape: :func:`~libp2p_introspection.protocol.event_text.describe`)}

    QUERY      = {"dir": "INBOUND"|"OUTBOUND", "peers": [peer id, ...],
                  "message": str, "result": str (upper case), "ms": number or null}

A DHT query event is read in either shape (:func:`dht_query`): the one of
PROTOCOL.md §3 (``peerIds``, ``messageType``, ``totalTimeMs``, upper-case
``result``; the observer-toolkit's, with ``type`` where it has no
``messageType``), and this project's older one, in recordings made before
(``peerId``, ``queryType``, ``durationMs``, lower-case ``result``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from libp2p_introspection.dashboard import convert_ext as ext
from libp2p_introspection.dashboard.convert_ext import traffic_fields as _traffic
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.event_text import describe
from libp2p_introspection.protocol.ids import transport_text
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS

JSON = dict[str, Any]

#: How long a connection that vanished from the server's snapshots stays in
#: the dashboard's, as CLOSED, ms (servers that keep closed connections
#: themselves, as ours does, make this moot).
DEFAULT_CLOSED_TTL_MS = 120_000
#: The most snapshots a vanished connection is carried through, whatever the
#: timestamps say (``DEFAULT_CLOSED_TTL_MS`` at one snapshot per 200 ms; an
#: honest source, one per second by default, ages them by time first).
DEFAULT_CLOSED_TTL_SNAPSHOTS = 600

#: Longest event content parsed as JSON, characters; longer stays text (parsed,
#: ``[{},{},...]`` costs 25 times its text; honest events are well under 1 KiB).
MAX_PARSED_CONTENT = 16 * 1024

_STATUS = {v: k for k, v in pb.Status.items()}
_ROLE = {v: k for k, v in pb.Role.items()}
_PEER_STATUS = {v: k for k, v in pb.DHT.PeerInDHT.Status.items()}
_PROPERTY_TYPE = {v: k for k, v in pb.EventType.EventProperty.PropertyType.items()}


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces), as sent to browsers."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _queries(gauge: pb.DHT.QueryGauge) -> JSON:
    return {"success": gauge.success, "error": gauge.error, "timeout": gauge.timeout}


def stream_to_json(stream: pb.Stream) -> JSON:
    """One ``Stream`` (shape ``STREAM`` in the module doc)."""
    return _traffic(
        stream.traffic,
        {
            "id": stream.id.hex(),
            "proto": stream.protocol,
            "role": _ROLE.get(stream.role, str(stream.role)),
            "status": _STATUS.get(stream.status, str(stream.status)),
            "open": stream.timeline.open_ts,
            "close": stream.timeline.close_ts,
            "lat": stream.latency_ns,
        },
    )


def connection_to_json(conn: pb.Connection) -> JSON:
    """One ``Connection`` with its streams (shape ``CONNECTION`` in the module doc)."""
    relayed = conn.WhichOneof("relayed_over")
    if relayed == "conn_id":
        relayed_over = conn.conn_id.hex()
    elif relayed == "conn":
        relayed_over = conn.conn.id.hex()
    else:
        relayed_over = ""
    data = {
        "id": conn.id.hex(),
        "peer": conn.peer_id,
        "status": _STATUS.get(conn.status, str(conn.status)),
        "role": _ROLE.get(conn.role, str(conn.role)),
        "src": conn.endpoints.src_multiaddr,
        "dst": conn.endpoints.dst_multiaddr,
        "transport": transport_text(conn.transport_id),
        "mux": conn.attribs.multiplexer,
        "sec": conn.attribs.encryption,
        "open": conn.timeline.open_ts,
        "upgraded": conn.timeline.upgraded_ts,
        "close": conn.timeline.close_ts,
        "lat": conn.latency_ns,
        "relayedOver": relayed_over,
        "tags": list(conn.user_provided_tags),
        "gone": False,
        "peerInfo": ext.peer_info_to_json(conn),
    }
    _traffic(conn.traffic, data)
    data["streams"] = [stream_to_json(s) for s in conn.streams.streams]
    return data


def dht_to_json(dht: pb.DHT) -> JSON:
    """The DHT subsystem (shape ``DHT`` in the module doc)."""
    return {
        "protocol": dht.protocol,
        "enabled": dht.enabled,
        "start": dht.start_ts,
        "params": {
            "k": dht.params.k,
            "alpha": dht.params.alpha,
            "disjointPaths": dht.params.disjoint_paths,
            "beta": dht.params.beta,
        },
        "buckets": [
            {
                "cpl": bucket.cpl,
                "peers": [
                    {
                        "peer": peer.peer_id,
                        "status": _PEER_STATUS.get(peer.status, str(peer.status)),
                        "age": peer.age_in_bucket,
                    }
                    for peer in bucket.peers
                ],
            }
            for bucket in dht.buckets
        ],
        "qin": _queries(dht.incoming_queries),
        "qout": _queries(dht.outgoing_queries),
    }


def runtime_to_json(runtime: pb.Runtime) -> JSON:
    """The node's ``Runtime`` (shape in the module doc)."""
    return {
        "implementation": runtime.implementation,
        "version": runtime.version,
        "platform": runtime.platform,
        "peerId": runtime.peer_id,
        "eventTypes": [event_type_to_json(t) for t in runtime.event_types],
    }


def event_type_to_json(event_type: pb.EventType) -> JSON:
    """An ``EventType`` with its property types."""
    return {
        "name": event_type.name,
        "properties": [
            {
                "name": p.name,
                "type": _PROPERTY_TYPE.get(p.type, str(p.type)),
                "multiple": p.has_multiple,
            }
            for p in event_type.property_types
        ],
    }


#: The DHT query event types (one event per Kademlia RPC).
DHT_QUERY_EVENTS = ("InboundDHTQuery", "OutboundDHTQuery")


def dht_query(type_name: str, content: Any) -> JSON | None:
    """What a DHT query event says, from its content in either shape (module doc).

    ``None`` for another event type or a content that is not a JSON object.
    ``peers`` holds only the non-empty strings of ``peerIds`` (the toolkit's own
    recordings hold ``null`` entries) or the old ``peerId``; a value of the wrong
    kind reads as absent. The direction comes from the type name, as the toolkit
    reads it.
    """
    if type_name not in DHT_QUERY_EVENTS or not isinstance(content, dict):
        return None
    raw = content.get("peerIds")
    if isinstance(raw, list):
        peers = [p for p in raw if isinstance(p, str) and p]
    else:
        old = content.get("peerId")
        peers = [old] if isinstance(old, str) and old else []
    message = ""
    for key in ("messageType", "queryType", "type"):
        value = content.get(key)
        if isinstance(value, str) and value:
            message = value
            break
    result = content.get("result")
    ms: Any = None
    for key in ("totalTimeMs", "durationMs"):
        value = content.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            ms = value if abs(value) < 1e15 else None
            break
    return {
        "dir": "INBOUND" if type_name == "InboundDHTQuery" else "OUTBOUND",
        "peers": peers,
        "message": message,
        "result": result.upper() if isinstance(result, str) else "",
        "ms": ms,
    }


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # NaN, Infinity: a browser's JSON.parse refuses


def event_to_json(event: pb.Event) -> JSON:
    """An ``Event``; ``content`` parsed from its JSON text (kept as text if it is not
    JSON (``NaN`` and ``Infinity`` are not), nests too deeply to parse, or is longer
    than :data:`MAX_PARSED_CONTENT`); ``query`` added for a DHT query event.

    ``seq`` is 0 here; the store numbers events as they arrive.
    """
    text = event.content
    content: Any = text
    if not text:
        content = {}
    elif len(text) <= MAX_PARSED_CONTENT:
        with contextlib.suppress(ValueError, RecursionError):  # not JSON, or nested too deep
            content = json.loads(text, parse_constant=_not_json)
    out = {"seq": 0, "ts": event.ts, "type": event.type.name, "content": content}
    says = describe(event.type.name, content)
    if says is not None:
        out["says"] = says
    query = dht_query(event.type.name, content)
    if query is not None:
        out["query"] = query
    return out


def summarize(snapshot: JSON) -> JSON:
    """One chart point from a converted snapshot (shape ``Summary`` in the module doc)."""
    conns = snapshot["conns"]
    dht = snapshot["dht"]
    empty = {"success": 0, "error": 0, "timeout": 0}
    return {
        "ts": snapshot["ts"],
        "bwIn": snapshot["traffic"]["bwIn"],
        "bwOut": snapshot["traffic"]["bwOut"],
        "in": snapshot["traffic"]["in"],
        "out": snapshot["traffic"]["out"],
        "conns": len(conns),
        "active": sum(1 for c in conns if c["status"] == "ACTIVE"),
        "streams": sum(len(c["streams"]) for c in conns),
        "dhtPeers": sum(len(b["peers"]) for b in dht["buckets"]) if dht else 0,
        "qin": dht["qin"] if dht else empty,
        "qout": dht["qout"] if dht else empty,
        "protos": ext.summarize_protocols(snapshot.get("protocols", [])),
    }


@dataclass(slots=True)
class _Carried:
    """A connection carried on after it vanished (see :class:`SnapshotConverter`)."""

    data: JSON  # its CONNECTION form as last carried (status CLOSED, gone)
    closed_at: int  # when it closed, ms, never after it was last seen
    last_seen: int  # number of the last converted snapshot that held it


@dataclass
class SnapshotConverter:
    """Converts a source's successive ``State`` messages (shape ``Snapshot`` above).

    Stateful in one way: a connection that was in the previous snapshot and
    is missing from this one (a server that drops closed connections at
    once, as go-libp2p's recordings do) is carried on as CLOSED, with
    ``gone: true``, zero rates, no streams and ``close`` set to its
    ``close_ts``, or to the ``instant_ts`` of the last snapshot that held it
    if its ``close_ts`` is 0 or later than that. Use one converter per
    source, in the source's order.

    What is carried is bounded whatever the data says:

    - **by count**: a converted snapshot holds at most ``max_connections``
      connections (the expansion limit a message is held to, 10,000 by
      default): the server's own first, then the carried ones that vanished
      most recently; those that vanished longest ago go first;
    - **by time**: a carried connection goes once a snapshot's
      ``instant_ts`` is more than ``closed_ttl_ms`` past its ``close``, and
      in any case after ``closed_ttl_snapshots`` snapshots without it. The
      count of snapshots is this converter's own clock: a ``close_ts`` of
      2^64 - 1, or an ``instant_ts`` that never moves or goes back, cannot
      keep a connection for ever (and one far ahead only ends what is
      carried then).

    So converting one snapshot costs at most what ``max_connections``
    connections of it would (carried ones have no streams), and the
    converter keeps at most ``max_connections`` carried connections.
    """

    closed_ttl_ms: int = DEFAULT_CLOSED_TTL_MS
    closed_ttl_snapshots: int = DEFAULT_CLOSED_TTL_SNAPSHOTS
    max_connections: int = DEFAULT_LIMITS.max_connections
    #: The server's own connections in the previous snapshot, by id.
    _previous: dict[str, JSON] = field(default_factory=dict)
    #: ``instant_ts`` of the previous snapshot, ms.
    _previous_ts: int = 0
    #: Carried connections by id, the one that vanished longest ago first.
    _carried: dict[str, _Carried] = field(default_factory=dict)
    #: Snapshots converted so far (the clock the data cannot stop).
    _count: int = 0
    #: Pubsub topics' message counts of the previous snapshot, for their rates.
    _topic_rates: ext.TopicRates = field(default_factory=ext.TopicRates)

    def reset(self) -> None:
        """Forget carried connections (a new source)."""
        self._previous = {}
        self._previous_ts = 0
        self._carried = {}
        self._count = 0
        self._topic_rates.reset()

    def convert(self, state: pb.State) -> JSON:
        """The snapshot's compact JSON form (a new dict; the caller owns it)."""
        ts = state.instant_ts
        self._count += 1
        conns = [connection_to_json(c) for c in state.subsystems.connections]
        present = {c["id"]: c for c in conns}
        carried = self._carried
        for conn_id in present.keys() & carried.keys():  # back again (an id is never reused)
            del carried[conn_id]
        seen_at = self._previous_ts
        for conn_id, old in self._previous.items():
            if conn_id in present:
                continue
            closed_at = old["close"] if 0 < old["close"] <= seen_at else seen_at
            data = dict(old)
            data.update(status="CLOSED", gone=True, close=closed_at, bwIn=0, bwOut=0, streams=[])
            carried.pop(conn_id, None)
            carried[conn_id] = _Carried(data, closed_at, self._count - 1)
        oldest_count = self._count - self.closed_ttl_snapshots
        oldest_close = ts - self.closed_ttl_ms
        for conn_id in [
            conn_id
            for conn_id, c in carried.items()
            if c.last_seen < oldest_count or c.closed_at < oldest_close
        ]:
            del carried[conn_id]
        excess = len(carried) - max(self.max_connections - len(conns), 0)
        for conn_id in list(itertools.islice(carried, max(excess, 0))):  # longest gone first
            del carried[conn_id]
        conns.extend(dict(c.data) for c in carried.values())
        self._previous = present
        self._previous_ts = ts
        dht = dht_to_json(state.subsystems.dht) if state.subsystems.HasField("dht") else None
        return {
            "ts": ts,
            "start": state.start_ts,
            "dur": state.snapshot_duration_ms,
            "traffic": _traffic(state.traffic, {}),
            "conns": conns,
            "dht": dht,
            "node": ext.node_to_json(state),
            "protocols": ext.protocols_to_json(state),
            "pubsub": ext.pubsub_to_json(state.subsystems, ts, self._topic_rates),
            "resources": ext.resources_to_json(state.subsystems),
        }
