"""Server-wide state shared by every session: the snapshot sequence and the fan-out.

The hub numbers snapshots (§4.1), encodes each snapshot and each event once,
and hands the same bytes to every live :class:`~libp2p_introspection.protocol.session.Session`.
Everything here is synchronous and never waits: a source calls
:meth:`Hub.publish_event` from inside the node's own tasks, and the node
must never wait on a client (§4.9). A session's I/O (its tasks and their
wake-ups) is the server's (:mod:`libp2p_introspection.server.session_io`): the
hub only calls :meth:`Member.notify`. Its methods are KI-protected: a Ctrl-C
raised in the node's task that publishes an event waits for the next checkpoint
rather than cutting a fan-out in half.

The hub is the sources' :class:`~libp2p_introspection.abc.SourceOutlet`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio
from trio.lowlevel import enable_ki_protection

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_server_message
from libp2p_introspection.protocol.session import (
    EventItem,
    Session,
    SessionLimits,
    Snapshot,
)

log = logging.getLogger(__name__)


class Member(Protocol):
    """A live session as the hub sees it (the server's
    :class:`~libp2p_introspection.server.session_io.SessionHandle`): the session, a
    name for logs, and two synchronous calls into its I/O."""

    session: Session
    peer: str

    def notify(self) -> None:
        """The session was given something (or must end): wake its writer."""

    def cancel(self) -> None:
        """Cancel the session's I/O (the server stops)."""


class Observer(Protocol):
    """Sees every snapshot and event the hub publishes, as the sessions get them (the
    Prometheus export's :class:`~libp2p_introspection.server.metrics.view.MetricsView`).
    Both calls are synchronous and must not block; what they raise is logged and
    goes no further."""

    def snapshot_published(self, number: int, frame: bytes) -> None:
        """Snapshot ``number`` of the sequence, its framed ``ServerMessage{state}``."""

    def event_published(self, event: pb.Event) -> None:
        """One event, as the source published it."""


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
        self.sessions: set[Member] = set()
        #: Observers of every snapshot and event besides the sessions (the metrics view).
        self.observers: list[Observer] = []
        self.latest: Snapshot | None = None
        self.events_published = 0
        self._set_runtime(runtime)

    def _set_runtime(self, runtime: pb.Runtime) -> None:
        # The Runtime, encoded once, and the event types it declares (sessions were
        # told their property types on connect).
        message = pb.ServerMessage()
        message.runtime.CopyFrom(runtime)
        self.runtime_frame = encode_server_message(message)
        self.event_types = frozenset(t.name for t in runtime.event_types)

    # ------------------------------------------- the source's outlet (abc.SourceOutlet)

    @property
    def interval_ms(self) -> int:
        """The base snapshot interval, ms (§4.1)."""
        return self.limits.base_interval_ms

    @enable_ki_protection
    def publish_snapshot(self, frame: bytes) -> None:
        """Make ``frame`` (a framed ``ServerMessage{state}``) the next snapshot of the
        sequence, numbered one above the latest, and offer it to every session."""
        number = 1 if self.latest is None else self.latest.number + 1
        snapshot = Snapshot(number, frame)
        self.latest = snapshot
        for observer in self.observers:
            try:
                observer.snapshot_published(number, frame)
            except Exception:
                log.exception("an observer of the hub failed on snapshot %d", number)
        now = self.clock()
        for member in self.sessions:
            member.session.snapshot_produced(snapshot, now)
            member.notify()

    @enable_ki_protection
    def publish_event(self, event: pb.Event, frame: bytes | None = None) -> None:
        """Offer ``event`` to every session, encoded once for all of them.

        ``frame``: the event already framed (a replay's file bytes), sent as is;
        ``None``: encoded here, once (:meth:`EventItem.encode`: whether a session gets
        the property types too is the session's rule). Safe to call from any task
        on the trio loop; never blocks, never raises for a session's sake.
        """
        self.events_published += 1
        for observer in self.observers:
            try:
                observer.event_published(event)
            except Exception:
                log.exception("an observer of the hub failed on an event")
        if not self.sessions:
            return  # nobody to tell: skip the encoding
        if frame is None:
            item = EventItem.encode(event)
        else:
            item = EventItem(event.type.name, frame, frame)
        now = self.clock()
        for member in self.sessions:
            member.session.event_produced(item, now)
            member.notify()

    @enable_ki_protection
    def publish_runtime(self, runtime: pb.Runtime) -> None:
        """Make ``runtime`` the one sent on connect and on ``REQUEST RUNTIME`` from now
        on, by every session (encoded once). Sessions already open keep what they
        were told: a type new to them comes with its property types in its first
        event (:meth:`Session.runtime_changed`)."""
        self._set_runtime(runtime)
        for member in self.sessions:
            member.session.runtime_changed(self.runtime_frame, self.event_types)

    # ------------------------------------------------------------------ sessions

    @enable_ki_protection
    def open_session(self) -> Session:
        """A new session, given the runtime and the latest snapshot (§4.2); it gets
        what the hub publishes once it :meth:`join` s.

        Raises ``RuntimeError`` before the first snapshot is published.
        """
        if self.latest is None:
            raise RuntimeError("the hub has no snapshot yet; publish one before accepting clients")
        return Session(
            self.limits,
            self.runtime_frame,
            self.event_types,
            self.latest,
            self.clock(),
        )

    @enable_ki_protection
    def join(self, member: Member) -> None:
        """Offer ``member``'s session every snapshot and event published from now on."""
        self.sessions.add(member)

    @enable_ki_protection
    def leave(self, member: Member) -> None:
        """Forget a session; its buffers go with it."""
        self.sessions.discard(member)

    @enable_ki_protection
    def tick(self) -> None:
        """Let every session age its pause buffer and check its write timeout."""
        now = self.clock()
        for member in list(self.sessions):
            member.session.tick(now)
            if member.session.close is not None:
                log.info(
                    "closing session %s: %s (%d)",
                    member.peer,
                    member.session.close.reason,
                    member.session.close.code,
                )
            member.notify()

    @enable_ki_protection
    def close_all(self) -> None:
        """Cancel the I/O of every session (server shutdown)."""
        for member in list(self.sessions):
            member.cancel()
