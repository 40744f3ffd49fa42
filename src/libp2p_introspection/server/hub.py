"""Server-wide state shared by every session: the snapshot sequence and the fan-out.

The hub numbers snapshots (§4.1), encodes each snapshot and each event once,
and hands the same bytes to every live :class:`~libp2p_introspection.protocol.session.Session`.
Everything here is synchronous and never waits: a source calls
:meth:`Hub.publish_event` from inside the node's own tasks, and the node
must never wait on a client (§4.9). The only trio object is the per-session
wake-up event that tells a session's writer task there is something to send.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import trio

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_server_message
from libp2p_introspection.protocol.session import (
    EventItem,
    Session,
    SessionLimits,
    Snapshot,
)

log = logging.getLogger(__name__)


class SessionHandle:
    """A session plus what its I/O tasks need: a wake-up for the writer and a cancel scope."""

    def __init__(self, session: Session, peer: str) -> None:
        self.session = session
        self.peer = peer
        self.cancel_scope: trio.CancelScope | None = None
        #: Frames actually written to the socket, by payload kind.
        self.sent: Counter[str] = Counter()
        self._wakeup = trio.Event()
        self._drained = trio.Event()

    def notify(self) -> None:
        """Wake the writer if there is something to send or the session must end."""
        session = self.session
        if session.close is not None and self.cancel_scope is not None:
            self.cancel_scope.cancel()
        if session.has_frames or session.close is not None:
            self._wakeup.set()

    async def wait(self) -> None:
        """Sleep until :meth:`notify` finds work; returns at once if there already is some."""
        if self.session.has_frames or self.session.close is not None:
            return
        self._wakeup = trio.Event()
        await self._wakeup.wait()

    def drained(self) -> None:
        """The writer sent a frame: wake a reader held back by a full queue."""
        if self.session.queued_replies <= self.session.limits.queue_bound:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Sleep until the outgoing queue is back within its bound (or the session ends)."""
        self._drained = trio.Event()
        if self.session.queued_replies <= self.session.limits.queue_bound:
            return
        await self._drained.wait()


class Hub:
    """The server-wide snapshot sequence, the runtime, and the set of live sessions.

    ``runtime`` is sent to every client on connect; ``clock`` is the monotonic
    clock in seconds (``trio.current_time`` by default; tests pass a fake one).
    """

    def __init__(
        self,
        limits: SessionLimits,
        runtime: pb.Runtime,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.sessions: set[SessionHandle] = set()
        self.latest: Snapshot | None = None
        self.events_published = 0
        self.set_runtime(runtime)

    def set_runtime(self, runtime: pb.Runtime) -> None:
        """Encode the ``Runtime`` once and remember which event types it declares."""
        message = pb.ServerMessage()
        message.runtime.CopyFrom(runtime)
        self.runtime_frame = encode_server_message(message)
        self.event_types = {t.name: t for t in runtime.event_types}

    # ------------------------------------------- the source's outlet (abc.SourceOutlet)

    @property
    def interval_ms(self) -> int:
        """The base snapshot interval, ms (§4.1)."""
        return self.limits.base_interval_ms

    def publish_snapshot(self, frame: bytes) -> None:
        """Make ``frame`` (a framed ``ServerMessage{state}``) the next snapshot of the
        sequence, numbered one above the latest, and offer it to every session."""
        number = 1 if self.latest is None else self.latest.number + 1
        snapshot = Snapshot(number, frame)
        self.latest = snapshot
        now = self.clock()
        for handle in self.sessions:
            handle.session.snapshot_produced(snapshot, now)
            handle.notify()

    def publish_event(self, event: pb.Event, frame: bytes | None = None) -> None:
        """Offer ``event`` to every session, encoded once for all of them.

        ``frame``: the event already framed (a replay's file bytes), sent as is;
        ``None``: encoded here, once (:meth:`EventItem.encode`: whether a session gets
        the property types too is the session's rule). Safe to call from any task
        on the trio loop; never blocks, never raises for a session's sake.
        """
        self.events_published += 1
        if not self.sessions:
            return  # nobody to tell: skip the encoding
        if frame is None:
            item = EventItem.encode(event)
        else:
            item = EventItem(event.type.name, frame, frame)
        now = self.clock()
        for handle in self.sessions:
            handle.session.event_produced(item, now)
            handle.notify()

    # ------------------------------------------------------------------ sessions

    def open_session(self, peer: str = "") -> SessionHandle:
        """Start a session: it gets the runtime and the latest snapshot (§4.2)."""
        if self.latest is None:
            raise RuntimeError("the hub has no snapshot yet; publish one before accepting clients")
        session = Session(
            self.limits,
            self.runtime_frame,
            frozenset(self.event_types),
            self.latest,
            self.clock(),
        )
        handle = SessionHandle(session, peer)
        self.sessions.add(handle)
        return handle

    def close_session(self, handle: SessionHandle) -> None:
        """Forget a session; its buffers go with it."""
        self.sessions.discard(handle)

    def tick(self) -> None:
        """Let every session age its pause buffer and check its write timeout."""
        now = self.clock()
        for handle in list(self.sessions):
            handle.session.tick(now)
            if handle.session.close is not None:
                log.info(
                    "closing session %s: %s (%d)",
                    handle.peer,
                    handle.session.close.reason,
                    handle.session.close.code,
                )
            handle.notify()

    def close_all(self) -> None:
        """Cancel the I/O of every session (server shutdown)."""
        for handle in list(self.sessions):
            if handle.cancel_scope is not None:
                handle.cancel_scope.cancel()
