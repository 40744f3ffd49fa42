"""What the introspector knows about each connection and stream, and how one ended.

:class:`ConnectionRecord` / :class:`StreamRecord` are the state the
:class:`~libp2p_introspection.introspector.connections.ConnectionRegistry`
keeps (its lifecycle) and
:mod:`~libp2p_introspection.introspector.render` turns into ``pb.Connection``
messages. The functions below decide, from a record and py-libp2p's state
(:mod:`~libp2p_introspection.introspector.endings`), how a stream ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from libp2p_introspection.introspector import endings
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.traffic import TrafficCounter
from libp2p_introspection.protocol import pb

#: Statuses of a stream or connection that has ended.
ENDED = frozenset({pb.CLOSED, pb.ERROR})


def never() -> bool:
    """The ``wire_ended`` of a stream nothing is known about: never over."""
    return False


@dataclass(eq=False, slots=True, weakref_slot=True)
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
    wire_ended: Callable[[], bool] = never
    #: Folded into its protocol's lifetime totals (``protocols.ProtocolTracker``).
    summed: bool = False
    #: The application's tags (``Stream.user_provided_tags``), in the order first given.
    tags: list[str] = field(default_factory=list)
    #: Its bytes in the last snapshot (:mod:`~libp2p_introspection.introspector.encoder`).
    code: Any = None
    #: The live sums of its protocol that hold its counters (incremental path,
    #: ``ProtocolTracker.live_sums``), ``None`` while it counts nowhere.
    live: list[int] | None = None

    def current_protocol(self) -> str:
        """The negotiated protocol id, read lazily from ``NetStream.protocol_id`` and cached."""
        if self.stream is not None:
            protocol = tp.STREAM_PROTOCOL.get(self.stream)
            if protocol:
                self.protocol = str(protocol)
        return self.protocol


@dataclass(eq=False, slots=True, weakref_slot=True)
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
    #: The application's tags (``Connection.user_provided_tags``), in the order first given.
    tags: list[str] = field(default_factory=list)
    #: Its bytes in the last snapshot (:mod:`~libp2p_introspection.introspector.encoder`).
    code: Any = None


StreamListener = Callable[[StreamRecord], None]


def closing(record: ConnectionRecord) -> bool:
    """Whether py-libp2p is closing (or has closed) this connection, for any reason."""
    conn = record.conn
    if conn is None or record.status != pb.ACTIVE or getattr(conn, "is_closed", False):
        return True
    return endings.muxer_shutting_down(getattr(conn, "muxed_conn", None))


def connection_cut(record: ConnectionRecord) -> tuple[int, str]:
    """Status and reason of a stream still open when its connection ended."""
    return pb.ERROR, endings.CONNECTION_ERROR if record.failure else endings.CONNECTION_CLOSED


def wire_ended(stream_record: StreamRecord) -> bool:
    """Whether py-libp2p's state says the stream is over, although it may not have said so."""
    return stream_record.wire_ended()


def ending_of(stream_record: StreamRecord) -> tuple[int, str]:
    """Status and reason of a stream that has ended, from py-libp2p's state."""
    if stream_record.reset_locally:
        return pb.ERROR, endings.RESET_LOCALLY
    if closing(stream_record.conn):
        return connection_cut(stream_record.conn)
    _, reset = endings.wire_end(stream_record.muxed)
    if reset:
        return pb.ERROR, endings.RESET_BY_REMOTE
    if endings.stream_failed(stream_record.stream):
        return pb.ERROR, endings.STREAM_ERROR
    return pb.CLOSED, endings.CLOSED
