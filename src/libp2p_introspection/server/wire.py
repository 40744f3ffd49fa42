"""The server side of one WebSocket connection as a pure state machine (RFC 6455).

No sockets and no clocks: :class:`ServerWire` is fed the bytes a client sent
(:meth:`~ServerWire.receive_data`) and returns what happened as small events;
what the server wants to send (the 101 or a refusal, messages, pings, the close
frame) goes into one outgoing byte queue that the I/O adapter
(:mod:`libp2p_introspection.server.websocket`) writes out as the socket accepts it
(:meth:`~ServerWire.data_to_send`, :meth:`~ServerWire.sent`). Frames enter that
queue whole, so a write that stops half-way (a cancelled task) can always be
finished later: the stream never carries half a frame followed by another.

Pongs are not queued: only the most recent unanswered ping is answered (RFC 6455
§5.5.3 allows it), at the next frame boundary, and at most one pong goes out
between two frames of the queue. Whatever a client sends, the pongs it causes
take at most two frames (:data:`MAX_PONG_FRAME` bytes each: one being written,
one owed), never a queue.

The upgrade request is read and answered by
:mod:`libp2p_introspection.server.handshake` (h11, RFC 6455 §4.2.1); frames
are parsed by wsproto's frame layer. No extension and no subprotocol is
ever negotiated, so a frame with an RSV bit set is a protocol violation.
"""

from __future__ import annotations

import struct
from collections import deque
from enum import Enum

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from libp2p_introspection.protocol.closecodes import CLOSE_ABNORMAL
from libp2p_introspection.server.handshake import (
    MAX_REQUEST_SIZE,
    UpgradeReader,
    UpgradeRequested,
    accept_response,
    refusal_response,
)
from libp2p_introspection.server.wire_events import (
    ClosedByPeer,
    MessageReceived,
    MessageTooBig,
    PongReceived,
    ProtocolViolation,
    WireEvent,
)

#: Largest pong frame, bytes: a 2-byte header and at most 125 bytes of payload (§5.5).
MAX_PONG_FRAME = 127
#: Most frames one message may take (its first frame and its continuations). Our
#: clients and browsers send a command in one frame; a byte limit alone lets empty
#: continuation frames (6 bytes each on the wire, 0 counted) go on for ever.
MAX_MESSAGE_FRAMES = 64
_MAX_CLOSE_REASON = 123  # bytes: a close frame's payload is at most 125
#: Binary payloads below this size (bytes) are copied into one buffer with their
#: header, so the socket takes the frame in one write; larger ones are not copied.
COALESCE_BELOW = 16 * 1024


class WireState(Enum):
    """Where a connection is: ``HANDSHAKE`` (reading the upgrade request), ``OPEN``,
    ``CLOSE_SENT`` (our close frame is queued; waiting for the client's), ``DONE``
    (nothing more is read; write out what is queued, then close the socket)."""

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSE_SENT = "close sent"
    DONE = "done"


