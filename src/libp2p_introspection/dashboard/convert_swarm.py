"""The upstream subsystems in the dashboard's JSON: the swarm (connections with
their streams and traffic) and the Kademlia DHT, each with at most how many
characters its text takes (what :class:`~.convert.SnapshotConverter` reckons its
budget with, before any text is built).

Shapes (timestamps ms since the Unix epoch, absent ones ``0``; byte counts in
bytes, rates in bytes per second, latency in ns; ids are lowercase hex of the
schema's ``bytes`` ids)::

    TRAFFIC    = {"in": bytes, "out": bytes, "inPkts": n, "outPkts": n,
                  "bwIn": B/s, "bwOut": B/s}
    CONNECTION = {"id": hex, "peer": peer id, "status": "ACTIVE"|"CLOSED"|...,
                  "role": "INITIATOR"|"RESPONDER", "src": multiaddr,
                  "dst": multiaddr, "transport": text (or hex), "mux": str,
                  "sec": str, "open": ms, "upgraded": ms, "close": ms,
                  "lat": ns, "relayedOver": hex or "", "tags": [str],
                  "gone": bool (no longer in the server's snapshot; kept
                  as CLOSED until it ages out, see :mod:`.convert`),
                  "peerInfo": PEERINFO (:mod:`.convert_ext`) or null,
                  ...TRAFFIC fields, "streams": [STREAM, ...]}
    STREAM     = {"id": hex, "proto": protocol id, "role": ..., "status": ...,
                  "open": ms, "close": ms, "lat": ns, ...TRAFFIC fields}
    DHT        = {"protocol": str, "enabled": bool, "start": ms,
                  "params": {"k", "alpha", "disjointPaths", "beta"},
                  "buckets": [{"cpl": n, "peers": [{"peer": id,
                              "status": "ACTIVE"|"MISSING"|..., "age": ms}]}],
                  "qin": QUERIES, "qout": QUERIES}
    QUERIES    = {"success": n, "error": n, "timeout": n}

Strings are capped (:mod:`.caps`): peer ids at :data:`~.caps.MAX_PEER_ID`
characters, connection and stream ids at :data:`MAX_ID_BYTES` bytes (before
hex, :func:`capped_id`), multiaddrs, protocol ids, transport, muxer, security
and tags at :data:`~.caps.MAX_TEXT`.
"""

from __future__ import annotations

from typing import Any

from libp2p_introspection.dashboard import convert_ext as ext
from libp2p_introspection.dashboard.caps import (
    MAX_PEER_ID,
    MAX_TEXT,
    capped,
    dumps,
    json_len,
    json_size,
)
from libp2p_introspection.dashboard.convert_ext import traffic_fields as _traffic
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.ids import transport_text

JSON = dict[str, Any]

#: Longest connection or stream id emitted, bytes (before hex).
MAX_ID_BYTES = 64
#: A peer's identify data is bounded by its caps (:mod:`.convert_ext`): counted in full.
_NO_STOP = 2**63

_STATUS = {v: k for k, v in pb.Status.items()}
_ROLE = {v: k for k, v in pb.Role.items()}
_PEER_STATUS = {v: k for k, v in pb.DHT.PeerInDHT.Status.items()}


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
    return stream_sized(stream)[0]


def stream_sized(stream: pb.Stream) -> tuple[JSON, int]:
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
    data, _, _ = connection_sized(conn)
    return data


def connection_sized(conn: pb.Connection) -> tuple[JSON, int, int]:
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
    streams = [stream_sized(s) for s in conn.streams.streams]
    data["streams"] = [stream for stream, _ in streams]
    size = (
        _CONNECTION_FIXED
        + len(conn_id)
        + len(relayed_over)
        + sum(json_len(text) for text in texts)
        + sum(json_len(tag) + 1 for tag in tags)
        + (json_size(peer_info, _NO_STOP) if peer_info is not None else 0)
    )
    return data, size, sum(stream_size for _, stream_size in streams)


def dht_to_json(dht: pb.DHT) -> JSON:
    """The DHT subsystem (shape ``DHT`` in the module doc), its strings capped."""
    return dht_sized(dht)[0]


def dht_sized(dht: pb.DHT) -> tuple[JSON, int]:
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


def widest(message: Any) -> Any:
    """``message`` with every singular number, enum and bool set to the value whose
    JSON text is longest (the strings stay empty); for the fixed costs below."""
    for f in message.DESCRIPTOR.fields:
        if f.is_repeated or f.containing_oneof is not None:
            continue
        if f.type == f.TYPE_MESSAGE:
            widest(getattr(message, f.name))
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
_STREAM_FIXED = len(dumps(stream_sized(widest(pb.Stream()))[0])) - 2 + 1
_CONNECTION_FIXED = len(dumps(connection_sized(widest(pb.Connection()))[0])) - 2 * 6 + 1
_PEER_FIXED = len(dumps(dht_sized(widest(pb.DHT(buckets=[pb.DHT.Bucket(peers=[
    widest(pb.DHT.PeerInDHT())])])))[0]["buckets"][0]["peers"][0])) - 2 + 1  # fmt: skip
_BUCKET_FIXED = len(dumps({"cpl": 2**32 - 1, "peers": []})) + 1
_DHT_FIXED = len(dumps(dht_sized(widest(pb.DHT()))[0])) - 2
