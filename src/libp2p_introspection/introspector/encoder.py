"""Incremental snapshot encoding: each connection's and stream's serialized bytes are kept
from one snapshot to the next and only what moved is encoded again.

The :class:`~libp2p_introspection.introspector.host.HostIntrospector`'s server path
(``encoded_state()``) assembles the ``State`` from these bytes
(:func:`~libp2p_introspection.protocol.framing.assemble_state`). The bytes are, byte for
byte, what :mod:`~libp2p_introspection.introspector.render` builds from scratch (the
tests check it after arbitrary activity): a message is the concatenation of its fields
in number order, so a ``Connection`` is kept as its fields' encodings, and the fields
that change (a gauge, the latency, the stream list) are encoded again on their own.

What makes a connection be encoded again (everything else reuses its bytes):

* its counters moved, or its last ``inst_bw`` was not 0 (an idle window must report 0),
  or the last window was empty (``window_ms`` 0: the bytes count in the next one);
* its status, ``close_ts``, latency, tags or its peer's ``PeerInfo`` changed;
* the registry *touched* it (:attr:`ConnectionRegistry.touched`): one of its streams
  counted payload (the counting wrappers touch the stream's connection), opened,
  ended, negotiated its protocol, was tagged, or was dropped. Only then are its
  streams looked at, each compared with the values its bytes hold; a stream still
  negotiating, or whose last ``inst_bw`` was not 0, keeps its connection touched.

It also keeps, from the values it reported, the sums the snapshot needs beside the
connections: the node-wide totals (:meth:`IncrementalEncoder.connection_totals`) and
the per-protocol live sums (:class:`~libp2p_introspection.introspector.protocols.ProtocolTracker`),
so that nothing walks every stream of the node once per snapshot.

Costs: a connection nothing touched costs one comparison of its fields; a moved
stream costs one small ``Traffic`` serialization (a reused message, in C) and a
concatenation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from libp2p_introspection.introspector import conninfo
from libp2p_introspection.introspector.protocols import ProtocolTracker
from libp2p_introspection.introspector.records import ENDED, ConnectionRecord, StreamRecord
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_varint

__all__ = ["IncrementalEncoder", "assemble_tagged"]

_ACTIVE = pb.ACTIVE


def _tagged_prefixes(tag: bytes, count: int) -> list[bytes]:
    return [tag + encode_varint(n) for n in range(count)]


#: ``tag + varint(length)`` for the lengths most messages have (a stream is ~100 bytes).
_SMALL = 1 << 14
#: ``StreamList.streams`` (field 2), ``Subsystems.connections`` (field 1),
#: ``Connection.streams`` (11).
_STREAM_PREFIX = _tagged_prefixes(b"\x12", _SMALL)
_CONNECTION_PREFIX = _tagged_prefixes(b"\x0a", _SMALL)
_STREAMS_FIELD = b"\x5a"
#: ``StreamList.stream_ids`` (field 1).
_STREAM_ID = b"\x0a"
#: ``Connection.latency_ns`` (field 10, varint).
_LATENCY = b"\x50"


def _prefixed(table: list[bytes], tag: bytes, body: bytes) -> bytes:
    n = len(body)
    return (table[n] if n < _SMALL else tag + encode_varint(n)) + body


def assemble_tagged(head: bytes, connections: list[bytes], subsystems_rest: bytes) -> bytes:
    """A serialized ``State`` from :meth:`IncrementalEncoder.encode`'s fields: as
    :func:`~libp2p_introspection.protocol.framing.assemble_state`, whose connections
    come without their tag and length, and in one copy of the bytes."""
    size = sum(map(len, connections)) + len(subsystems_rest)
    return b"".join((b"\x0a", encode_varint(size), *connections, subsystems_rest, head))


class _StreamCode:
    """A stream's bytes and the values they hold."""

    __slots__ = (
        "close_ts",
        "hot",
        "in_b",
        "in_p",
        "out_b",
        "out_p",
        "prefix",
        "protocol",
        "status",
        "suffix",
        "tagged",
        "tags",
        "traffic",
    )

    def __init__(self) -> None:
        self.protocol: str | None = None
        self.status = -1
        self.close_ts = -1
        self.tags: list[str] = []
        self.prefix = self.suffix = self.traffic = self.tagged = b""
        self.in_b = self.in_p = self.out_b = self.out_p = -1
        self.hot = True


