"""Trio I/O for one server-side WebSocket connection: a thin adapter around :class:`ServerWire`.

Reads and writes go straight to the trio socket, whose ``send`` and ``recv``
either complete or raise ``Cancelled`` having done nothing: a write cancelled
half-way leaves the rest of its frame queued in the wire, and whoever writes
next (the close) finishes it first. Every socket fault (a reset, a broken pipe,
a peer already gone) makes the connection *lost*; none of them is raised from
here. Only ``Cancelled`` (and bugs) leave these methods.

What a client can make the server hold is bounded: the wire owes at most one
pong (the answer to the latest ping), and nothing the client sends is read
while more than :data:`MAX_READ_BACKLOG` bytes wait for the socket or a pong
is owed, so a client that does not read what it asked for is pushed back by
TCP. Writers take the lock one frame at a time, so the session's ping and the
close frame get their turn between frames.

:meth:`WebSocketTransport.write_now` writes what the socket takes at once without
waiting or yielding to the loop (one ``send`` call per frame, as ``flush`` does), so
that a session's writer can send a run of small queued frames in one turn (an event
fan-out) instead of one frame per pass of the scheduler.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket as stdlib_socket
from collections import deque
from collections.abc import Callable

import trio

from libp2p_introspection.protocol.closecodes import CLOSE_ABNORMAL
from libp2p_introspection.server.handshake import (
    HandshakeRefused,
    PlainRequest,
    UpgradeRequested,
)
from libp2p_introspection.server.wire import ServerWire, WireState
from libp2p_introspection.server.wire_events import ClosedByPeer, ProtocolViolation, WireEvent

log = logging.getLogger(__name__)

#: Bytes read from the socket at a time.
RECEIVE_SIZE = 16 * 1024
#: Bytes of client data read and discarded while waiting for it to close, at most.
LINGER_BYTES = 1024 * 1024
#: While more than this many bytes wait for the socket, nothing more is read from the
#: client (nor while a pong is owed): bytes.
MAX_READ_BACKLOG = 64 * 1024


#: Flags of every send(2): never raise SIGPIPE. CPython ignores it, but an application
#: that embeds the server may keep its default, and then a write to a connection the
#: peer reset after its FIN (EPIPE) kills the process, node included; with
#: MSG_NOSIGNAL it is only EPIPE, a lost connection. (Linux; 0 where there is none.)
SEND_FLAGS: int = getattr(stdlib_socket, "MSG_NOSIGNAL", 0)


def _send_now(sock: stdlib_socket.socket, view: memoryview) -> int:
    """The send(2) of :meth:`WebSocketTransport.write_now` on the non-blocking socket
    (a name of its own, so that a test can watch it): bytes taken, or
    ``BlockingIOError``."""
    return sock.send(view, SEND_FLAGS)


class WebSocketTransport:
    """One accepted TCP connection (``stream``, a ``trio.SocketStream``) speaking WebSocket.

    ``peer`` names the client in logs (``"HOST:PORT"`` or ``"unknown peer"``);
    ``max_message_size`` is the largest message accepted, bytes; ``on_progress``
    is called each time the socket accepts bytes of a frame other than a pong
    (the session's write timeout counts from the last call); ``on_pending`` is
    called with ``True`` when bytes start waiting for the socket (a ping, an owed
    pong, a message) and ``False`` when none are left (the write timeout applies
    to the transport's own frames too).
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        peer: str,
        max_message_size: int,
        on_progress: Callable[[], None] | None = None,
        on_pending: Callable[[bool], None] | None = None,
    ) -> None:
        self.peer = peer
        self.wire = ServerWire(max_message_size=max_message_size)
        self.on_progress = on_progress
        self.on_pending = on_pending
        #: Why the connection ended, for logs: set by the first of close, loss, or the peer.
        self.ended: str | None = None
        self._stream = stream
        self._socket = stream.socket
        # The stdlib socket under trio's, for write_now's synchronous send (trio keeps
        # it as ``_sock``; without it, write_now always says no and flush writes).
        sync = getattr(stream.socket, "_sock", None)
        self._sync: stdlib_socket.socket | None = (
            sync if isinstance(sync, stdlib_socket.socket) else None
        )
        self._lock = trio.Lock()
        self._events: deque[WireEvent] = deque()
        self._released = trio.Event()  # set when the write lock is released, or on loss
        self._pending = False  # what on_pending was last told
        self._lost = False

    @property
    def write_pending(self) -> bool:
        """Whether bytes wait for the socket (what ``on_pending`` was last told)."""
        return self._pending

    @property
    def events_waiting(self) -> int:
        """Events read from the client and not yet handed out by :meth:`next_event`
        (at most what one read of :data:`RECEIVE_SIZE` bytes holds)."""
        return len(self._events)

    @property
    def lost(self) -> bool:
        """Whether the socket failed or the client is gone."""
        return self._lost

    # ------------------------------------------------------------ handshake

    async def read_upgrade(self) -> UpgradeRequested | PlainRequest | None:
        """Read the upgrade request; a :class:`PlainRequest` for a plain HTTP ``GET``
        (the caller answers it with :meth:`reject`); ``None`` if the client left, or sent
        something that is not a valid upgrade (then answered with the HTTP status it
        deserves)."""
        while not self._lost:
            data = await self._recv()
            try:
                events = self.wire.receive_data(data)
            except HandshakeRefused as refused:
                log.debug("bad upgrade request from %s: %s", self.peer, refused)
                await self.reject(refused.status, refused.reason)
                return None
            for event in events:
                if isinstance(event, UpgradeRequested | PlainRequest):
                    return event
                self._gone("the client left during the handshake")
                return None
        return None

    async def reject(self, status: int, reason: str) -> None:
        """Answer the pending request with HTTP ``status`` and ``reason`` (plain text), then
        close. The caller bounds the time (a client that reads nothing)."""
        if self.wire.state is WireState.HANDSHAKE:
            self.wire.reject(status, reason + "\n")
        self.ended = self.ended or f"refused (HTTP {status})"
        await self.flush()
        await self._linger()

    async def accept(self) -> bool:
        """Send the 101; ``False`` if the client is gone by then."""
        self.wire.accept()
        self._events.extend(self._noted(self.wire.pending_events()))
        await self.flush()
        return not self._lost

    # --------------------------------------------------------------- session

    async def next_event(self) -> WireEvent:
        """The next event from the client; :class:`ClosedByPeer` (1006) once it is gone.

        Answers pings on the way: the pong is written at once unless a write is under
        way, which then carries it between two frames. Reads nothing more while a
        pong is owed or more than :data:`MAX_READ_BACKLOG` bytes wait for the socket.
        """
        if self._events:
            # One event per checkpoint, as from a channel: the writer gets to send the
            # answers of a burst of commands while they are being read.
            await trio.lowlevel.checkpoint()
        while not self._events:
            if self._lost or self.wire.state is WireState.DONE:
                return ClosedByPeer(CLOSE_ABNORMAL, self.ended or "the connection is closed")
            await self._room_to_read()
            if self._lost:
                continue
            data = await self._recv()
            self._events.extend(self._noted(self.wire.receive_data(data)))
            self._report_pending()
            if self.wire.pong_due and not self._lock.locked():
                await self.flush(self.wire.bytes_sent)  # the pong alone, now
        return self._events.popleft()

    def _noted(self, events: list[WireEvent]) -> list[WireEvent]:
        # How the connection ends is known when it is read, not when the session gets
        # to it: a session cut short before then must not be logged as closed by us.
        for event in events:
            if isinstance(event, ClosedByPeer):
                self.ended = self.ended or f"closed by the client ({event.code} {event.reason})"
            elif isinstance(event, ProtocolViolation):
                self.ended = self.ended or f"protocol violation: {event.reason} ({event.code})"
        return events

    async def _room_to_read(self) -> None:
        # TCP pushes back on a client that does not read what it makes us write.
        wire = self.wire
        while not self._lost and (wire.pong_owed or wire.backlog > MAX_READ_BACKLOG):
            if self._lock.locked():
                released = self._released
                await released.wait()
            else:
                await self.flush()  # nobody is writing: the owed pong goes out from here

    def queue_binary(self, data: bytes) -> int | None:
        """Queue one binary message; the byte mark past which it is written (``await
        flush(mark)`` writes it), or ``None`` if the connection is no longer open."""
        if not self.wire.send_binary(data):
            return None
        self._report_pending()
        return self.wire.bytes_queued

    async def ping(self, payload: bytes) -> bool:
        """Write a ping and wait until the socket has taken it (however long a large
        frame before it takes: the write timeout governs a stalled write). ``False`` if
        the connection is no longer open."""
        mark = self.wire.send_ping(payload)
        if mark is None:
            return False
        self._report_pending()
        await self.flush(mark)
        return not self._lost

    @trio.lowlevel.enable_ki_protection
    def write_now(self, mark: int) -> bool:
        """Write the queue up to ``mark`` (a count of :attr:`ServerWire.bytes_queued`),
        then the owed pong if it is due, as far as the socket takes it at once: never
        waits and never yields to the loop. ``True`` if all of it is out; ``False`` if
        the socket would block, another task is writing (it holds the lock between two
        of its awaits), the connection is lost, or there is no stdlib socket to send on
        (then nothing is written): :meth:`flush` writes the rest, where this stopped.
        """
        sync = self._sync
        if sync is None or self._lost or self._lock.locked():
            return False
        wire = self.wire
        while not self._lost:
            if wire.bytes_sent >= mark and not (wire.writing_pong or wire.pong_due):
                return True
            view = wire.data_to_send()
            if not view:
                return wire.bytes_sent >= mark
            try:
                # The trio socket is non-blocking: send(2) takes what fits, or raises
                # BlockingIOError; a closed socket raises EBADF.
                count = _send_now(sync, view)
            except BlockingIOError:
                return False
            except OSError as exc:
                self._fail(exc)
                return False
            self._accepted(count)
        return False

    def _accepted(self, count: int) -> None:
        # The socket took ``count`` bytes of what data_to_send() returned.
        wire = self.wire
        before = wire.bytes_sent
        wire.sent(count)
        self._report_pending()
        if wire.bytes_sent > before and self.on_progress is not None:
            self.on_progress()

    async def flush(self, mark: int | None = None) -> None:
        """Write the queue up to ``mark`` (a count of :attr:`ServerWire.bytes_queued`;
        by default, all that is queued now), then the owed pong if it is due.

        The write lock is taken for one frame at a time (a pong, or a frame of the
        queue), so whoever else waits to write gets a turn between frames; bytes
        another writer sends count towards ``mark`` too.
        """
        wire = self.wire
        target = wire.bytes_queued if mark is None else mark
        while not self._lost and wire.bytes_sent < target:
            await self._write_one_frame(target)
        if not self._lost and (wire.writing_pong or wire.pong_due):
            await self._write_one_frame(wire.bytes_sent)

    # A Ctrl-C (KeyboardInterrupt) raised between the socket's send and ``wire.sent``
    # would leave bytes on the wire that the wire thinks unsent, and the close would
    # write them again: the client would read garbage. Under KI protection trio
    # delivers it to the main task at a checkpoint instead.
    @trio.lowlevel.enable_ki_protection
    async def _write_one_frame(self, target: int) -> None:
        try:
            self._lock.acquire_nowait()  # the usual case: the socket's send checkpoints
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            wire = self.wire
            while not self._lost:
                pong = wire.writing_pong or wire.pong_due
                if not pong and wire.bytes_sent >= target:
                    return
                view = wire.data_to_send()
                if not view:
                    return
                try:
                    count = await self._socket.send(view, SEND_FLAGS)
                except (OSError, trio.ClosedResourceError) as exc:
                    self._fail(exc)
                    return
                if self._lost:
                    return  # another task saw the socket fail while this send returned
                self._accepted(count)
                if (not wire.writing_pong) if pong else wire.at_boundary:
                    return  # a whole frame is out: the next writer's turn
        finally:
            self._lock.release()
            self._wake()

    def _wake(self) -> None:
        released = self._released
        if released.statistics().tasks_waiting:  # else nobody is told: keep the event
            self._released = trio.Event()
            released.set()

    def _report_pending(self) -> None:
        pending = self.wire.has_data_to_send and not self._lost
        if pending != self._pending:
            self._pending = pending
            if self.on_pending is not None:
                self.on_pending(pending)

    # ----------------------------------------------------------------- close

    async def close(self, code: int, reason: str, *, grace: float, linger: float) -> None:
        """End the connection: finish the frame in flight, send the close frame (``code``,
        ``reason``), wait for the client's answer, close the socket.

        What is queued must be written within ``grace`` seconds, else the socket is
        closed under it; the client then has ``linger`` seconds to answer. A no-op
        beyond closing the socket if the connection is already lost. Never raises
        but ``Cancelled``; the socket is closed in every case.
        """
        try:
            if not self._lost:
                if self.wire.close(code, reason):
                    self.ended = self.ended or f"closed by the server ({code} {reason})"
                with trio.move_on_after(grace) as flushing:
                    await self.flush()
                if flushing.cancelled_caught:
                    self.ended = f"{self.ended}; the close frame did not go out in {grace:g} s"
                    log.debug("%s: queued bytes not written in %g s", self.peer, grace)
                else:
                    with trio.move_on_after(linger):
                        await self._linger()
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the socket now (idempotent, never raises)."""
        self._lost = True
        self._released.set()
        with contextlib.suppress(OSError):
            self._socket.close()

    # ------------------------------------------------------------------ misc

    async def _linger(self) -> None:
        # Wait for the client's close frame or EOF, reading and discarding what it
        # still sends (bounded), so that closing the socket sends FIN, not RST.
        if self._lost:
            return
        if self.wire.state is WireState.DONE:
            self._shutdown_write()
        discarded = 0
        while not self._lost and discarded < LINGER_BYTES:
            data = await self._recv()
            if not data:
                return
            discarded += len(data)
            if self.wire.state is WireState.CLOSE_SENT:
                for event in self.wire.receive_data(data):
                    if isinstance(event, ClosedByPeer):
                        self.ended = f"{self.ended}; the client answered"
                if self.wire.state is WireState.DONE:
                    self._shutdown_write()

    def _shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(stdlib_socket.SHUT_WR)

    async def _recv(self) -> bytes:
        """Bytes from the client; ``b""`` once it is gone (EOF, reset or any socket fault)."""
        if self._lost:
            return b""
        try:
            data = await self._socket.recv(RECEIVE_SIZE)
        except (OSError, trio.ClosedResourceError) as exc:
            self._fail(exc)
            return b""
        if not data:
            self._gone("the client closed the TCP connection")
        return data

    def _gone(self, why: str) -> None:
        self.ended = self.ended or why
        self._lost = True
        self._released.set()

    def _fail(self, exc: OSError | trio.ClosedResourceError) -> None:
        code = getattr(exc, "errno", None)
        name = errno.errorcode.get(code, "") if code else type(exc).__name__
        log.debug("%s: connection lost (%s)", self.peer, name or exc)
        self.wire.lost()
        self._gone(f"connection lost ({name or exc})")


def describe_peer(stream: trio.SocketStream) -> str:
    """``HOST:PORT`` of the client (``[V6]:PORT``), or ``"unknown peer"`` if the socket
    no longer knows it (a client that reset at once). Never raises."""
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "unknown peer"
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) or "unknown peer"
