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

Every string the converter emits is capped (a real node never comes near the
caps): peer ids at :data:`MAX_PEER_ID` characters, connection and stream ids
at :data:`MAX_ID_BYTES` bytes (before hex), multiaddrs, protocol ids,
transport, muxer, security, tags and runtime fields at :data:`MAX_TEXT`,
event type and property names at :data:`MAX_NAME`, event content at
:data:`MAX_EVENT_CONTENT`. A longer value is cut, and the cut is shown:
``…(+N chars)`` (``…(+N bytes)`` for an id) ends it (:func:`capped`). A
snapshot whose JSON text would take more than the converter's budget
(:data:`DEFAULT_MAX_SNAPSHOT_BYTES`, carried connections included) is not
converted at all: :meth:`SnapshotConverter.convert` raises
:class:`SnapshotTooLarge` before building its text, and the caller skips it
with a notice. The §3.1 extensions' strings are capped the same way (peer ids
at :data:`MAX_PEER_ID`, the rest at :data:`MAX_TEXT`), their lists of strings at
:data:`~libp2p_introspection.dashboard.caps.MAX_LIST` items, and their text counts
against the budget. So one string cannot cost more than its cap, however long it
was on the wire, and no page is sent a snapshot larger than the budget.

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
from libp2p_introspection.dashboard.caps import (
    MAX_PEER_ID,
    MAX_TEXT,
    capped,
    json_len,
    json_size,
)
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

#: Caps on the strings the converter emits (module doc), characters; ids in bytes.
MAX_ID_BYTES = 64
MAX_NAME = 256
MAX_EVENT_CONTENT = 64 * 1024
#: Event types and property types kept from a ``Runtime`` (an honest node declares
#: a dozen types of a few properties each); the rest are left out.
MAX_EVENT_TYPES = 1024
MAX_PROPERTY_TYPES = 4096
#: Largest JSON text of one converted snapshot, characters (carried connections
#: included): 2.5 times the 24 MB of an honest snapshot of 10,000 connections of
#: 10 streams each, the default expansion limits.
DEFAULT_MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024


class SnapshotTooLarge(ValueError):
    """A snapshot whose JSON text would be larger than the converter's budget
    (the message says how large, and what it held)."""


_STATUS = {v: k for k, v in pb.Status.items()}
_ROLE = {v: k for k, v in pb.Role.items()}
_PEER_STATUS = {v: k for k, v in pb.DHT.PeerInDHT.Status.items()}
_PROPERTY_TYPE = {v: k for k, v in pb.EventType.EventProperty.PropertyType.items()}


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces), as sent to browsers."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def capped_id(value: bytes, cap: int = MAX_ID_BYTES) -> str:
    """An id's lowercase hex, of at most its first ``cap`` bytes, then ``…(+N bytes)``."""
    if len(value) <= cap:
        return value.hex()
    return f"{value[:cap].hex()}…(+{len(value) - cap} bytes)"


def capped_transport(value: bytes) -> str:
    """``Connection.transport_id`` as :func:`~libp2p_introspection.protocol.ids.transport_text`
    writes it, of at most its first :data:`MAX_TEXT` bytes, then ``…(+N bytes)``."""
    if len(value) <= MAX_TEXT:
        return transport_text(value)
    return f"{transport_text(value[:MAX_TEXT])}…(+{len(value) - MAX_TEXT} bytes)"


def _queries(gauge: pb.DHT.QueryGauge) -> JSON:
    return {"success": gauge.success, "error": gauge.error, "timeout": gauge.timeout}


def stream_to_json(stream: pb.Stream) -> JSON:
    """One ``Stream`` (shape ``STREAM`` in the module doc), its strings capped."""
    return _stream(stream)[0]


def _stream(stream: pb.Stream) -> tuple[JSON, int]:
    """The stream's JSON form and at most how many characters its text takes."""
    stream_id = capped_id(stream.id)
    proto = capped(stream.protocol, MAX_TEXT)
    data = _traffic(
        stream.traffic,
        {
            "id": stream_id,
            "proto": proto,
            "role": _ROLE.get(stream.role, str(stream.role)),
            "status": _STATUS.get(stream.status, str(stream.status)),
            "open": stream.timeline.open_ts,
            "close": stream.timeline.close_ts,
            "lat": stream.latency_ns,
        },
    )
    return data, _STREAM_FIXED + len(stream_id) + json_len(proto)


def connection_to_json(conn: pb.Connection) -> JSON:
    """One ``Connection`` with its streams (shape ``CONNECTION`` in the module doc),
    its strings capped."""
    data, _, _ = _connection(conn)
    return data


