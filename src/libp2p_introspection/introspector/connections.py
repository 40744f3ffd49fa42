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

import contextlib
import itertools
import logging
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from libp2p_introspection.introspector import conninfo, endings
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.traffic import TrafficCounter, install_counters
from libp2p_introspection.introspector.upgrades import UpgradeTracker
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.clock import ClockMs
from libp2p_introspection.protocol.events import EventEmitter

logger = logging.getLogger(__name__)

#: Statuses of a stream or connection that has ended.
ENDED = frozenset({pb.CLOSED, pb.ERROR})


def _never() -> bool:
    return False


@dataclass(eq=False)
class StreamRecord:
    """What the introspector knows about one stream (a py-libp2p ``NetStream``).

    Timestamps are ms since epoch; ``traffic`` counts payload bytes.
    """

    id: bytes
    stream: Any
    conn: ConnectionRecord
    role: int
    open_ts: int
    traffic: TrafficCounter = field(default_factory=TrafficCounter)
    protocol: str = ""
    status: int = pb.ACTIVE
    close_ts: int = 0
    #: How it ended (an ``endings`` reason), "" while ACTIVE.
    reason: str = ""
    announced: bool = False
    reported_closed: bool = False
    #: The ``NetStream``'s muxed stream (yamux/mplex), whose state says how it ended.
    muxed: Any = None
    #: Set by the muxed stream's ``reset()`` hook when local code reset it while it was live.
    reset_locally: bool = False
    #: Whether py-libp2p's state says the stream is over (``endings.ended_probe``).
    wire_ended: Callable[[], bool] = _never

    def current_protocol(self) -> str:
        """The negotiated protocol id, read lazily from ``NetStream.protocol_id`` and cached."""
        if self.stream is not None:
            protocol = getattr(self.stream, "protocol_id", None)
            if protocol:
                self.protocol = str(protocol)
        return self.protocol


@dataclass(eq=False)
class ConnectionRecord:
    """What the introspector knows about one connection (a py-libp2p ``SwarmConn``).

    ``open_ts``/``upgraded_ts``/``close_ts`` are ms since epoch; ``traffic``
    counts raw transport bytes; ``streams`` maps stream id bytes to records.
    """

    id: bytes
    conn: Any
    raw: Any
    peer_id: str
    role: int
    transport: bytes
    local_addr: str
    remote_addr: str
    muxer: str
    security: str
    open_ts: int
    upgraded_ts: int
    traffic: TrafficCounter
    status: int = pb.ACTIVE
    close_ts: int = 0
    latency_ns: int = 0
    streams: dict[bytes, StreamRecord] = field(default_factory=dict)
    #: How it ended (an ``endings`` reason or the failure), "" while ACTIVE.
    reason: str = ""
    #: The first transport/security/muxer failure seen while it was up ("" if none).
    failure: str = ""
    #: ``endings.CLOSED_LOCALLY``/``CLOSED_BY_REMOTE``, from the ``SwarmConn.close`` hook.
    closed_by: str = ""
    #: Objects carrying this connection's ending hooks (unhooked when it closes).
    hooked: list[Any] = field(default_factory=list)


