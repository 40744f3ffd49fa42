"""Registry of connections and streams with stable ids, CLOSED/ERROR retention and traffic.

Lifecycle sources (py-libp2p ``Swarm`` notifee callbacks, forwarded by the
introspector): ``connected``/``disconnected`` for connections,
``opened_stream``/``closed_stream`` for streams; and, for what py-libp2p does
not notify (a stream reset by the remote, a stream whose both sides closed
without ``NetStream.close``), the muxer hooks and state of
:mod:`libp2p_introspection.introspector.endings`. Each snapshot also
*reconciles* with the swarm (``Swarm.get_connections()``, ``SwarmConn.streams``,
``SwarmConn.is_closed``) and with each stream's muxer state, so nothing is
missed when a callback or hook has not run yet or never runs.

How it ended (``status`` and the events' ``reason``):

* a stream is ERROR when it was reset, by the remote ("reset by remote") or
  locally ("reset locally"), when its connection ended with it open
  ("connection closed" / "connection error"), or when py-libp2p put it in
  its ERROR state ("stream error"); else CLOSED ("closed"): both sides
  closed, or py-libp2p closed it (``NetStream.close``, the handler returned);
* a connection is ERROR when its transport, security layer or mplex framing
  failed while it was up (the reason is the error, e.g.
  ``"ConnectionResetError: [Errno 104] Connection reset by peer"``); else
  CLOSED ("closed locally" / "closed by remote").

Ids: one counter per introspector (registry), encoded as 8 big-endian bytes,
shared by connections and streams, so every id is unique, stable for the
object's life and never reused.

Retention:

* a closed connection stays in snapshots as CLOSED or ERROR with
  ``close_ts`` for ``lifetime_ms`` after it closed, then disappears;
* a closed stream appears in exactly one more snapshot (status CLOSED or
  ERROR, with ``close_ts``) and is then dropped; its connection keeps going.

Traffic: per connection, the raw transport connection's bytes (see
:mod:`libp2p_introspection.introspector.traffic`), counted from the security
handshake for connections established after attach, from attach time for
connections adopted at attach. Per stream, payload bytes after protocol
negotiation, counted from when the stream was first seen.
"""

from __future__ import annotations

import itertools
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from libp2p_introspection.introspector import conninfo, endings, records, render
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.ending_hooks import EndingHooks
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.records import (
    ENDED,
    ConnectionRecord,
    StreamListener,
    StreamRecord,
    never,
)
from libp2p_introspection.introspector.traffic import TrafficCounter, install_counters
from libp2p_introspection.introspector.upgrades import UpgradeTracker
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.clock import ClockMs
from libp2p_introspection.protocol.events import EventEmitter

logger = logging.getLogger(__name__)

__all__ = ["ENDED", "ConnectionRecord", "ConnectionRegistry", "StreamListener", "StreamRecord"]