class _ConnectionCode:
    """A connection's field encodings, the values they hold, and its contribution to the
    node-wide totals (the counters it was last reported with)."""

    __slots__ = (
        "attribs",
        "close_ts",
        "head",
        "hot",
        "ids",
        "in_b",
        "in_p",
        "latency",
        "latency_field",
        "nstreams",
        "out_b",
        "out_p",
        "peer",
        "status",
        "streams_field",
        "streams_hot",
        "tagged",
        "tags",
        "tags_field",
        "traffic",
    )

    def __init__(self, record: ConnectionRecord) -> None:
        self.status = -1
        self.close_ts = -1
        self.head = b""
        self.attribs = pb.Connection(
            attribs={"multiplexer": record.muxer, "encryption": record.security}
        ).SerializeToString()
        self.in_b = self.in_p = self.out_b = self.out_p = 0
        self.traffic = b""
        self.hot = True
        self.latency = -1
        self.latency_field = b""
        self.tags: list[str] = []
        self.tags_field = b""
        self.peer = b""
        self.ids = b""
        self.nstreams = -1
        self.streams_field = b""
        self.streams_hot = True
        self.tagged = b""


class IncrementalEncoder:
    """Keeps every retained connection's bytes between snapshots (see the module docstring).

    :param touched: the registry's set of connections touched since the last snapshot
        (emptied by :meth:`encode`).
    :param reported: where each ended stream goes once a snapshot reported it (the
        registry's ``purge`` drops them).
    :param protocols: the per-protocol tracker whose live sums follow the reported values.
    :param peerstore: the host's peerstore (latency fallback), may be ``None``.
    """

    def __init__(
        self,
        touched: set[ConnectionRecord],
        reported: list[StreamRecord],
        protocols: ProtocolTracker,
        peerstore: Any = None,
    ) -> None:
        self._touched = touched
        self._reported = reported
        self._protocols = protocols
        self._peerstore = peerstore
        #: The node-wide sums of the reported connection counters (in/out bytes/packets).
        self._totals = [0, 0, 0, 0]
        # Reused messages: filling six fields and serializing a small message in C is
        # several times cheaper than building one per stream.
        self._stream_traffic = pb.Stream()
        self._stream_traffic.traffic.traffic_in.SetInParent()
        self._stream_traffic.traffic.traffic_out.SetInParent()
        self._conn_traffic = pb.Connection()
        self._conn_traffic.traffic.traffic_in.SetInParent()
        self._conn_traffic.traffic.traffic_out.SetInParent()

    def connection_totals(self) -> tuple[int, int, int, int]:
        """Sums over the retained connections of the counters last reported:
        (in bytes, in packets, out bytes, out packets)."""
        a, b, c, d = self._totals
        return a, b, c, d

    def forget(self, record: ConnectionRecord) -> None:
        """A connection left the registry (purged): drop its bytes and its share of the totals."""
        code = record.code
        if isinstance(code, _ConnectionCode):
            totals = self._totals
            totals[0] -= code.in_b
            totals[1] -= code.in_p
            totals[2] -= code.out_b
            totals[3] -= code.out_p
        record.code = None

    def begin(self) -> set[ConnectionRecord]:
        """Start a snapshot: take (and empty) the registry's touched set, which
        :meth:`encode` is given back for every slice of the snapshot."""
        batch = set(self._touched)
        self._touched.clear()
        return batch

    def encode(
        self,
        records: Iterable[ConnectionRecord],
        window_ms: int,
        peer_field: Callable[[str], bytes],
        batch: set[ConnectionRecord],
        on_error: Callable[[], None],
    ) -> list[bytes]:
        """Each record's ``Subsystems.connections`` field (tag, length, ``Connection``),
        in order, encoding again only what moved.

        :param window_ms: the snapshot window, ms (``inst_bw``).
        :param peer_field: a peer id's ``Connection.peer`` field bytes (``b""`` if none).
        :param batch: what :meth:`begin` returned for this snapshot.
        :param on_error: called (inside ``except``) for a record that cannot be
            described; it is skipped.

        A snapshot may be encoded in several calls (slices of the records, in order);
        the registry may change between them.
        """
        out: list[bytes] = []
        append = out.append
        peerstore = self._peerstore
        for record in records:
            try:
                code = record.code
                if code is None:
                    code = record.code = _ConnectionCode(record)
                traffic = record.traffic
                if record.conn is not None:
                    record.latency_ns = conninfo.latency_ns(record.conn, peerstore)
                peer = peer_field(record.peer_id)
                streams_moved = (
                    code.streams_hot or record in batch or len(record.streams) != code.nstreams
                )
                if (
                    streams_moved
                    or code.hot
                    or traffic.in_bytes != code.in_b
                    or traffic.out_bytes != code.out_b
                    or traffic.out_packets != code.out_p
                    or traffic.in_packets != code.in_p
                    or record.status != code.status
                    or record.close_ts != code.close_ts
                    or record.latency_ns != code.latency
                    or record.tags != code.tags
                    or peer is not code.peer
                ):
                    append(self._connection(record, code, window_ms, peer, streams_moved))
                else:
                    append(code.tagged)
            except Exception:
                on_error()
        return out

    # ------------------------------------------------------------------ encoding

    def _connection(
        self,
        record: ConnectionRecord,
        code: _ConnectionCode,
        window_ms: int,
        peer: bytes,
        streams_moved: bool,
    ) -> bytes:
        if record.status != code.status or record.close_ts != code.close_ts:
            code.head = pb.Connection(
                id=record.id,
                peer_id=record.peer_id,
                status=record.status,
                transport_id=record.transport,
                endpoints={"src_multiaddr": record.local_addr, "dst_multiaddr": record.remote_addr},
                timeline={
                    "open_ts": record.open_ts,
                    "upgraded_ts": record.upgraded_ts,
                    "close_ts": record.close_ts,
                },
                role=record.role,
            ).SerializeToString()
            code.status, code.close_ts = record.status, record.close_ts
        # Traffic (field 8), exactly as TrafficCounter.to_pb reports it.
        traffic = record.traffic
        in_b, in_p, out_b, out_p = (
            traffic.in_bytes,
            traffic.in_packets,
            traffic.out_bytes,
            traffic.out_packets,
        )
        if (
            code.hot
            or in_b != code.in_b
            or out_b != code.out_b
            or in_p != code.in_p
            or out_p != code.out_p
            or not code.traffic
        ):
            msg = self._conn_traffic.traffic
            bw_in = bw_out = 0
            if window_ms > 0:
                if in_b > traffic.prev_in_bytes:
                    bw_in = (in_b - traffic.prev_in_bytes) * 1000 // window_ms
                if out_b > traffic.prev_out_bytes:
                    bw_out = (out_b - traffic.prev_out_bytes) * 1000 // window_ms
                traffic.prev_in_bytes = in_b
                traffic.prev_out_bytes = out_b
            gauge = msg.traffic_in
            gauge.cum_bytes, gauge.cum_packets, gauge.inst_bw = in_b, in_p, bw_in
            gauge = msg.traffic_out
            gauge.cum_bytes, gauge.cum_packets, gauge.inst_bw = out_b, out_p, bw_out
            code.traffic = self._conn_traffic.SerializeToString()
            code.hot = bool(
                bw_in or bw_out or in_b != traffic.prev_in_bytes or out_b != traffic.prev_out_bytes
            )
            totals = self._totals
            totals[0] += in_b - code.in_b
            totals[1] += in_p - code.in_p
            totals[2] += out_b - code.out_b
            totals[3] += out_p - code.out_p
            code.in_b, code.in_p, code.out_b, code.out_p = in_b, in_p, out_b, out_p
        if record.latency_ns != code.latency:
            latency = code.latency = record.latency_ns
            code.latency_field = _LATENCY + encode_varint(latency) if latency else b""
        if record.tags != code.tags:
            code.tags = list(record.tags)
            code.tags_field = pb.Connection(user_provided_tags=record.tags).SerializeToString()
        code.peer = peer
        if streams_moved:
            self._streams(record, code, window_ms)
        body = b"".join(
            (
                code.head,
                code.traffic,
                code.attribs,
                code.latency_field,
                code.streams_field,
                code.tags_field,
                peer,
            )
        )
        code.tagged = tagged = _prefixed(_CONNECTION_PREFIX, b"\x0a", body)
        return tagged

    def _streams(self, record: ConnectionRecord, code: _ConnectionCode, window_ms: int) -> None:
        """Encode the connection's moved streams again and its ``streams`` field."""
        message = self._stream_traffic
        gauge_in = message.traffic.traffic_in
        gauge_out = message.traffic.traffic_out
        serialize = message.SerializeToString
        protocols = self._protocols
        reported = self._reported
        hot = False
        new_ids = len(record.streams) != code.nstreams
        parts = [b""]
        append = parts.append
        for stream in record.streams.values():
            sc = stream.code
            if sc is None:
                sc = stream.code = _StreamCode()
                new_ids = True
            protocol = stream.protocol or stream.current_protocol()
            status = stream.status
            changed = False
            if (
                protocol != sc.protocol
                or status != sc.status
                or stream.close_ts != sc.close_ts
                or stream.tags != sc.tags
            ):
                self._stream_fields(stream, sc, record.id, protocol)
                changed = True
            traffic = stream.traffic
            in_b, in_p, out_b, out_p = (
                traffic.in_bytes,
                traffic.in_packets,
                traffic.out_bytes,
                traffic.out_packets,
            )
            if (
                sc.hot
                or in_b != sc.in_b
                or out_b != sc.out_b
                or in_p != sc.in_p
                or out_p != sc.out_p
            ):
                bw_in = bw_out = 0
                prev_in, prev_out = traffic.prev_in_bytes, traffic.prev_out_bytes
                if window_ms > 0:
                    if in_b > prev_in:
                        bw_in = (in_b - prev_in) * 1000 // window_ms
                    if out_b > prev_out:
                        bw_out = (out_b - prev_out) * 1000 // window_ms
                    traffic.prev_in_bytes = prev_in = in_b
                    traffic.prev_out_bytes = prev_out = out_b
                gauge_in.cum_bytes, gauge_in.cum_packets, gauge_in.inst_bw = in_b, in_p, bw_in
                gauge_out.cum_bytes, gauge_out.cum_packets, gauge_out.inst_bw = out_b, out_p, bw_out
                sc.traffic = serialize()
                sc.hot = bool(bw_in or bw_out or in_b != prev_in or out_b != prev_out)
                sc.in_b, sc.in_p, sc.out_b, sc.out_p = in_b, in_p, out_b, out_p
                sc.tagged = b""
                changed = True
            if changed and not stream.summed:
                protocols.report(stream, protocol)
            if status in ENDED:
                if not stream.reported_closed:
                    stream.reported_closed = True
                    reported.append(stream)
            elif not protocol:
                hot = True  # still negotiating: look again next time (read lazily)
            if sc.hot:
                hot = True
            if not sc.tagged:
                sc.tagged = _prefixed(_STREAM_PREFIX, b"\x12", sc.prefix + sc.traffic + sc.suffix)
            append(sc.tagged)
        if new_ids:
            code.ids = b"".join(
                [_STREAM_ID + encode_varint(len(s.id)) + s.id for s in record.streams.values()]
            )
            code.nstreams = len(record.streams)
        parts[0] = code.ids
        body = b"".join(parts)
        code.streams_field = _STREAMS_FIELD + encode_varint(len(body)) + body
        code.streams_hot = hot

    @staticmethod
    def _stream_fields(
        stream: StreamRecord, sc: _StreamCode, conn_id: bytes, protocol: str
    ) -> None:
        sc.prefix = pb.Stream(id=stream.id, protocol=protocol, role=stream.role).SerializeToString()
        sc.suffix = pb.Stream(
            conn={"conn_id": conn_id},
            timeline={"open_ts": stream.open_ts, "close_ts": stream.close_ts},
            status=stream.status,
            user_provided_tags=stream.tags,
        ).SerializeToString()
        sc.protocol, sc.status, sc.close_ts = protocol, stream.status, stream.close_ts
        sc.tags = list(stream.tags)
        sc.tagged = b""
