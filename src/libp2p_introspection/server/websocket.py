"""Trio I/O for one server-side WebSocket connection: a thin adapter around :class:`ServerWire`.

Reads and writes go straight to the trio socket, whose ``send`` and ``recv``
either complete or raise ``Cancelled`` having done nothing: a write cancelled
half-way leaves the rest of its frame queued in the wire, and whoever writes
next (the close) finishes it first. Every socket fault (a reset, a broken pipe,
a peer already gone) makes the connection *lost*; none of them is raised from
here. Only ``Cancelled`` (and bugs) leave these methods.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket as stdlib_socket
from collections import deque
from collections.abc import Callable

import trio

from libp2p_introspection.server.wire import (
    ClosedByPeer,
    HandshakeRefused,
    PlainRequest,
    ProtocolViolation,
    ServerWire,
    UpgradeRequested,
    WireEvent,
    WireState,
)

log = logging.getLogger(__name__)

#: Bytes read from the socket at a time.
RECEIVE_SIZE = 16 * 1024
#: Bytes of client data read and discarded while waiting for it to close, at most.
LINGER_BYTES = 1024 * 1024


class WebSocketTransport:
    """One accepted TCP connection (``stream``, a ``trio.SocketStream``) speaking WebSocket.

    ``peer`` names the client in logs (``"HOST:PORT"`` or ``"unknown peer"``);
    ``max_message_size`` is the largest message accepted, bytes; ``on_progress``
    is called each time the socket accepts bytes (the session's write timeout
    counts from the last call).
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        peer: str,
        max_message_size: int,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.peer = peer
        self.wire = ServerWire(max_message_size=max_message_size)
        self.on_progress = on_progress
        #: Why the connection ended, for logs: set by the first of close, loss, or the peer.
        self.ended: str | None = None
        self._stream = stream
        self._socket = stream.socket
        self._lock = trio.Lock()
        self._events: deque[WireEvent] = deque()
        self._progress = trio.Event()
        self._lost = False

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
        self._events.extend(self.wire.pending_events())
        await self.flush()
        return not self._lost

    # --------------------------------------------------------------- session

    async def next_event(self) -> WireEvent:
        """The next event from the client; :class:`ClosedByPeer` (1006) once it is gone.

        Answers pings on the way (written at once unless a write is under way, which
        then carries the pong too).
        """
        if self._events:
            # One event per checkpoint, as from a channel: the writer gets to send the
            # answers of a burst of commands while they are being read.
            await trio.lowlevel.checkpoint()
        while not self._events:
            if self._lost or self.wire.state is WireState.DONE:
                return ClosedByPeer(1006, self.ended or "the connection is closed")
            data = await self._recv()
            self._events.extend(self.wire.receive_data(data))
            if self.wire.has_data_to_send and not self._lock.locked():
                await self.flush()
        event = self._events.popleft()
        if isinstance(event, ClosedByPeer):
            self.ended = self.ended or f"closed by the client ({event.code} {event.reason})"
        elif isinstance(event, ProtocolViolation):
            self.ended = self.ended or f"protocol violation: {event.reason} ({event.code})"
        return event

    async def send_binary(self, data: bytes) -> bool:
        """Write one binary message; ``False`` if the connection is no longer open."""
        if not self.wire.send_binary(data):
            return False
        await self.flush()
        return not self._lost

    async def ping(self, payload: bytes) -> bool:
        """Write a ping and wait until the socket has taken it (however long a large
        frame before it takes: the write timeout governs a stalled write). ``False`` if
        the connection is no longer open."""
        mark = self.wire.send_ping(payload)
        if mark is None:
            return False
        if not self._lock.locked():
            await self.flush()
        while self.wire.bytes_sent < mark:
            if self._lost:
                return False
            await self._progress.wait()
        return not self._lost

    async def flush(self) -> None:
        """Write everything queued, as the socket accepts it."""
        async with self._lock:
            while self.wire.has_data_to_send and not self._lost:
                try:
                    count = await self._socket.send(self.wire.data_to_send())
                except (OSError, trio.ClosedResourceError) as exc:
                    self._fail(exc)
                    return
                if self._lost:
                    return  # another task saw the socket fail while this send returned
                self.wire.sent(count)
                progress, self._progress = self._progress, trio.Event()
                progress.set()
                if self.on_progress is not None:
                    self.on_progress()

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
                self.wire.close(code, reason)
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
        self._progress.set()
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
        self._progress.set()

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