def _connection(conn: pb.Connection) -> tuple[JSON, int, int]:
    """The connection's JSON form, at most how many characters its text takes
    without its streams (as when carried: ``"streams":[]``), and its streams'."""
    relayed = conn.WhichOneof("relayed_over")
    if relayed == "conn_id":
        relayed_over = capped_id(conn.conn_id)
    elif relayed == "conn":
        relayed_over = capped_id(conn.conn.id)
    else:
        relayed_over = ""
    texts = (
        capped(conn.peer_id, MAX_PEER_ID),
        capped(conn.endpoints.src_multiaddr, MAX_TEXT),
        capped(conn.endpoints.dst_multiaddr, MAX_TEXT),
        capped_transport(conn.transport_id),
        capped(conn.attribs.multiplexer, MAX_TEXT),
        capped(conn.attribs.encryption, MAX_TEXT),
    )
    tags = [capped(tag, MAX_TEXT) for tag in conn.user_provided_tags]
    conn_id = capped_id(conn.id)
    peer_info = ext.peer_info_to_json(conn)
    data = {
        "id": conn_id,
        "peer": texts[0],
        "status": _STATUS.get(conn.status, str(conn.status)),
        "role": _ROLE.get(conn.role, str(conn.role)),
        "src": texts[1],
        "dst": texts[2],
        "transport": texts[3],
        "mux": texts[4],
        "sec": texts[5],
        "open": conn.timeline.open_ts,
        "upgraded": conn.timeline.upgraded_ts,
        "close": conn.timeline.close_ts,
        "lat": conn.latency_ns,
        "relayedOver": relayed_over,
        "tags": tags,
        "gone": False,
        "peerInfo": peer_info,
    }
    _traffic(conn.traffic, data)
    streams = [_stream(s) for s in conn.streams.streams]
    data["streams"] = [stream for stream, _ in streams]
    size = (
        _CONNECTION_FIXED
        + len(conn_id)
        + len(relayed_over)
        + sum(json_len(text) for text in texts)
        + sum(json_len(tag) + 1 for tag in tags)
        + (json_size(peer_info, DEFAULT_MAX_SNAPSHOT_BYTES) if peer_info is not None else 0)
    )
    return data, size, sum(stream_size for _, stream_size in streams)


def dht_to_json(dht: pb.DHT) -> JSON:
    """The DHT subsystem (shape ``DHT`` in the module doc), its strings capped."""
    return _dht(dht)[0]


def _dht(dht: pb.DHT) -> tuple[JSON, int]:
    """The DHT's JSON form and at most how many characters its text takes."""
    protocol = capped(dht.protocol, MAX_TEXT)
    size = _DHT_FIXED + json_len(protocol)
    buckets = []
    for bucket in dht.buckets:
        peers = []
        for peer in bucket.peers:
            peer_id = capped(peer.peer_id, MAX_PEER_ID)
            size += _PEER_FIXED + json_len(peer_id)
            peers.append(
                {
                    "peer": peer_id,
                    "status": _PEER_STATUS.get(peer.status, str(peer.status)),
                    "age": peer.age_in_bucket,
                }
            )
        size += _BUCKET_FIXED
        buckets.append({"cpl": bucket.cpl, "peers": peers})
    data = {
        "protocol": protocol,
        "enabled": dht.enabled,
        "start": dht.start_ts,
        "params": {
            "k": dht.params.k,
            "alpha": dht.params.alpha,
            "disjointPaths": dht.params.disjoint_paths,
            "beta": dht.params.beta,
        },
        "buckets": buckets,
        "qin": _queries(dht.incoming_queries),
        "qout": _queries(dht.outgoing_queries),
    }
    return data, size


def runtime_to_json(runtime: pb.Runtime) -> JSON:
    """The node's ``Runtime`` (shape in the module doc), its strings capped; at most
    :data:`MAX_EVENT_TYPES` event types of :data:`MAX_PROPERTY_TYPES` properties in all."""
    event_types = []
    properties = 0
    for event_type in itertools.islice(runtime.event_types, MAX_EVENT_TYPES):
        room = max(MAX_PROPERTY_TYPES - properties, 0)
        converted = event_type_to_json(event_type, max_properties=room)
        properties += len(converted["properties"])
        event_types.append(converted)
    return {
        "implementation": capped(runtime.implementation, MAX_TEXT),
        "version": capped(runtime.version, MAX_TEXT),
        "platform": capped(runtime.platform, MAX_TEXT),
        "peerId": capped(runtime.peer_id, MAX_PEER_ID),
        "eventTypes": event_types,
    }