class ConnectionRegistry:
    """Tracks every connection and stream of one swarm.

    :param patcher: used for the instance-level counting wrappers.
    :param clock_ms: wall clock, ms since epoch.
    :param emitter: where connection and stream events go.
    :param upgrades: the upgrader hook, consulted for connections it saw first.
    :param lifetime_ms: how long a CLOSED connection stays in snapshots, ms.
    :param peerstore: the host's peerstore (latency fallback), may be ``None``.
    :param use_created_at: take adopted connections' ``open_ts`` from
        ``SwarmConn._created_at`` (wall clock) rather than the attach time.
    """

    def __init__(
        self,
        *,
        patcher: InstancePatcher,
        clock_ms: ClockMs,
        emitter: EventEmitter,
        upgrades: UpgradeTracker,
        lifetime_ms: int,
        peerstore: Any = None,
        use_created_at: bool = True,
    ) -> None:
        self._patcher = patcher
        self._clock_ms = clock_ms
        self._emitter = emitter
        self._upgrades = upgrades
        self._lifetime_ms = lifetime_ms
        self._peerstore = peerstore
        self._use_created_at = use_created_at
        self._ids = itertools.count(1)
        self._connections: dict[bytes, ConnectionRecord] = {}
        self._by_conn: dict[Any, ConnectionRecord] = {}
        self._by_stream: dict[Any, StreamRecord] = {}
        self._endings = EndingHooks(patcher, clock_ms, self._finish_stream)
        #: ``NetStream``s that ended while py-libp2p may still list them (a reset stream
        #: stays in ``SwarmConn.streams`` until local code closes it): never registered again.
        self._ended_streams: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Counts of connections no longer in the registry (purged, or failed upgrades).
        self.retired = TrafficCounter()
        #: Called with each newly registered stream, in the registering task's context.
        self.stream_listeners: list[StreamListener] = []
        #: Called with each stream record the registry drops, before it lets go of it.
        self.stream_released: list[StreamListener] = []
        #: Called with each connection record the registry drops (purged).
        self.connection_released: list[Callable[[ConnectionRecord], None]] = []
        #: Connections whose stream list changed since the last snapshot (a stream
        #: registered or dropped), and streams that changed (counted payload, ended,
        #: negotiated, were tagged): what the incremental snapshot encodes again
        #: (:mod:`~libp2p_introspection.introspector.encoder`).
        self.touched: set[ConnectionRecord] = set()
        self.moved: set[StreamRecord] = set()
        #: Ended streams a snapshot reported: :meth:`purge` drops them.
        self.reported: list[StreamRecord] = []
        #: Ended connections, in the order they ended (:meth:`purge` looks at these only).
        self._ended: dict[bytes, ConnectionRecord] = {}

    # ---------------------------------------------------------------- lookups

    def _next_id(self) -> bytes:
        return next(self._ids).to_bytes(8, "big")

    def connections(self) -> Iterable[ConnectionRecord]:
        """All records still retained (ACTIVE, CLOSED and ERROR), oldest first."""
        return self._connections.values()

    def connection_record(self, conn: Any) -> ConnectionRecord | None:
        """The ACTIVE record for a ``SwarmConn``, if registered."""
        return self._by_conn.get(conn)

    def stream_record(self, stream: Any) -> StreamRecord | None:
        """The ACTIVE record for a ``NetStream``, if registered."""
        return self._by_stream.get(stream)

    def touch_stream(self, record: StreamRecord) -> None:
        """Say that ``record`` changed (its tags, say; see :attr:`moved`)."""
        self.moved.add(record)

    def retire(self, counter: TrafficCounter) -> None:
        """Fold ``counter`` into the node-wide totals of traffic no longer tracked."""
        self.retired.add(counter)

    # ------------------------------------------------------------ connections

    def adopt_existing(self, swarm: Any) -> None:
        """Register connections and streams that exist at attach time, without events."""
        for conn in conninfo.swarm_connections(swarm):
            if getattr(conn, "is_closed", False):
                continue
            record = self.on_connected(conn, announce=False)
            for stream in conninfo.conn_streams(conn):
                self.on_stream_opened(stream, announce=False, record=record)

    def on_connected(self, conn: Any, *, announce: bool = True) -> ConnectionRecord:
        """Register a ``SwarmConn`` (idempotent); emits ``ConnectionOpened`` when new."""
        existing = self._by_conn.get(conn)
        if existing is not None:
            return existing
        now = self._clock_ms()
        pending = self._upgrades.take(getattr(conn, "muxed_conn", None))
        raw = pending.raw if pending is not None else conninfo.raw_connection_of(conn)
        if pending is not None:
            traffic = pending.traffic
            open_ts, upgraded_ts = pending.open_ts, pending.upgraded_ts or now
        else:
            traffic = self._upgrades.counter_for(conn, raw)
            created = conninfo.created_at_ms(conn) if self._use_created_at else None
            open_ts = upgraded_ts = created if created is not None else now
        remote = conninfo.remote_multiaddr(conn)
        record = ConnectionRecord(
            id=self._next_id(),
            conn=conn,
            raw=raw,
            peer_id=conninfo.peer_id_str(conn),
            role=conninfo.connection_role(conn),
            transport=conninfo.transport_id(conn, remote),
            local_addr=conninfo.local_multiaddr(raw, remote),
            remote_addr=remote,
            muxer=conninfo.muxer_protocol(conn),
            security=conninfo.security_protocol(conn),
            open_ts=open_ts,
            upgraded_ts=upgraded_ts,
            traffic=traffic,
        )
        self._connections[record.id] = record
        self._by_conn[conn] = record
        try:
            self._endings.hook_connection(record, conn)
        except Exception:
            logger.exception("introspector: could not hook connection endings")
        if announce:
            content = events.connection_opened(
                peer_id=record.peer_id, conn_id=record.id, role=record.role,
                local_addr=record.local_addr, remote_addr=record.remote_addr,
                transport=record.transport, multiplexer=record.muxer,
                encryption=record.security, open_ts=record.open_ts,
            )  # fmt: skip
            self._emitter.emit(events.CONNECTION_OPENED, content)
        return record

    def on_disconnected(self, conn: Any) -> None:
        """Mark a connection CLOSED or ERROR, and its remaining streams ERROR.

        Emits ``StreamClosed`` for each stream still open, then ``ConnectionClosed``.
        """
        record = self._by_conn.get(conn)
        if record is None:
            return
        now = self._clock_ms()
        for stream_record in list(record.streams.values()):
            if stream_record.status == pb.ACTIVE:
                self._end_stream(stream_record, now, *records.connection_cut(record))
        del self._by_conn[conn]
        record.latency_ns = conninfo.latency_ns(conn, self._peerstore)
        record.status = pb.ERROR if record.failure else pb.CLOSED
        record.reason = record.failure or record.closed_by or endings.CLOSED
        record.close_ts = now
        record.conn = None
        self._ended[record.id] = record
        for obj in record.hooked:
            self._unhook(obj)
        record.hooked.clear()
        content = events.connection_closed(
            peer_id=record.peer_id, conn_id=record.id, role=record.role,
            remote_addr=record.remote_addr, open_ts=record.open_ts,
            ending=events.Ending(record.close_ts, record.traffic.in_bytes,
                                 record.traffic.out_bytes, record.status, record.reason),
        )  # fmt: skip
        self._emitter.emit(events.CONNECTION_CLOSED, content)

    # ---------------------------------------------------------------- streams

    def on_stream_opened(
        self,
        stream: Any,
        *,
        announce: bool = True,
        record: ConnectionRecord | None = None,
    ) -> StreamRecord | None:
        """Register a ``NetStream`` (idempotent) and start counting its payload.

        ``StreamOpened`` is emitted when its protocol gets negotiated (or now,
        if it already is and ``announce`` is true).
        """
        existing = self._by_stream.get(stream)
        if existing is not None:
            return existing
        if self._is_ended(stream):
            return None
        conn = tp.STREAM_SWARM_CONN.get(stream)
        if record is None:
            if conn is None:
                return None
            record = self._by_conn.get(conn)
            if record is None:
                if getattr(conn, "is_closed", False):
                    return None
                record = self.on_connected(conn, announce=announce)
        stream_record = StreamRecord(
            id=self._next_id(),
            stream=stream,
            conn=record,
            role=conninfo.stream_role(stream),
            open_ts=self._clock_ms(),
        )
        record.streams[stream_record.id] = stream_record
        self._by_stream[stream] = stream_record
        self.touched.add(record)
        try:
            self.count_stream(stream_record, stream)
            self._hook_set_protocol(stream, stream_record)
        except Exception:
            logger.exception("introspector: could not hook stream")
        try:
            self._endings.hook_stream(stream_record, tp.STREAM_MUXED.get(stream))
        except Exception:
            logger.exception("introspector: could not hook stream endings")
        if stream_record.current_protocol():
            # Negotiated before we saw it: adopted, or found late by reconcile.
            stream_record.announced = True
            if announce:
                self._announce_stream(stream_record)
        for listener in self.stream_listeners:
            try:
                listener(stream_record)
            except Exception:
                logger.exception("introspector: stream listener failed")
        if records.wire_ended(stream_record):
            # Already over on the wire (a stream opened with SYN+RST, say).
            self._finish_stream(stream_record, self._clock_ms())
        return stream_record

    def count_stream(self, stream_record: StreamRecord, stream: Any) -> bool:
        """Install the counting wrappers on ``stream`` (a ``NetStream``) for
        ``stream_record``: payload bytes once negotiated, each counted call marking
        it moved (:attr:`moved`). False if it was already wrapped."""
        return install_counters(
            self._patcher, stream, stream_record.traffic, negotiated=stream,
            touch=self.moved.add, key=stream_record,
        )  # fmt: skip

    def _is_ended(self, stream: Any) -> bool:
        try:
            return stream in self._ended_streams
        except TypeError:
            return False

    def _finish_stream(self, stream_record: StreamRecord, now: int) -> None:
        """End a stream with the status and reason its py-libp2p state gives."""
        if stream_record.status == pb.ACTIVE:
            self._end_stream(stream_record, now, *records.ending_of(stream_record))

    def _hook_set_protocol(self, stream: Any, stream_record: StreamRecord) -> None:
        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def set_protocol(protocol_id: Any) -> None:
                original(protocol_id)
                try:
                    stream_record.protocol = str(protocol_id)
                    self.moved.add(stream_record)
                    if not stream_record.announced:
                        stream_record.announced = True
                        self._announce_stream(stream_record)
                except Exception:
                    logger.exception("introspector: set_protocol hook failed")

            return set_protocol

        tp.STREAM_SET_PROTOCOL.hook(self._patcher, stream, wrap, once=False, through_class=True)

    def _announce_stream(self, stream_record: StreamRecord) -> None:
        content = events.stream_opened(
            peer_id=stream_record.conn.peer_id, conn_id=stream_record.conn.id,
            stream_id=stream_record.id, protocol=stream_record.current_protocol(),
            role=stream_record.role, open_ts=stream_record.open_ts,
        )  # fmt: skip
        self._emitter.emit(events.STREAM_OPENED, content)

    def on_stream_closed(self, stream: Any) -> None:
        """Mark a stream CLOSED or ERROR (idempotent); emits ``StreamClosed``."""
        stream_record = self._by_stream.get(stream)
        if stream_record is not None:
            self._finish_stream(stream_record, self._clock_ms())

    def _end_stream(self, stream_record: StreamRecord, now: int, status: int, reason: str) -> None:
        if stream_record.status != pb.ACTIVE:
            return
        self._by_stream.pop(stream_record.stream, None)
        try:
            self._ended_streams.add(stream_record.stream)
        except TypeError:
            logger.debug("introspector: stream not weak-referenceable")
        self._endings.forget(stream_record)
        stream_record.current_protocol()
        self.moved.add(stream_record)
        stream_record.status = status
        stream_record.reason = reason
        stream_record.close_ts = now
        content = events.stream_closed(
            peer_id=stream_record.conn.peer_id, conn_id=stream_record.conn.id,
            stream_id=stream_record.id, protocol=stream_record.protocol,
            role=stream_record.role, open_ts=stream_record.open_ts,
            ending=events.Ending(stream_record.close_ts, stream_record.traffic.in_bytes,
                                 stream_record.traffic.out_bytes, status, reason),
        )  # fmt: skip
        self._emitter.emit(events.STREAM_CLOSED, content)

    # -------------------------------------------------------------- snapshots

    def reconcile(self, swarm: Any) -> None:
        """Catch up with the swarm: new/closed connections, new/removed streams,
        and streams that py-libp2p's muxer state says are over."""
        for _ in self.reconcile_steps(swarm):
            pass

    def reconcile_steps(self, swarm: Any, every: int = 32) -> Iterator[None]:
        """:meth:`reconcile` in steps of ``every`` connections (a generator: the caller
        may let other tasks run between them; a connection that changed meanwhile is
        looked at as it is then)."""
        for conn in conninfo.swarm_connections(swarm):
            if conn not in self._by_conn and not getattr(conn, "is_closed", False):
                self.on_connected(conn)
        for n, (conn, record) in enumerate(list(self._by_conn.items())):
            if n % every == every - 1:
                yield
            if self._by_conn.get(conn) is not record:
                continue
            if getattr(conn, "is_closed", False):
                self.on_disconnected(conn)
                continue
            live = conninfo.conn_streams(conn)
            for stream in live:
                if stream not in self._by_stream and not self._is_ended(stream):
                    self.on_stream_opened(stream, record=record)
            live_set = set(live)
            now = 0
            active = pb.ACTIVE
            for stream_record in list(record.streams.values()):
                if stream_record.status != active:
                    continue
                if stream_record.stream not in live_set or stream_record.wire_ended():
                    now = now or self._clock_ms()
                    self._finish_stream(stream_record, now)

    def purge(self, now: int) -> None:
        """Drop ended streams already reported and connections ended for ``lifetime_ms``.

        Looks only at the streams a snapshot reported ended (:attr:`reported`) and the
        connections that ended, never at every stream.
        """
        reported = list(self.reported)
        self.reported.clear()  # in place: the encoder holds this list
        for stream_record in reported:
            record = stream_record.conn
            if record.streams.get(stream_record.id) is stream_record:
                del record.streams[stream_record.id]
                self.touched.add(record)
                self._release_stream(stream_record)
        for record_id, record in list(self._ended.items()):
            if record.status not in ENDED:
                del self._ended[record_id]
            elif now - record.close_ts >= self._lifetime_ms:
                del self._ended[record_id]
                if self._connections.get(record_id) is not record:
                    continue
                del self._connections[record_id]
                self.retired.add(record.traffic)
                for stream_record in record.streams.values():
                    self._release_stream(stream_record)
                record.streams.clear()
                self._unhook(record.raw)
                record.raw = None
                for listener in self.connection_released:
                    try:
                        listener(record)
                    except Exception:
                        logger.exception("introspector: connection release listener failed")

    def _release_stream(self, stream_record: StreamRecord) -> None:
        for listener in self.stream_released:
            try:
                listener(stream_record)
            except Exception:
                logger.exception("introspector: stream release listener failed")
        self._unhook(stream_record.stream)
        self._unhook(stream_record.muxed)
        stream_record.stream = None
        stream_record.muxed = None
        stream_record.wire_ended = never

    def _unhook(self, obj: Any) -> None:
        if obj is not None:
            self._patcher.unpatch(obj)

    def fill(self, out: Any, window_ms: int) -> None:
        """Append one ``pb.Connection`` per retained record to ``out`` (a repeated field);
        see :func:`~libp2p_introspection.introspector.render.fill_connections`."""
        render.fill_connections(
            self._connections.values(), out, window_ms, self._peerstore, self.reported
        )

    def node_traffic(self) -> TrafficCounter:
        """A fresh counter: retired totals plus every retained connection's totals."""
        total = TrafficCounter()
        total.add(self.retired)
        for record in self._connections.values():
            total.add(record.traffic)
        return total