StreamListener = Callable[[StreamRecord], None]


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
        #: Muxed stream (yamux/mplex) -> record of its ``NetStream``, for the muxer hooks.
        self._by_muxed: dict[Any, StreamRecord] = {}
        #: ``NetStream``s that ended while py-libp2p may still list them (a reset stream
        #: stays in ``SwarmConn.streams`` until local code closes it): never registered again.
        self._ended_streams: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Counts of connections no longer in the registry (purged, or failed upgrades).
        self.retired = TrafficCounter()
        #: Called with each newly registered stream, in the registering task's context.
        self.stream_listeners: list[StreamListener] = []

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

    def retire(self, counter: TrafficCounter) -> None:
        """Fold ``counter`` into the node-wide totals of traffic no longer tracked."""
        self.retired.add(counter)

    # ------------------------------------------------------------ connections

    def adopt_existing(self, swarm: Any) -> None:
        """Register connections and streams that exist at attach time, without events."""
        for conn in _swarm_connections(swarm):
            if getattr(conn, "is_closed", False):
                continue
            record = self.on_connected(conn, announce=False)
            for stream in _conn_streams(conn):
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
            traffic = self._hook_connection(conn, raw)
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
            self._hook_endings(record, conn)
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

    def _hook_connection(self, conn: Any, raw: Any) -> TrafficCounter:
        """Install counters on the raw connection (or, failing that, the secured one)."""
        target = raw
        if target is None:
            target = getattr(getattr(conn, "muxed_conn", None), "secured_conn", None)
            if target is not None:
                logger.debug("introspector: no raw connection found; counting at secured layer")
        if target is None:
            return TrafficCounter()
        try:
            existing = self._upgrades.raw_counters.get(target)
        except TypeError:
            existing = None
        if existing is not None:
            return existing
        counter = TrafficCounter()
        try:
            if install_counters(self._patcher, target, counter):
                self._upgrades.raw_counters[target] = counter
        except Exception:
            logger.exception("introspector: could not hook connection traffic")
        return counter

    def _hook_endings(self, record: ConnectionRecord, conn: Any) -> None:
        """Install the hooks that see this connection's and its streams' endings."""
        muxed_conn = getattr(conn, "muxed_conn", None)

        def failed(exc: BaseException) -> None:
            self._note_failure(record, exc)

        def before_close() -> None:
            closed = getattr(conn, "is_closed", False)
            if record.status == pb.ACTIVE and not record.closed_by and not closed:
                local = not endings.muxer_shutting_down(muxed_conn)
                record.closed_by = endings.CLOSED_LOCALLY if local else endings.CLOSED_BY_REMOTE

        endings.hook_close(self._patcher, conn, before_close)
        record.hooked.append(conn)
        if muxed_conn is None:
            return
        if endings.hook_muxer(
            self._patcher, muxed_conn, stream_changed=self._muxed_stream_changed, failed=failed
        ):
            record.hooked.append(muxed_conn)
        secured = getattr(muxed_conn, "secured_conn", None)
        if secured is not None:
            endings.hook_failures(self._patcher, secured, failed)
            record.hooked.append(secured)

    def _note_failure(self, record: ConnectionRecord, exc: BaseException) -> None:
        """Keep the first I/O failure of a connection that is up (not one caused by closing it)."""
        if record.failure or record.status != pb.ACTIVE or self._closing(record):
            return
        failure = endings.failure_of(exc)
        if failure:
            record.failure = failure

    @staticmethod
    def _closing(record: ConnectionRecord) -> bool:
        """Whether py-libp2p is closing (or has closed) this connection, for any reason."""
        conn = record.conn
        if conn is None or record.status != pb.ACTIVE or getattr(conn, "is_closed", False):
            return True
        return endings.muxer_shutting_down(getattr(conn, "muxed_conn", None))

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
                self._end_stream(stream_record, now, *self._connection_cut(record))
        del self._by_conn[conn]
        record.latency_ns = conninfo.latency_ns(conn, self._peerstore)
        record.status = pb.ERROR if record.failure else pb.CLOSED
        record.reason = record.failure or record.closed_by or endings.CLOSED
        record.close_ts = now
        record.conn = None
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

    @staticmethod
    def _connection_cut(record: ConnectionRecord) -> tuple[int, str]:
        """Status and reason of a stream still open when its connection ended."""
        return pb.ERROR, endings.CONNECTION_ERROR if record.failure else endings.CONNECTION_CLOSED

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
        conn = getattr(stream, "swarm_conn", None)
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
        try:
            install_counters(self._patcher, stream, stream_record.traffic, negotiated=stream)
            self._hook_set_protocol(stream, stream_record)
        except Exception:
            logger.exception("introspector: could not hook stream")
        try:
            self._hook_muxed_stream(stream_record, getattr(stream, "muxed_stream", None))
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
        if self._wire_ended(stream_record):
            # Already over on the wire (a stream opened with SYN+RST, say).
            self._finish_stream(stream_record, self._clock_ms())
        return stream_record

    def _is_ended(self, stream: Any) -> bool:
        try:
            return stream in self._ended_streams
        except TypeError:
            return False

    def _hook_muxed_stream(self, stream_record: StreamRecord, muxed: Any) -> None:
        if muxed is None:
            return
        stream_record.muxed = muxed
        stream_record.wire_ended = endings.ended_probe(muxed, stream_record.stream)
        try:
            self._by_muxed[muxed] = stream_record
        except TypeError:
            logger.debug("introspector: muxed stream not hashable; endings read at snapshots")

        def before_reset() -> None:
            # A local reset of a stream still live on the wire; one the remote
            # already reset, or one reset by the connection's teardown, is not.
            if stream_record.status != pb.ACTIVE or self._closing(stream_record.conn):
                return
            ended, _ = endings.wire_end(muxed)
            if not ended:
                stream_record.reset_locally = True

        def after_reset() -> None:
            if stream_record.status == pb.ACTIVE and self._wire_ended(stream_record):
                self._finish_stream(stream_record, self._clock_ms())

        endings.hook_stream(
            self._patcher, muxed, before_reset=before_reset, after_reset=after_reset
        )

    def _muxed_stream_changed(self, muxed: Any) -> None:
        """Muxer hook: py-libp2p processed a close, FIN or reset of ``muxed``."""
        try:
            stream_record = self._by_muxed.get(muxed)
        except TypeError:
            return
        active = stream_record is not None and stream_record.status == pb.ACTIVE
        if active and self._wire_ended(stream_record):
            self._finish_stream(stream_record, self._clock_ms())

    @staticmethod
    def _wire_ended(stream_record: StreamRecord) -> bool:
        """Whether py-libp2p's state says the stream is over, although it may not have said so."""
        return stream_record.wire_ended()

    def _ending_of(self, stream_record: StreamRecord) -> tuple[int, str]:
        """Status and reason of a stream that has ended, from py-libp2p's state."""
        if stream_record.reset_locally:
            return pb.ERROR, endings.RESET_LOCALLY
        if self._closing(stream_record.conn):
            return self._connection_cut(stream_record.conn)
        _, reset = endings.wire_end(stream_record.muxed)
        if reset:
            return pb.ERROR, endings.RESET_BY_REMOTE
        if endings.stream_failed(stream_record.stream):
            return pb.ERROR, endings.STREAM_ERROR
        return pb.CLOSED, endings.CLOSED

    def _finish_stream(self, stream_record: StreamRecord, now: int) -> None:
        """End a stream with the status and reason its py-libp2p state gives."""
        if stream_record.status == pb.ACTIVE:
            self._end_stream(stream_record, now, *self._ending_of(stream_record))

    def _hook_set_protocol(self, stream: Any, stream_record: StreamRecord) -> None:
        original = getattr(stream, "set_protocol", None)
        if not callable(original):
            return

        def set_protocol(protocol_id: Any) -> None:
            original(protocol_id)
            try:
                stream_record.protocol = str(protocol_id)
                if not stream_record.announced:
                    stream_record.announced = True
                    self._announce_stream(stream_record)
            except Exception:
                logger.exception("introspector: set_protocol hook failed")

        self._patcher.patch(stream, "set_protocol", set_protocol)

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
        if stream_record.muxed is not None:
            with contextlib.suppress(TypeError):  # unhashable: never in the map
                self._by_muxed.pop(stream_record.muxed, None)
        stream_record.current_protocol()
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
        for conn in _swarm_connections(swarm):
            if conn not in self._by_conn and not getattr(conn, "is_closed", False):
                self.on_connected(conn)
        for conn, record in list(self._by_conn.items()):
            if getattr(conn, "is_closed", False):
                self.on_disconnected(conn)
                continue
            live = _conn_streams(conn)
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
        """Drop ended streams already reported and connections ended for ``lifetime_ms``."""
        for record_id, record in list(self._connections.items()):
            for stream_id, stream_record in list(record.streams.items()):
                if stream_record.reported_closed:
                    del record.streams[stream_id]
                    self._release_stream(stream_record)
            if record.status in ENDED and now - record.close_ts >= self._lifetime_ms:
                del self._connections[record_id]
                self.retired.add(record.traffic)
                for stream_record in record.streams.values():
                    self._release_stream(stream_record)
                record.streams.clear()
                self._unhook(record.raw)
                record.raw = None

    def _release_stream(self, stream_record: StreamRecord) -> None:
        self._unhook(stream_record.stream)
        self._unhook(stream_record.muxed)
        stream_record.stream = None
        stream_record.muxed = None
        stream_record.wire_ended = _never

    def _unhook(self, obj: Any) -> None:
        if obj is not None:
            self._patcher.unpatch(obj)

    def fill(self, out: Any, window_ms: int) -> None:
        """Append one ``pb.Connection`` per retained record to ``out`` (a repeated field)."""
        for record in self._connections.values():
            try:
                self._fill_connection(out.add(), record, window_ms)
            except Exception:
                logger.exception("introspector: could not describe a connection")

    def _fill_connection(
        self, msg: pb.Connection, record: ConnectionRecord, window_ms: int
    ) -> None:
        msg.id = record.id
        msg.peer_id = record.peer_id
        msg.status = record.status
        msg.transport_id = record.transport
        msg.endpoints.SetInParent()
        msg.endpoints.src_multiaddr = record.local_addr
        msg.endpoints.dst_multiaddr = record.remote_addr
        msg.timeline.SetInParent()
        msg.timeline.open_ts = record.open_ts
        msg.timeline.upgraded_ts = record.upgraded_ts
        msg.timeline.close_ts = record.close_ts
        msg.role = record.role
        record.traffic.to_pb(msg.traffic, window_ms)
        msg.attribs.SetInParent()
        msg.attribs.multiplexer = record.muxer
        msg.attribs.encryption = record.security
        if record.conn is not None:
            record.latency_ns = conninfo.latency_ns(record.conn, self._peerstore)
        msg.latency_ns = record.latency_ns
        streams = msg.streams
        streams.SetInParent()
        stream_ids = streams.stream_ids
        add = streams.streams.add
        conn_ref = {"conn_id": record.id}
        # Each stream is built from keywords in one C call (see TrafficCounter.to_dict).
        for stream_record in record.streams.values():
            stream_ids.append(stream_record.id)
            add(
                id=stream_record.id,
                protocol=stream_record.current_protocol(),
                role=stream_record.role,
                traffic=stream_record.traffic.to_dict(window_ms),
                conn=conn_ref,
                timeline={"open_ts": stream_record.open_ts, "close_ts": stream_record.close_ts},
                status=stream_record.status,
            )
            if stream_record.status in ENDED:
                stream_record.reported_closed = True

    def node_traffic(self) -> TrafficCounter:
        """A fresh counter: retired totals plus every retained connection's totals."""
        total = TrafficCounter()
        total.add(self.retired)
        for record in self._connections.values():
            total.add(record.traffic)
        return total


def _swarm_connections(swarm: Any) -> list[Any]:
    try:
        return list(swarm.get_connections())
    except Exception:
        conns: list[Any] = []
        for peer_conns in getattr(swarm, "connections", {}).values():
            conns.extend(peer_conns if isinstance(peer_conns, list) else [peer_conns])
        return conns


def _conn_streams(conn: Any) -> list[Any]:
    try:
        return list(conn.get_streams())
    except Exception:
        return list(getattr(conn, "streams", ()))
