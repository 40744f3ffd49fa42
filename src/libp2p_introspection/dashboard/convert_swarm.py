"""The upstream subsystems in the dashboard's JSON: the swarm (connections with
their streams and traffic) and the Kademlia DHT.

Connections are converted incrementally (:class:`ConnectionCache`): each
connection's JSON form and its text (what :func:`~.caps.dumps` makes of it,
built here piece by piece) are kept from one snapshot to the next, and only
what changed is converted again, so that a snapshot of 5,000 connections of 10
streams, most of them idle, costs what its busy streams cost.

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

from collections.abc import Iterable
from hashlib import sha256
from json.encoder import encode_basestring_ascii as _enc  # type: ignore[attr-defined]
from typing import Any

from libp2p_introspection.dashboard import convert_ext as ext
from libp2p_introspection.dashboard.caps import MAX_PEER_ID, MAX_TEXT, capped, dumps
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.ids import transport_text

JSON = dict[str, Any]

# _enc: ASCII, as caps.dumps (its docstring says why).

#: Longest connection or stream id emitted, bytes (before hex).
MAX_ID_BYTES = 64

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


def _stream_piece(stream: pb.Stream) -> tuple[JSON, str]:
    """The stream's JSON form and its text (``dumps`` of it, built directly)."""
    raw_id, proto, role_number, status_number = (
        stream.id,
        stream.protocol,
        stream.role,
        stream.status,
    )
    stream_id = raw_id.hex() if len(raw_id) <= MAX_ID_BYTES else capped_id(raw_id)
    if len(proto) > MAX_TEXT:
        proto = capped(proto, MAX_TEXT)
    role = _ROLE.get(role_number) or str(role_number)  # (the names are never empty)
    status = _STATUS.get(status_number) or str(status_number)
    timeline = stream.timeline
    opened, closed, lat = timeline.open_ts, timeline.close_ts, stream.latency_ns
    traffic = stream.traffic
    t_in, t_out = traffic.traffic_in, traffic.traffic_out
    got, sent = t_in.cum_bytes, t_out.cum_bytes
    pkts_in, pkts_out = t_in.cum_packets, t_out.cum_packets
    bw_in, bw_out = t_in.inst_bw, t_out.inst_bw
    data = {"id": stream_id, "proto": proto, "role": role, "status": status, "open": opened,
            "close": closed, "lat": lat, "in": got, "out": sent, "inPkts": pkts_in,
            "outPkts": pkts_out, "bwIn": bw_in, "bwOut": bw_out}  # fmt: skip
    text = (
        f'{{"id":{_enc(stream_id)},"proto":{_enc(proto)},"role":{_enc(role)},'
        f'"status":{_enc(status)},"open":{opened},"close":{closed},"lat":{lat},'
        f'"in":{got},"out":{sent},"inPkts":{pkts_in},"outPkts":{pkts_out},'
        f'"bwIn":{bw_in},"bwOut":{bw_out}}}'
    )
    return data, text


def connection_to_json(conn: pb.Connection) -> JSON:
    """One ``Connection`` with its streams (shape ``CONNECTION`` in the module doc),
    its strings capped."""
    return _convert_connection(conn, None).data