def event_type_to_json(
    event_type: pb.EventType, *, max_properties: int = MAX_PROPERTY_TYPES
) -> JSON:
    """An ``EventType`` with its property types (names capped at :data:`MAX_NAME`;
    the first ``max_properties`` of them)."""
    props = event_type.property_types[:max_properties]
    return {
        "name": capped(event_type.name, MAX_NAME),
        "properties": [
            {
                "name": capped(p.name, MAX_NAME),
                "type": _PROPERTY_TYPE.get(p.type, str(p.type)),
                "multiple": p.has_multiple,
            }
            for p in props
        ],
    }


def _widest(message: Any) -> Any:
    """``message`` with every singular number, enum and bool set to the value whose
    JSON text is longest (the strings stay empty); for the fixed costs below."""
    for f in message.DESCRIPTOR.fields:
        if f.is_repeated or f.containing_oneof is not None:
            continue
        if f.type == f.TYPE_MESSAGE:
            _widest(getattr(message, f.name))
        elif f.type in (f.TYPE_UINT64, f.TYPE_FIXED64):
            setattr(message, f.name, 2**64 - 1)
        elif f.type in (f.TYPE_UINT32, f.TYPE_FIXED32):
            setattr(message, f.name, 2**32 - 1)
        elif f.type in (f.TYPE_INT32, f.TYPE_ENUM, f.TYPE_SINT32, f.TYPE_SFIXED32):
            setattr(message, f.name, -(2**31))
        elif f.type in (f.TYPE_INT64, f.TYPE_SINT64, f.TYPE_SFIXED64):
            setattr(message, f.name, -(2**63))
        elif f.type == f.TYPE_BOOL:
            setattr(message, f.name, False)
    return message


#: The most characters each shape's text takes besides its counted strings (ids
#: are counted without quotes, other strings with), plus one for a separating comma;
#: measured on the widest values (0 while measuring).
_STREAM_FIXED = _CONNECTION_FIXED = _PEER_FIXED = _BUCKET_FIXED = _DHT_FIXED = 0
_STREAM_FIXED = len(dumps(_stream(_widest(pb.Stream()))[0])) - 2 + 1
_CONNECTION_FIXED = len(dumps(_connection(_widest(pb.Connection()))[0])) - 2 * 6 + 1
_PEER_FIXED = len(dumps(_dht(_widest(pb.DHT(buckets=[pb.DHT.Bucket(peers=[
    _widest(pb.DHT.PeerInDHT())])])))[0]["buckets"][0]["peers"][0])) - 2 + 1  # fmt: skip