class ServerWire:
    """One server-side WebSocket connection, from the upgrade request to the close.

    ``max_message_size`` is the largest message accepted, bytes, and ``max_frames``
    the most frames it may take (past either: :class:`MessageTooBig`, and nothing
    more is read); ``max_request_size`` the largest upgrade request, bytes (past it:
    ``HandshakeRefused`` 431).
    """

    def __init__(
        self,
        *,
        max_message_size: int,
        max_request_size: int = MAX_REQUEST_SIZE,
        max_frames: int = MAX_MESSAGE_FRAMES,
    ) -> None:
        if max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        self.state = WireState.HANDSHAKE
        self.max_message_size = max_message_size
        self.max_frames = max_frames
        self._handshake = UpgradeReader(max_request_size)
        self._ws: Connection | None = None
        self._parts: list[bytes | str] = []  # the message's non-empty parts so far
        self._size = 0  # its bytes so far
        self._frames = 0  # its frames so far (empty ones too)
        self._text = False
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        #: Where each frame in the queue ends (as a count of :attr:`bytes_queued`), and
        #: where the one being written began: a pong may go out only between frames.
        self._frame_ends: deque[int] = deque()
        self._frame_start = 0
        #: The pong owed for the most recent unanswered ping (it replaces an older one),
        #: and the pong being written, if any.
        self._pong: bytes | None = None
        self._pong_out: memoryview | None = None
        #: After a pong, a frame of the queue goes first (pongs never starve the queue).
        self._queue_turn = False
        #: Bytes of the queue (every frame but pongs) queued and written since the
        #: connection opened: marks for pings and the close; what the socket accepts of
        #: them is progress (§4.6). Pongs never count: a client cannot fake progress
        #: with its own pings.
        self.bytes_queued = 0
        self.bytes_sent = 0
        #: Pings received, and pongs written (fewer: one per unanswered ping at most).
        self.pings_received = 0
        self.pongs_sent = 0
        self.pong_bytes_sent = 0

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> list[WireEvent]:
        """Feed bytes the client sent (``b""``: it closed its side) and return the events.

        Raises :class:`~libp2p_introspection.server.handshake.HandshakeRefused` for a
        request that is not a valid upgrade (answer it with :meth:`reject`). Never raises
        for bytes after the handshake: a fault there is a :class:`ProtocolViolation`.
        Bytes after ``DONE`` are ignored.
        """
        if self.state is WireState.HANDSHAKE:
            return self._receive_request(data)
        if self.state is WireState.DONE or self._ws is None:
            return []
        if not data:
            # The client's side is gone without a close frame (RFC 6455 §7.1.5: 1006).
            self._done()
            return [ClosedByPeer(CLOSE_ABNORMAL, "the client closed the TCP connection")]
        self._ws.receive_data(data)
        return self._frame_events()

    def _receive_request(self, data: bytes) -> list[WireEvent]:
        request = self._handshake.receive_data(data)
        if self._handshake.client_left:
            self._done()  # the client left before its request was whole
            return [ClosedByPeer(CLOSE_ABNORMAL, "the client closed the TCP connection")]
        return [] if request is None else [request]

    def _frame_events(self) -> list[WireEvent]:
        assert self._ws is not None
        events: list[WireEvent] = []
        for event in self._ws.events():
            if isinstance(event, (BytesMessage, TextMessage)):
                message = self._message_part(event)
                if isinstance(message, MessageTooBig):
                    self._done()
                    events.append(message)
                    return events
                if message is not None:
                    events.append(message)
            elif isinstance(event, Ping):
                self.pings_received += 1
                if self._ws.state is ConnectionState.OPEN and self.state is WireState.OPEN:
                    # Owed, not queued: a newer ping replaces the answer to an older one.
                    self._pong = _pong_frame(bytes(event.payload))
            elif isinstance(event, Pong):
                events.append(PongReceived(bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                events.append(self._close_event(event))
                return events
        return events

    def _message_part(
        self, event: BytesMessage | TextMessage
    ) -> MessageReceived | MessageTooBig | None:
        if self.state is not WireState.OPEN:
            return None  # we are closing: what the client still sends is not read
        data = event.data
        self._size += len(data) if isinstance(data, (bytes, bytearray)) else len(data.encode())
        if event.frame_finished:  # a large frame arrives in several parts: one frame
            self._frames += 1
        if self._size > self.max_message_size:
            return MessageTooBig(self._size, self._frames)
        if self._frames > self.max_frames:
            return MessageTooBig(self._size, self._frames, self.max_frames)
        if data:  # an empty part adds nothing but a list slot
            self._parts.append(bytes(data) if isinstance(data, (bytes, bytearray)) else data)
        self._text = isinstance(event, TextMessage)
        if not event.message_finished:
            return None
        parts, self._parts, self._size, self._frames = self._parts, [], 0, 0
        if self._text:
            return MessageReceived("".join(p for p in parts if isinstance(p, str)))
        return MessageReceived(b"".join(p for p in parts if isinstance(p, bytes)))

    def _close_event(self, event: CloseConnection) -> WireEvent:
        assert self._ws is not None
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The client starts the closing handshake: answer with its code (§5.5.1).
            self._queue(self._ws.send(event.response()))
            self._done()
            return ClosedByPeer(event.code, event.reason or "")
        if state is ConnectionState.CLOSED:
            self._done()  # the client answered our close frame
            return ClosedByPeer(event.code, event.reason or "")
        # wsproto reports a frame it cannot parse as a close event while the
        # connection stays open: that is the client breaking the protocol.
        self._done()
        return ProtocolViolation(event.code, event.reason or "protocol error")

    # --------------------------------------------------------------- output

    def accept(self) -> None:
        """Queue the 101 response (no extension, no subprotocol); frames may follow."""
        handshake = self._handshake
        if self.state is not WireState.HANDSHAKE or not isinstance(
            handshake.request, UpgradeRequested
        ):
            raise RuntimeError("accept() needs a pending upgrade request")
        self._queue(accept_response(handshake.key))
        trailing = handshake.trailing_data()  # frames the client sent before our 101
        self._ws = Connection(ConnectionType.SERVER)
        self.state = WireState.OPEN
        if trailing:
            self._ws.receive_data(trailing)

    def pending_events(self) -> list[WireEvent]:
        """Events from bytes that arrived with the upgrade request (call after :meth:`accept`)."""
        if self._ws is None or self.state is WireState.DONE:
            return []
        return self._frame_events()

    def reject(self, status: int, body: str) -> None:
        """Queue an HTTP refusal (``status``, a plain-text ``body``); then close the socket."""
        if self.state is not WireState.HANDSHAKE:
            raise RuntimeError("reject() is for the handshake only")
        self._queue(refusal_response(status, body))
        self._done()

    def send_binary(self, data: bytes) -> bool:
        """Queue one binary message (a single unmasked frame, RFC 6455 §5.2); ``False``
        (nothing queued) unless the connection is ``OPEN``.

        A payload of :data:`COALESCE_BELOW` bytes or more is queued as is, not copied
        (the same snapshot bytes serve every session), behind its header; a smaller one
        is queued as one buffer with its header, so that the socket takes the frame in
        one write (the buffer is built once for every session that sends the same
        payload object in a row: an event fanned out).
        """
        if self.state is not WireState.OPEN:
            return False
        size = len(data)
        if size < COALESCE_BELOW:
            self._queue(_small_frame(data))
            return True
        self._queue(_binary_header(size), frame_end=False)
        self._queue(data)
        return True

    def send_ping(self, payload: bytes) -> int | None:
        """Queue a ping; returns the byte mark (see :attr:`bytes_sent`) past which it is
        written, or ``None`` (nothing queued) unless the connection is ``OPEN``."""
        if self.state is not WireState.OPEN or self._ws is None:
            return None
        self._queue(self._ws.send(Ping(payload=payload)))
        return self.bytes_queued

    def close(self, code: int, reason: str) -> bool:
        """Start the closing handshake with ``code`` and ``reason`` (cut to 123 bytes);
        ``True`` if the close frame was queued.

        After a protocol violation the close frame is the last thing read or written
        (``DONE``); otherwise the client's answer is awaited (``CLOSE_SENT``). A no-op
        (``False``) once a close frame was queued or received, and before the handshake.
        """
        ws = self._ws
        if ws is None or ws.state is not ConnectionState.OPEN:
            return False
        encoded = reason.encode("utf-8")[:_MAX_CLOSE_REASON].decode("utf-8", "ignore")
        self._queue(ws.send(CloseConnection(code=code, reason=encoded)))
        self._pong = None  # nothing but the close frame is owed now (§5.5.1)
        if self.state is WireState.OPEN:
            self.state = WireState.CLOSE_SENT
        return True

    def lost(self) -> None:
        """The socket failed (reset, broken pipe): nothing more can be read or written."""
        self._done()
        self._out.clear()
        self._out_bytes = 0
        self._frame_ends.clear()
        self._pong = self._pong_out = None

    @property
    def has_data_to_send(self) -> bool:
        """Whether bytes are queued or a pong is owed."""
        return self._out_bytes > 0 or self._pong_out is not None or self._pong is not None

    @property
    def backlog(self) -> int:
        """Bytes waiting for the socket: the queue's, plus the pongs being written and
        owed (together at most twice :data:`MAX_PONG_FRAME`)."""
        pongs = (len(self._pong_out) if self._pong_out is not None else 0) + len(self._pong or b"")
        return self._out_bytes + pongs

    @property
    def pong_owed(self) -> bool:
        """Whether a ping is unanswered (its pong owed or being written)."""
        return self._pong is not None or self._pong_out is not None

    @property
    def pong_due(self) -> bool:
        """Whether the owed pong would be the next bytes of :meth:`data_to_send`: at a
        frame boundary, and not right after another pong while the queue waits."""
        return (
            self._pong is not None
            and self._pong_out is None
            and self.at_boundary
            and not (self._queue_turn and self._out_bytes)
        )

    @property
    def writing_pong(self) -> bool:
        """Whether :meth:`data_to_send` returns (the rest of) a pong."""
        return self._pong_out is not None

    @property
    def at_boundary(self) -> bool:
        """Whether no frame is partly written: the next byte starts a frame."""
        if self._pong_out is not None:
            return False
        return not self._out_bytes or self.bytes_sent == self._frame_start

    def data_to_send(self) -> memoryview:
        """The next bytes to write (possibly only part of what is queued); empty if none.

        At a frame boundary the owed pong comes first (it is then being written, and
        must be finished before anything else: call :meth:`sent` for what the socket
        accepted of exactly these bytes)."""
        if self._pong_out is None and self.pong_due:
            assert self._pong is not None
            self._pong_out, self._pong = memoryview(self._pong), None
        if self._pong_out is not None:
            return self._pong_out
        return self._out[0] if self._out else memoryview(b"")

    def sent(self, count: int) -> None:
        """The socket accepted the first ``count`` bytes of :meth:`data_to_send`
        (at most what it returned: after :meth:`lost` nothing is queued)."""
        pong = self._pong_out
        if pong is not None:
            count = min(count, len(pong))
            self.pong_bytes_sent += count
            if count < len(pong):
                self._pong_out = pong[count:]
                return
            self._pong_out = None
            self.pongs_sent += 1
            self._queue_turn = True
            return
        count = min(count, self._out_bytes)
        self.bytes_sent += count
        self._out_bytes -= count
        ends = self._frame_ends
        while ends and ends[0] <= self.bytes_sent:
            self._frame_start = ends.popleft()
            self._queue_turn = False
        while count:
            head = self._out[0]
            if count < len(head):
                self._out[0] = head[count:]
                return
            count -= len(head)
            self._out.popleft()

    # ----------------------------------------------------------------- misc

    def _queue(self, data: bytes | bytearray, *, frame_end: bool = True) -> None:
        if data:
            if not self._out_bytes:
                self._frame_start = self.bytes_sent
            self._out.append(memoryview(data))
            self._out_bytes += len(data)
            self.bytes_queued += len(data)
            if frame_end:
                self._frame_ends.append(self.bytes_queued)

    def _done(self) -> None:
        self.state = WireState.DONE
        self._parts, self._size, self._frames = [], 0, 0
        self._pong = None  # owed, not queued: nothing more is answered


def _binary_header(size: int) -> bytes:
    """The header of an unmasked, final binary frame of ``size`` bytes (RFC 6455 §5.2)."""
    if size < 126:
        return struct.pack("!BB", 0x82, size)
    if size < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, size)
    return struct.pack("!BBQ", 0x82, 127, size)


# The last small frame built, and the payload object it frames: a fan-out hands the
# same payload to every session in turn, and each gets the same frame bytes.
_last_small: tuple[bytes, bytes] = (b"", _binary_header(0))


def _small_frame(data: bytes) -> bytes:
    """``data`` framed as one binary message (header and payload in one buffer)."""
    global _last_small
    payload, frame = _last_small
    if payload is data:
        return frame
    frame = _binary_header(len(data)) + data
    _last_small = (data, frame)
    return frame


def _pong_frame(payload: bytes) -> bytes:
    """An unmasked pong frame echoing ``payload`` (a ping's, at most 125 bytes)."""
    return struct.pack("!BB", 0x8A, len(payload)) + payload