class _Static:
    """What a connection's JSON takes from the fields that do not move (everything
    but its status, close time, latency, traffic and streams), and the pieces of
    its text around the moving ones."""

    __slots__ = ("head", "key", "mid", "tail", "template")

    def __init__(self, conn: pb.Connection, key: tuple[Any, ...]) -> None:
        relayed = conn.WhichOneof("relayed_over")
        if relayed == "conn_id":
            relayed_over = capped_id(conn.conn_id)
        elif relayed == "conn":
            relayed_over = capped_id(conn.conn.id)
        else:
            relayed_over = ""
        conn_id = capped_id(conn.id)
        peer = capped(conn.peer_id, MAX_PEER_ID)
        role = _ROLE.get(conn.role, str(conn.role))
        src = capped(conn.endpoints.src_multiaddr, MAX_TEXT)
        dst = capped(conn.endpoints.dst_multiaddr, MAX_TEXT)
        transport = capped_transport(conn.transport_id)
        mux = capped(conn.attribs.multiplexer, MAX_TEXT)
        sec = capped(conn.attribs.encryption, MAX_TEXT)
        opened, upgraded = conn.timeline.open_ts, conn.timeline.upgraded_ts
        tags = [capped(tag, MAX_TEXT) for tag in conn.user_provided_tags]
        peer_info = ext.peer_info_to_json(conn)
        self.key = key
        #: The CONNECTION form, its moving fields' values still to be set (in this order).
        self.template: JSON = {
            "id": conn_id, "peer": peer, "status": "", "role": role, "src": src, "dst": dst,
            "transport": transport, "mux": mux, "sec": sec, "open": opened,
            "upgraded": upgraded, "close": 0, "lat": 0, "relayedOver": relayed_over,
            "tags": tags, "gone": False, "peerInfo": peer_info,
            "in": 0, "out": 0, "inPkts": 0, "outPkts": 0, "bwIn": 0, "bwOut": 0, "streams": [],
        }  # fmt: skip
        self.head = f'{{"id":{_enc(conn_id)},"peer":{_enc(peer)},"status":'
        self.mid = (
            f',"role":{_enc(role)},"src":{_enc(src)},"dst":{_enc(dst)},'
            f'"transport":{_enc(transport)},"mux":{_enc(mux)},"sec":{_enc(sec)},'
            f'"open":{opened},"upgraded":{upgraded},"close":'
        )
        self.tail = (
            f',"relayedOver":{_enc(relayed_over)},"tags":{dumps(tags)},"gone":false,'
            f'"peerInfo":{dumps(peer_info)},"in":'
        )


class ConvertedConnection:
    """One connection as converted: its JSON form and text, and what they were made from."""

    __slots__ = ("data", "digest", "moving", "static", "stream_at", "stream_keys", "text")

    def __init__(
        self,
        digest: bytes,
        static: _Static,
        moving: tuple[Any, ...],
        stream_keys: tuple[bytes, ...],
        stream_at: tuple[int, ...],
        data: JSON,
        text: str,
    ) -> None:
        #: The SHA-256 of the connection's serialized bytes (``SerializeToString``): equal
        #: digests under the same id, the same conversion (one comparison, no field read).
        #: A digest, not the bytes: a hostile connection's bytes (up to the message limit,
        #: uncapped) are not kept a second time between snapshots, for 32 bytes and about
        #: 1 ms per MB hashed (18 ms for a steady mock's 17,000 connections).
        self.digest = digest
        self.static = static
        #: Status, close_ts, latency_ns and the six traffic numbers.
        self.moving = moving
        #: Each stream's serialized bytes, in order, and where its text starts in
        #: ``text`` (then where the next would: its text ends one before, at the comma).
        #: Tuples of atoms, which the garbage collector stops tracking; the streams'
        #: JSON forms are ``data["streams"]``.
        self.stream_keys = stream_keys
        self.stream_at = stream_at
        #: The CONNECTION form (shared: never modified) and its text.
        self.data = data
        self.text = text


def _static_key(conn: pb.Connection) -> tuple[Any, ...]:
    """Everything :class:`_Static` reads from ``conn`` but its id (connections are
    matched by id): equal keys and ids, equal pieces."""
    relayed = conn.WhichOneof("relayed_over")
    relayed_id = conn.conn_id if relayed == "conn_id" else conn.conn.id if relayed else None
    endpoints, attribs, timeline = conn.endpoints, conn.attribs, conn.timeline
    return (
        conn.peer_id, conn.role, endpoints.src_multiaddr, endpoints.dst_multiaddr,
        conn.transport_id, attribs.multiplexer, attribs.encryption, timeline.open_ts,
        timeline.upgraded_ts, relayed_id, tuple(conn.user_provided_tags),
        conn.peer.SerializeToString() if conn.HasField("peer") else None,
    )  # fmt: skip


