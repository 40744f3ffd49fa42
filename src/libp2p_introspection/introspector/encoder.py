"""Incremental snapshot encoding: each connection's and stream's serialized bytes are kept
from one snapshot to the next and only what moved is encoded again.

The :class:`~libp2p_introspection.introspector.host.HostIntrospector`'s server path
(``encoded_state()``) assembles the ``State`` from these bytes (:func:`assemble_tagged`).
They are, byte for byte, what :mod:`~libp2p_introspection.introspector.render` builds
from scratch (the tests check it after arbitrary activity): a message is the
concatenation of its fields in number order, so a ``Connection`` is kept as the list of
its fields' encodings (one entry per stream), and an entry that changes (a gauge, the
latency, one stream) is encoded again on its own.

What is encoded again (everything else reuses its bytes):

* a stream the registry marked *moved* (:attr:`ConnectionRegistry.moved`): its counting
  wrappers counted payload, or it ended, negotiated its protocol or was tagged; and a
  stream whose last ``inst_bw`` was not 0 (an idle window must report 0), whose bytes
  wait for a non-empty window (``window_ms`` 0), or that is still negotiating (its
  protocol is read lazily);
* a connection whose stream list changed (:attr:`ConnectionRegistry.touched`: a stream
  registered or dropped), whose counters moved (any counted call adds a packet), whose
  last ``inst_bw`` was not 0, or whose status, latency, tags or peer ``PeerInfo``
  changed; and the connection of every stream encoded again (its list entry changed).

It also keeps, from the values it reported, the sums the snapshot needs beside the
connections: the node-wide totals (:meth:`IncrementalEncoder.connection_totals`) and
each protocol's live sums (``ProtocolTracker.live_sums``),
so that nothing walks every stream of the node once per snapshot.

Where the C accelerator (``_snapcode.c``, built by ``setup.py`` when a compiler is
found: :data:`ACCELERATED`) is present, the two loops (:meth:`IncrementalEncoder.
encode_streams`, :meth:`IncrementalEncoder.encode`) run in it for the common case: a
stream whose counters moved, a connection whose own fields did not change. It works on
the same objects (the counters, and the counts, slot and hotness kept here, are C
structs then: ``_snapcode.Counter``/``Code``, whose fields Python reads and writes as
ints) and hands everything else (a stream that ended or was tagged, a
connection whose status changed, any odd value) back to the Python code, which is the
reference: the bytes are the same either way (the tests compare both paths).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from libp2p_introspection.introspector import _accel, conninfo
from libp2p_introspection.introspector.protocols import ProtocolTracker
from libp2p_introspection.introspector.records import ENDED, ConnectionRecord, StreamRecord
from libp2p_introspection.introspector.traffic import TrafficCounter
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_varint

__all__ = ["ACCELERATED", "IncrementalEncoder", "assemble_tagged", "state_pieces"]

_ACTIVE = pb.ACTIVE


def _tagged_prefixes(tag: bytes, count: int) -> list[bytes]:
    return [tag + encode_varint(n) for n in range(count)]


#: ``tag + varint(length)`` for the lengths most messages have (a stream is ~100 bytes).
_SMALL = 1 << 14
#: ``StreamList.streams`` (field 2), ``Subsystems.connections`` (field 1),
#: ``Connection.streams`` (field 11).
_STREAM_PREFIX = _tagged_prefixes(b"\x12", _SMALL)
_CONNECTION_PREFIX = _tagged_prefixes(b"\x0a", _SMALL)
_STREAMS_PREFIX = _tagged_prefixes(b"\x5a", _SMALL)
#: ``StreamList.stream_ids`` (field 1).
_STREAM_ID = b"\x0a"
#: ``Connection.latency_ns`` (field 10, varint).
_LATENCY = b"\x50"

# Where each field sits in a connection's list of encodings (``_ConnectionCode.parts``).
_TAG, _HEAD, _TRAFFIC, _ATTRIBS, _LATENCY_AT, _STREAMS_AT, _IDS = range(7)
_FIRST_STREAM = 7  # then one entry per stream, then the tags and the peer


def _prefix(table: list[bytes], tag: bytes, n: int) -> bytes:
    return table[n] if n < _SMALL else tag + encode_varint(n)


def state_pieces(head: bytes, connections: list[bytes], subsystems_rest: bytes) -> list[bytes]:
    """A serialized ``State`` from :meth:`IncrementalEncoder.encode`'s fields, as the
    pieces whose concatenation it is (see :func:`assemble_tagged`): a frame can then
    be made of them in one copy."""
    size = sum(map(len, connections)) + len(subsystems_rest)
    return [b"\x0a", encode_varint(size), *connections, subsystems_rest, head]


def assemble_tagged(head: bytes, connections: list[bytes], subsystems_rest: bytes) -> bytes:
    """A serialized ``State`` from :meth:`IncrementalEncoder.encode`'s fields: as
    :func:`~libp2p_introspection.protocol.framing.assemble_state`, whose connections
    come without their tag and length, and in one copy of the bytes."""
    return b"".join(state_pieces(head, connections, subsystems_rest))


class _CodeFields:
    """The counts a stream or connection was encoded with (in/out bytes/packets), a
    stream's index in its connection's parts (``slot``, -1: none) and whether to look
    at it again next snapshot (``hot``): in Python, the fallback of ``_snapcode.Code``
    (the same fields, inline in C, where the accelerator is built)."""

    __slots__ = ("hot", "in_b", "in_p", "out_b", "out_p", "slot")


_CodeBase: Any = _accel.snapcode.Code if _accel.snapcode is not None else _CodeFields


class _StreamCode(_CodeBase):  # type: ignore[misc]
    """A stream's bytes (``tagged``: its ``StreamList.streams`` field) and the values they hold."""

    __slots__ = (
        "close_ts",
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
        #: The tags it was encoded with, as a tuple (no tags: the one empty tuple).
        self.tags: tuple[str, ...] = ()
        self.prefix = self.suffix = self.traffic = self.tagged = b""
        self.in_b = self.in_p = self.out_b = self.out_p = 0
        self.hot = True
        self.slot = -1


class _ConnectionCode(_CodeBase):  # type: ignore[misc]
    """A connection's field encodings (``parts``, joined into ``tagged``: its
    ``Subsystems.connections`` field), the values they hold, and its share of the
    node-wide totals (the counters it was last reported with)."""

    __slots__ = (
        "close_ts",
        "latency",
        "parts",
        "peer",
        "status",
        "tagged",
        "tags",
    )

    def __init__(self) -> None:
        self.status = self.close_ts = self.latency = -1
        self.in_b = self.in_p = self.out_b = self.out_p = 0
        self.hot = True
        self.slot = -1
        self.tags: tuple[str, ...] = ()
        self.peer = b""
        self.parts: list[bytes] = []
        self.tagged = b""


def _load_accelerator() -> Any:
    _snapcode = _accel.snapcode
    if _snapcode is None:  # built without a C compiler (or turned off): the Python loops
        return None
    try:
        _snapcode.configure(
            StreamRecord, ConnectionRecord, TrafficCounter, _StreamCode, _ConnectionCode, _ACTIVE
        )
    except (TypeError, AttributeError):  # a layout it does not know: the Python loops
        return None
    return _snapcode


#: The C loops (``None``: the Python ones); the tests set it to ``None`` to check both.
_snapcode: Any = _load_accelerator()
#: Whether the C accelerator of the encoder's loops was built and loaded.
ACCELERATED = _snapcode is not None
#: Windows the C loops take (ms); a longer one (never, in practice) runs in Python.
_MAX_WINDOW = 1 << 62
#: Connections :meth:`IncrementalEncoder.encode_for` encodes at a time in Python.
SLICE_CONNECTIONS = 32


class IncrementalEncoder:
    """Keeps every retained connection's bytes between snapshots (see the module docstring).

    :param touched: the registry's connections whose stream list changed since the last
        snapshot, and ``moved``: its streams that changed (both emptied by :meth:`begin`).
    :param reported: where each ended stream goes once a snapshot reported it (the
        registry's ``purge`` drops them).
    :param protocols: the per-protocol tracker whose live sums follow the reported values.
    :param peerstore: the host's peerstore (latency fallback), may be ``None``.
    """

    def __init__(
        self,
        touched: set[ConnectionRecord],
        moved: set[StreamRecord],
        reported: list[StreamRecord],
        protocols: ProtocolTracker,
        peerstore: Any = None,
    ) -> None:
        self._touched = touched
        self._moved = moved
        self._reported = reported
        self._protocols = protocols
        self._peerstore = peerstore
        #: Streams to look at again next snapshot whatever happens (see the module docstring).
        self._hot: set[StreamRecord] = set()
        #: Connections the stream pass changed, and those to rebuild whole, this snapshot.
        self._dirty: set[ConnectionRecord] = set()
        self._rebuild: set[ConnectionRecord] = set()
        #: The node-wide sums of the reported connection counters (in/out bytes/packets).
        self._totals = [0, 0, 0, 0]
        # Reused messages: filling six fields and serializing a small message in C is
        # several times cheaper than building one per stream.
        # The gauges are looked up once: reaching a sub-message costs more than setting it.
        self._stream_traffic = pb.Stream()
        self._stream_in = self._stream_traffic.traffic.traffic_in
        self._stream_out = self._stream_traffic.traffic.traffic_out
        self._conn_traffic = pb.Connection()
        self._conn_in = self._conn_traffic.traffic.traffic_in
        self._conn_out = self._conn_traffic.traffic.traffic_out
        for gauge in (self._stream_in, self._stream_out, self._conn_in, self._conn_out):
            gauge.SetInParent()

    # ------------------------------------------------------------- bookkeeping

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

    def release_stream(self, stream: StreamRecord) -> None:
        """A stream left the registry: take its counters out of its protocol's live sums."""
        self._detach(stream)
        self._hot.discard(stream)
        if stream.code is not None:
            stream.code.slot = -1  # no longer in its connection's list

    @staticmethod
    def _detach(stream: StreamRecord) -> None:
        sums = stream.live
        sc = stream.code
        if sums is None or sc is None:
            return
        sums[0] -= sc.in_b
        sums[1] -= sc.in_p
        sums[2] -= sc.out_b
        sums[3] -= sc.out_p
        sums[4] -= 1
        stream.live = None

    # ----------------------------------------------------------------- passes

    def begin(self) -> list[StreamRecord]:
        """Start a snapshot: take (and empty) the registry's touched connections and
        moved streams. Returns the streams :meth:`encode_streams` must look at."""
        self._rebuild = set(self._touched)
        self._touched.clear()
        self._dirty = set()
        streams, self._hot = self._hot, set()
        streams |= self._moved  # in place: on a busy node both hold nearly every stream
        self._moved.clear()
        return list(streams)

    def abandon(self, records: Iterable[ConnectionRecord], streams: Iterable[StreamRecord]) -> None:
        """A build failed (raised) after :meth:`begin`: ``records`` (every retained
        connection of that build) are rebuilt whole next snapshot and ``streams`` (what
        :meth:`begin` returned) looked at again, so the failure leaves nothing stale
        behind (the failed snapshot is dropped; the passes may have kept some of its
        encodings)."""
        self._touched.update(records)
        self._touched.update(self._rebuild)
        self._moved.update(streams)

    def encode_streams_in_c(
        self, streams: list[StreamRecord], window_ms: int
    ) -> list[StreamRecord]:
        """The C loop of :meth:`encode_streams` alone (a few hundred ns a stream, no
        Python code): the streams it left to the Python loop
        (``encode_streams(..., in_c=False)``); all of them without the C loop."""
        accelerator = _snapcode
        if accelerator is None or not 0 <= window_ms < _MAX_WINDOW:
            return list(streams)
        left: list[StreamRecord] = accelerator.stream_pass(
            streams, window_ms, self._rebuild, self._dirty, self._hot
        )
        return left

    def encode_streams(
        self, streams: Iterable[StreamRecord], window_ms: int, *, in_c: bool = True
    ) -> None:
        """Encode again the given streams (a slice of what :meth:`begin` returned) of
        connections that are not rebuilt whole; their connections are then re-joined
        by :meth:`encode`. ``in_c=False``: in Python only (what
        :meth:`encode_streams_in_c` left)."""
        rebuild, dirty = self._rebuild, self._dirty
        accelerator = _snapcode
        if in_c and accelerator is not None and 0 <= window_ms < _MAX_WINDOW:
            # The C loop does the common case; it returns the streams it left to us.
            streams = accelerator.stream_pass(streams, window_ms, rebuild, dirty, self._hot)
        for stream in streams:
            record = stream.conn
            code = record.code
            sc = stream.code
            if code is None or sc is None or sc.slot < 0 or record in rebuild:
                continue  # new, dropped, or its connection is rebuilt whole anyway
            if self._stream(stream, sc, record.id, window_ms):
                code.parts[sc.slot] = sc.tagged
                dirty.add(record)

    def encode(
        self,
        records: Iterable[ConnectionRecord],
        window_ms: int,
        peer_field: Callable[[str], bytes],
        on_error: Callable[[], None],
        peer_fields: dict[str, bytes] | None = None,
    ) -> list[bytes]:
        """Each record's ``Subsystems.connections`` field (tag, length, ``Connection``),
        in order, encoding again only what moved (after :meth:`encode_streams`).

        :param window_ms: the snapshot window, ms (``inst_bw``).
        :param peer_field: a peer id's ``Connection.peer`` field bytes (``b""`` if none).
        :param on_error: called (inside ``except``) for a record that cannot be
            described; it is skipped.
        :param peer_fields: optionally, what ``peer_field`` answers, as a dict of peer
            id -> field bytes (a missing peer: ``b""``): the C loop then looks each
            connection's peer up without calling ``peer_field``
            (``IdentifyTracker.peer_fields``).

        A snapshot may be encoded in several calls (slices of the records, in order);
        the registry may change between them.
        """
        accelerator = _snapcode
        if accelerator is not None and 0 <= window_ms < _MAX_WINDOW:

            def slow(record: ConnectionRecord, peer: bytes | None) -> bytes | None:
                return self._encode_one(record, window_ms, peer_field, on_error, peer)

            lookup = peer_fields if type(peer_fields) is dict else peer_field
            connections: list[bytes] = accelerator.connection_pass(
                records, window_ms, self._rebuild, self._dirty, self._totals,
                lookup, self._latency, slow,
            )  # fmt: skip
            return connections
        out: list[bytes] = []
        append = out.append
        for record in records:
            tagged = self._encode_one(record, window_ms, peer_field, on_error)
            if tagged is not None:
                append(tagged)
        return out

    def encode_for(
        self,
        records: list[ConnectionRecord],
        start: int,
        budget_ns: int,
        window_ms: int,
        peer_field: Callable[[str], bytes],
        on_error: Callable[[], None],
        peer_fields: dict[str, bytes] | None = None,
    ) -> tuple[list[bytes], int]:
        """:meth:`encode` of ``records[start:]`` for about ``budget_ns`` ns (CPU work
        between two looks at the clock, at least one record): the fields, and the index
        of the first record not done yet (``len(records)``: all done). Without the C
        loop, :data:`SLICE_CONNECTIONS` records at a time."""
        accelerator = _snapcode
        if accelerator is not None and 0 <= window_ms < _MAX_WINDOW and budget_ns > 0:

            def slow(record: ConnectionRecord, peer: bytes | None) -> bytes | None:
                return self._encode_one(record, window_ms, peer_field, on_error, peer)

            lookup = peer_fields if type(peer_fields) is dict else peer_field
            connections, done = accelerator.connection_pass(
                records, window_ms, self._rebuild, self._dirty, self._totals,
                lookup, self._latency, slow, start, budget_ns,
            )  # fmt: skip
            return connections, max(done, start + 1)
        end = start + SLICE_CONNECTIONS
        return self.encode(records[start:end], window_ms, peer_field, on_error, peer_fields), end

    def _latency(self, conn: Any) -> int:
        return conninfo.latency_ns(conn, self._peerstore)

    def _encode_one(
        self,
        record: ConnectionRecord,
        window_ms: int,
        peer_field: Callable[[str], bytes],
        on_error: Callable[[], None],
        peer: bytes | None = None,
    ) -> bytes | None:
        """One record of :meth:`encode` (``None``: it could not be described). ``peer``:
        its peer field and latency already taken (by the C loop), else ``None``."""
        try:
            code = record.code
            if peer is None:
                if record.conn is not None:
                    record.latency_ns = conninfo.latency_ns(record.conn, self._peerstore)
                peer = peer_field(record.peer_id)
            if code is None or record in self._rebuild:
                return self._whole(record, window_ms, peer)
            traffic = record.traffic
            if (
                record in self._dirty
                or code.hot
                or traffic.in_packets + traffic.out_packets != code.in_p + code.out_p
                or record.status != code.status
                or record.close_ts != code.close_ts
                or record.latency_ns != code.latency
                or peer is not code.peer
                or tuple(record.tags) != code.tags
            ):
                return self._join(record, code, window_ms, peer)
            return code.tagged
        except Exception:
            on_error()
            return None

    # ---------------------------------------------------------------- encoding

    def _stream(self, stream: StreamRecord, sc: _StreamCode, conn_id: bytes, window: int) -> bool:
        """Bring ``sc`` up to date with ``stream``; whether its bytes changed."""
        protocol = stream.protocol or stream.current_protocol()
        status = stream.status
        traffic = stream.traffic
        in_b, in_p, out_b, out_p = (
            traffic.in_bytes,
            traffic.in_packets,
            traffic.out_bytes,
            traffic.out_packets,
        )
        fields = (
            protocol != sc.protocol
            or status != sc.status
            or stream.close_ts != sc.close_ts
            or tuple(stream.tags) != sc.tags
        )
        if fields:
            self._detach(stream)
            sc.prefix = pb.Stream(
                id=stream.id, protocol=protocol, role=stream.role
            ).SerializeToString()
            sc.suffix = pb.Stream(
                conn={"conn_id": conn_id},
                timeline={"open_ts": stream.open_ts, "close_ts": stream.close_ts},
                status=status,
                user_provided_tags=stream.tags,
            ).SerializeToString()
            sc.protocol, sc.status, sc.close_ts = protocol, status, stream.close_ts
            sc.tags = tuple(stream.tags)
        moved = sc.hot or in_p + out_p != sc.in_p + sc.out_p or not sc.traffic
        if moved:
            # Exactly TrafficCounter.to_dict: floor(bytes * 1000 / window), baseline kept
            # for an empty window.
            bw_in = bw_out = 0
            prev_in, prev_out = traffic.prev_in_bytes, traffic.prev_out_bytes
            if window > 0:
                if in_b > prev_in:
                    bw_in = (in_b - prev_in) * 1000 // window
                if out_b > prev_out:
                    bw_out = (out_b - prev_out) * 1000 // window
                traffic.prev_in_bytes = prev_in = in_b
                traffic.prev_out_bytes = prev_out = out_b
            gauge = self._stream_in
            gauge.cum_bytes, gauge.cum_packets, gauge.inst_bw = in_b, in_p, bw_in
            gauge = self._stream_out
            gauge.cum_bytes, gauge.cum_packets, gauge.inst_bw = out_b, out_p, bw_out
            sc.traffic = self._stream_traffic.SerializeToString()
            sc.hot = bool(bw_in or bw_out or in_b != prev_in or out_b != prev_out)
            sums = stream.live
            if sums is not None:
                sums[0] += in_b - sc.in_b
                sums[1] += in_p - sc.in_p
                sums[2] += out_b - sc.out_b
                sums[3] += out_p - sc.out_p
            sc.in_b, sc.in_p, sc.out_b, sc.out_p = in_b, in_p, out_b, out_p
        if fields and not stream.summed:
            if status in ENDED:
                self._protocols.fold(stream)
            elif protocol:
                sums = stream.live = self._protocols.live_sums(protocol)
                sums[0] += in_b
                sums[1] += in_p
                sums[2] += out_b
                sums[3] += out_p
                sums[4] += 1
        if status != _ACTIVE:
            if not stream.reported_closed and status in ENDED:
                stream.reported_closed = True
                self._reported.append(stream)
        elif sc.hot or not protocol:
            self._hot.add(stream)  # look again next time
        if not (fields or moved):
            return False
        body_len = len(sc.prefix) + len(sc.traffic) + len(sc.suffix)
        sc.tagged = b"".join(
            (_prefix(_STREAM_PREFIX, b"\x12", body_len), sc.prefix, sc.traffic, sc.suffix)
        )
        return True

    def _whole(self, record: ConnectionRecord, window_ms: int, peer: bytes) -> bytes:
        """Encode a new connection, or one whose stream list changed, with every stream."""
        code = record.code
        if code is None:
            code = record.code = _ConnectionCode()
        ids: list[bytes] = []
        parts = [b"", b"", b"", b"", b"", b"", b""]
        slot = _FIRST_STREAM
        for stream in record.streams.values():
            sc = stream.code
            if sc is None:
                sc = stream.code = _StreamCode()
            self._stream(stream, sc, record.id, window_ms)
            sc.slot = slot
            slot += 1
            parts.append(sc.tagged)
            ids.append(_STREAM_ID + encode_varint(len(stream.id)) + stream.id)
        parts[_IDS] = b"".join(ids)
        parts[_ATTRIBS] = pb.Connection(
            attribs={"multiplexer": record.muxer, "encryption": record.security}
        ).SerializeToString()
        parts.append(b"")  # tags
        parts.append(b"")  # peer
        code.parts = parts
        code.status = code.close_ts = code.latency = -1
        code.tags = ("",)  # never equal: encoded below
        code.hot = True
        return self._join(record, code, window_ms, peer)

    def _join(
        self, record: ConnectionRecord, code: _ConnectionCode, window_ms: int, peer: bytes
    ) -> bytes:
        """Bring the connection's own fields up to date and join its parts."""
        parts = code.parts
        if record.status != code.status or record.close_ts != code.close_ts:
            parts[_HEAD] = pb.Connection(
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
        traffic = record.traffic
        in_b, in_p, out_b, out_p = (
            traffic.in_bytes,
            traffic.in_packets,
            traffic.out_bytes,
            traffic.out_packets,
        )
        if code.hot or in_p + out_p != code.in_p + code.out_p or not parts[_TRAFFIC]:
            # Exactly TrafficCounter.to_pb (field 8).
            bw_in = bw_out = 0
            prev_in, prev_out = traffic.prev_in_bytes, traffic.prev_out_bytes
            if window_ms > 0:
                if in_b > prev_in:
                    bw_in = (in_b - prev_in) * 1000 // window_ms
                if out_b > prev_out:
                    bw_out = (out_b - prev_out) * 1000 // window_ms
                traffic.prev_in_bytes = prev_in = in_b
                traffic.prev_out_bytes = prev_out = out_b
            gauge = self._conn_in
            gauge.cum_bytes, gauge.cum_packets, gauge.inst_bw = in_b, in_p, bw_in
            gauge = self._conn_out
            gauge.cum_bytes, gauge.cum_packets, gauge.inst_bw = out_b, out_p, bw_out
            parts[_TRAFFIC] = self._conn_traffic.SerializeToString()
            code.hot = bool(bw_in or bw_out or in_b != prev_in or out_b != prev_out)
            totals = self._totals
            totals[0] += in_b - code.in_b
            totals[1] += in_p - code.in_p
            totals[2] += out_b - code.out_b
            totals[3] += out_p - code.out_p
            code.in_b, code.in_p, code.out_b, code.out_p = in_b, in_p, out_b, out_p
        if record.latency_ns != code.latency:
            latency = code.latency = record.latency_ns
            parts[_LATENCY_AT] = _LATENCY + encode_varint(latency) if latency else b""
        if tuple(record.tags) != code.tags:
            code.tags = tuple(record.tags)
            parts[-2] = pb.Connection(user_provided_tags=record.tags).SerializeToString()
        code.peer = parts[-1] = peer
        streams_len = sum(map(len, parts[_IDS:-2]))  # the stream ids, then the streams
        header = parts[_STREAMS_AT] = _prefix(_STREAMS_PREFIX, b"\x5a", streams_len)
        body_len = (
            len(parts[_HEAD])
            + len(parts[_TRAFFIC])
            + len(parts[_ATTRIBS])
            + len(parts[_LATENCY_AT])
            + len(header)
            + streams_len
            + len(parts[-2])
            + len(peer)
        )
        parts[_TAG] = _prefix(_CONNECTION_PREFIX, b"\x0a", body_len)
        code.tagged = tagged = b"".join(parts)
        return tagged