_BUCKET_FIXED = len(dumps({"cpl": 2**32 - 1, "peers": []})) + 1
_DHT_FIXED = len(dumps(_dht(_widest(pb.DHT()))[0])) - 2
_STATE_FIXED = len(dumps({"ts": 2**64 - 1, "start": 2**64 - 1, "dur": 2**32 - 1,
                          "traffic": _traffic(_widest(pb.Traffic()), {}),
                          "conns": [], "dht": None}))  # fmt: skip


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
    than :data:`MAX_PARSED_CONTENT`, and then cut at :data:`MAX_EVENT_CONTENT`);
    ``query`` added for a DHT query event; the type name capped at :data:`MAX_NAME`.

    ``seq`` is 0 here; the store numbers events as they arrive.
    """
    text = event.content
    content: Any = capped(text, MAX_EVENT_CONTENT)
    if not text:
        content = {}
    elif len(text) <= MAX_PARSED_CONTENT:
        with contextlib.suppress(ValueError, RecursionError):  # not JSON, or nested too deep
            content = json.loads(text, parse_constant=_not_json)
    type_name = capped(event.type.name, MAX_NAME)
    out = {"seq": 0, "ts": event.ts, "type": type_name, "content": content}
    says = describe(type_name, content)
    if says is not None:
        out["says"] = says
    query = dht_query(type_name, content)
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


def _text_size(
    state: pb.State, conns: list[JSON], carried: list[JSON], dht: JSON | None, stop: int
) -> int:
    """How many characters :func:`dumps` of the converted snapshot takes, counted a
    connection and a stream at a time (never the whole text at once); the count so
    far, over ``stop``, as soon as it passes ``stop``."""
    head = {"ts": 0, "start": state.start_ts, "dur": state.snapshot_duration_ms,
            "traffic": _traffic(state.traffic, {}), "conns": [], "dht": None}  # fmt: skip
    size = len(dumps(head)) - 1 + len(str(state.instant_ts)) - len("null")
    size += len(dumps(dht)) if dht is not None else len("null")
    size += max(len(conns) + len(carried) - 1, 0)  # the commas between connections
    for conn in itertools.chain(conns, carried):
        streams = conn["streams"]
        size += len(dumps({**conn, "streams": []})) + max(len(streams) - 1, 0)
        for stream in streams:
            size += len(dumps(stream))
            if size > stop:
                return size
        if size > stop:
            return size
    return size


@dataclass(slots=True)
class _Carried:
    """A connection carried on after it vanished (see :class:`SnapshotConverter`)."""

    data: JSON  # its CONNECTION form as last carried (status CLOSED, gone)
    closed_at: int  # when it closed, ms, never after it was last seen
    last_seen: int  # number of the last converted snapshot that held it
    size: int  # at most how many characters its text takes, comma included


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

    And bounded by size: every string is capped (module doc), and a snapshot
    whose JSON text, carried connections included, would take more than
    ``max_snapshot_bytes`` characters raises :class:`SnapshotTooLarge` (the
    size is reckoned from the capped strings' escaped lengths and the widest
    numbers, before any text is built: an upper bound, within a few percent
    for honest data, measured: 24.4 MB of text, reckoned 25.7 MB for 10,000
    connections of 10 streams).
    """

    closed_ttl_ms: int = DEFAULT_CLOSED_TTL_MS
    closed_ttl_snapshots: int = DEFAULT_CLOSED_TTL_SNAPSHOTS
    max_connections: int = DEFAULT_LIMITS.max_connections
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
    #: The server's own connections in the previous snapshot, by id, with their
    #: text's size without streams (see :func:`_connection`).
    _previous: dict[str, tuple[JSON, int]] = field(default_factory=dict)
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
        """The snapshot's compact JSON form (a new dict; the caller owns it).

        Raises :class:`SnapshotTooLarge` when its text would take more than
        ``max_snapshot_bytes`` characters; the converter is then as it was
        before the call (the snapshot is as if it never came).
        """
        ts = state.instant_ts
        count = self._count + 1
        converted = [_connection(c) for c in state.subsystems.connections]
        conns = [data for data, _, _ in converted]
        size = _STATE_FIXED + sum(own + streams for _, own, streams in converted)
        present = {data["id"]: (data, own) for data, own, _ in converted}
        carried = dict(self._carried)  # changed on a copy: kept only if the snapshot is
        for conn_id in present.keys() & carried.keys():  # back again (an id is never reused)
            del carried[conn_id]
        seen_at = self._previous_ts
        for conn_id, (old, own) in self._previous.items():
            if conn_id in present:
                continue
            closed_at = old["close"] if 0 < old["close"] <= seen_at else seen_at
            data = dict(old)
            data.update(status="CLOSED", gone=True, close=closed_at, bwIn=0, bwOut=0, streams=[])
            carried.pop(conn_id, None)
            carried[conn_id] = _Carried(data, closed_at, count - 1, own)
        oldest_count = count - self.closed_ttl_snapshots
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
        size += sum(c.size for c in carried.values())
        extensions = {
            "node": ext.node_to_json(state),
            "protocols": ext.protocols_to_json(state),
            "pubsub": ext.pubsub_to_json(state.subsystems, ts, self._topic_rates),
            "resources": ext.resources_to_json(state.subsystems),
        }
        # Their entries in the snapshot's object: the text without braces, and a comma.
        size += json_size(extensions, self.max_snapshot_bytes) - 1
        dht = None
        if state.subsystems.HasField("dht"):
            dht, dht_size = _dht(state.subsystems.dht)
            size += dht_size
        if size > self.max_snapshot_bytes:  # the reckoning is an upper bound: count exactly
            carried_data = [c.data for c in carried.values()]
            size = _text_size(state, conns, carried_data, dht, self.max_snapshot_bytes)
            size += json_size(extensions, self.max_snapshot_bytes) - 1
        if size > self.max_snapshot_bytes:
            raise SnapshotTooLarge(
                f"a snapshot of {len(conns)} connections "
                f"({sum(len(c['streams']) for c in conns)} streams) and {len(carried)} "
                f"closed ones carried would take more than {self.max_snapshot_bytes:,} "
                "characters of JSON, the most one snapshot may take"
            )
        conns.extend(dict(c.data) for c in carried.values())
        self._carried = carried
        self._count = count
        self._previous = present
        self._previous_ts = ts
        self._topic_rates.commit()
        return {
            "ts": ts,
            "start": state.start_ts,
            "dur": state.snapshot_duration_ms,
            "traffic": _traffic(state.traffic, {}),
            "conns": conns,
            "dht": dht,
            **extensions,
        }