def _convert_connection(
    conn: pb.Connection, old: ConvertedConnection | None
) -> ConvertedConnection:
    """``conn`` converted, reusing what ``old`` (the same connection's conversion in
    the previous snapshot, if any) made from the same input.

    The result depends on ``conn`` alone: ``old`` only saves work. A part is reused
    when what it was made from is equal: the static pieces when :func:`_static_key`
    is, a stream when its serialized bytes are, the whole connection when its
    serialized bytes' SHA-256 is (or its static key, moving fields and streams are: bytes
    can differ for equal contents, e.g. unknown fields). ``old`` is never changed.
    """
    digest = sha256(conn.SerializeToString()).digest()
    if old is not None and old.digest == digest:  # most at a steady node: CLOSED, kept
        return old
    key = _static_key(conn)
    static = old.static if old is not None and old.static.key == key else _Static(conn, key)
    timeline, traffic = conn.timeline, conn.traffic
    t_in, t_out = traffic.traffic_in, traffic.traffic_out
    moving = (
        conn.status, timeline.close_ts, conn.latency_ns, t_in.cum_bytes, t_out.cum_bytes,
        t_in.cum_packets, t_out.cum_packets, t_in.inst_bw, t_out.inst_bw,
    )  # fmt: skip
    messages = conn.streams.streams
    stream_keys = tuple([s.SerializeToString() for s in messages])
    old_datas: list[JSON] = []
    old_text, old_at = "", ()
    at: dict[bytes, int] = {}
    if old is not None:
        if static is old.static and moving == old.moving and stream_keys == old.stream_keys:
            return ConvertedConnection(
                digest, static, moving, stream_keys, old.stream_at, old.data, old.text
            )
        old_datas, old_text, old_at = old.data["streams"], old.text, old.stream_at
        at = {k: n for n, k in enumerate(old.stream_keys)}
    datas: list[JSON] = []
    texts: list[str] = []
    for stream_key, message in zip(stream_keys, messages, strict=True):
        n = at.get(stream_key)
        if n is not None:
            datas.append(old_datas[n])
            texts.append(old_text[old_at[n] : old_at[n + 1] - 1])
            continue
        stream_data, stream_text = _stream_piece(message)
        datas.append(stream_data)
        texts.append(stream_text)
    status = _STATUS.get(moving[0]) or str(moving[0])
    data = static.template.copy()
    data.update(status=status, close=moving[1], lat=moving[2], streams=datas)
    (data["in"], data["out"], data["inPkts"], data["outPkts"],
     data["bwIn"], data["bwOut"]) = moving[3:]  # fmt: skip
    head = (
        f'{static.head}{_enc(status)}{static.mid}{moving[1]},"lat":{moving[2]}{static.tail}'
        f'{moving[3]},"out":{moving[4]},"inPkts":{moving[5]},"outPkts":{moving[6]},'
        f'"bwIn":{moving[7]},"bwOut":{moving[8]},"streams":['
    )
    stream_at = [len(head)]
    for stream_text in texts:
        stream_at.append(stream_at[-1] + len(stream_text) + 1)
    text = f"{head}{','.join(texts)}]}}"
    return ConvertedConnection(digest, static, moving, stream_keys, tuple(stream_at), data, text)


class ConnectionCache:
    """The connections of the last snapshot converted, by id (raw bytes), so that the
    next snapshot converts only what changed (see :func:`_convert_connection`).

    Holds one snapshot's connections: :meth:`convert` returns the new conversions
    and :meth:`keep` makes them the ones compared with next (a connection absent
    from them is forgotten). The JSON forms returned are shared with the next
    snapshots' while they do not change: callers must not modify them.
    """

    def __init__(self) -> None:
        self._by_id: dict[bytes, ConvertedConnection] = {}

    def __len__(self) -> int:
        """How many connections are kept."""
        return len(self._by_id)

    def clear(self) -> None:
        """Forget every connection (a new source)."""
        self._by_id = {}

    def convert(
        self, conns: Iterable[pb.Connection]
    ) -> tuple[list[ConvertedConnection], dict[bytes, ConvertedConnection]]:
        """Each of ``conns`` converted, in order, and the same by id (for :meth:`keep`)."""
        before = self._by_id
        converted: list[ConvertedConnection] = []
        by_id: dict[bytes, ConvertedConnection] = {}
        for conn in conns:
            conn_id = conn.id
            done = _convert_connection(conn, before.get(conn_id))
            converted.append(done)
            by_id[conn_id] = done
        return converted, by_id

    def keep(self, by_id: dict[bytes, ConvertedConnection]) -> None:
        """Compare the next snapshot with these (:meth:`convert`'s second result)."""
        self._by_id = by_id


def dht_to_json(dht: pb.DHT) -> JSON:
    """The DHT subsystem (shape ``DHT`` in the module doc), its strings capped."""
    protocol = capped(dht.protocol, MAX_TEXT)
    buckets = []
    for bucket in dht.buckets:
        peers = []
        for peer in bucket.peers:
            peer_id = capped(peer.peer_id, MAX_PEER_ID)
            peers.append(
                {
                    "peer": peer_id,
                    "status": _PEER_STATUS.get(peer.status, str(peer.status)),
                    "age": peer.age_in_bucket,
                }
            )
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
    return data
