"""A protocol client: connect to an introspection server, send commands, read messages.

The recorder and the dashboard backend are built on this; tests use it as the
reference client. It speaks PROTOCOL.md §2 (framed server messages, bare
commands) and §5 (the client loop is the caller's).

Being liberal in what it accepts (§2): a **text** frame, as libp2p's
observer-toolkit mock server sends, is read as the "binary string" it is
(every character one byte, Latin-1) and then checked exactly as a binary
frame (header, checksum, length; the size limit counts its characters, which
are its decoded bytes). A text frame holding a character above U+00FF is not
a binary string: the client closes the session with 1007 and raises
:class:`ProtocolError`. A ``ServerMessage.version`` that is absent means 1.

A message's size does not bound what parsing it costs (two bytes make an
empty ``Connection``), so every message is walked on the wire first
(:mod:`libp2p_introspection.protocol.wire`, in slices that yield to the event
loop): one above the client's :class:`~.wire.RecordLimits` is handed over
unparsed, marked :attr:`Received.skipped`, and never costs more than its bytes.

A message's bytes do not bound its frames either (an empty continuation frame
is 2 bytes on the wire and 0 of message): trio-websocket counts bytes only, so
its message handler is wrapped here (:func:`_counted_message_event`) to keep no
empty part and to close with 1009 a message of more frames than
:func:`max_message_frames` allows.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import h11
import trio
import wsproto.utilities
from trio_websocket import CloseReason, WebSocketConnection, open_websocket_url
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from libp2p_introspection.client.errors import ProtocolError
from libp2p_introspection.config import TOKEN_ENV, TOKEN_HEADER, RedactTokens, check_token
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.closecodes import CLOSE_INVALID_DATA, CLOSE_MESSAGE_TOO_BIG
from libp2p_introspection.protocol.framing import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_VERSION,
    FrameError,
    decode_frame,
    decode_header,
)
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits, measure_paced

#: Seconds to wait for the server's side of a closing handshake we start.
_CLOSE_TIMEOUT_S = 5.0

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source

#: Bytes of the message size limit per frame a message may take: a 64 MiB limit allows
#: 65,536 frames (servers that fragment use 4 KiB frames or more, so 16,384 at most).
BYTES_PER_FRAME = 1024
#: The start of the reason of the 1009 close for a message in too many frames.
TOO_MANY_FRAMES = "a message in more than"

# trio-websocket logs the URL it connects to (at DEBUG), query and all: never a token.
logging.getLogger("trio-websocket").addFilter(RedactTokens())


def max_message_frames(max_message_size: int) -> int:
    """The most frames one message may take under a ``max_message_size`` (bytes) limit:
    one per :data:`BYTES_PER_FRAME` bytes of it, and never fewer than 64."""
    return max(64, max_message_size // BYTES_PER_FRAME)


_trio_websocket_message_event = WebSocketConnection._handle_message_event


async def _counted_message_event(
    self: WebSocketConnection, event: BytesMessage | TextMessage
) -> None:
    """trio-websocket's message handler (0.12), counting frames as well as bytes.

    An empty part is not kept (nothing is appended for it); a message of more than
    :func:`max_message_frames` frames is closed with 1009, as trio-websocket closes
    one over its byte limit, and nothing more of it is read. The count lives on the
    connection (``_introspection_frames``; ``-1`` once it was closed for it).
    """
    frames: int = getattr(self, "_introspection_frames", 0)
    if frames < 0:
        return  # closed for its frames: what was read with it is not kept
    if event.frame_finished:  # wsproto hands out a large frame in pieces
        frames += 1
    limit = max_message_frames(self._max_message_size)
    if frames > limit:
        self._introspection_frames = -1  # type: ignore[attr-defined]
        reason = f"{TOO_MANY_FRAMES} {limit} frames"
        self._message_size = 0
        self._message_parts = []
        self._close_reason = CloseReason(CLOSE_MESSAGE_TOO_BIG, reason)
        await self._send(CloseConnection(code=CLOSE_MESSAGE_TOO_BIG, reason=reason))
        await self._recv_channel.aclose()
        self._reader_running = False
        return
    self._introspection_frames = 0 if event.message_finished else frames  # type: ignore[attr-defined]
    if event.data or event.message_finished:
        await _trio_websocket_message_event(self, event)


WebSocketConnection._handle_message_event = _counted_message_event  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class Received:
    """One message from the server: its parsed form, its raw ``ServerMessage`` bytes,
    and their FNV-1a 32 checksum (verified against the frame header).

    ``skipped``: why the message was not parsed (it holds more than the
    client's limits allow; ``message`` is then empty), ``""`` if it was;
    ``skipped_kind``: its payload kind as the wire walk saw it.
    """

    message: pb.ServerMessage
    data: bytes
    checksum: int
    skipped: str = ""
    skipped_kind: str = ""

    @property
    def kind(self) -> str:
        """``runtime``, ``state``, ``event``, ``response``, ``notice`` (``""`` if empty or
        skipped: see :attr:`skipped_kind`)."""
        return self.message.WhichOneof("payload") or ""


class IntrospectionClient:
    """One WebSocket session with an introspection server.

    Use :func:`connect`. :meth:`receive` returns the next message;
    :meth:`send` sends a command and returns the id it used. ``limits``: what
    one message may hold before it is skipped unparsed (``None``: no walk,
    every message parsed).
    """

    def __init__(
        self,
        ws: WebSocketConnection,
        max_message_size: int = MAX_MESSAGE_SIZE,
        limits: RecordLimits | None = DEFAULT_LIMITS,
    ) -> None:
        self.ws = ws
        self.max_message_size = max_message_size
        self.limits = limits
        self._ids = itertools.count(1)

    def next_command_id(self) -> int:
        """A fresh command id (for a caller that must know it before the command goes
        out, e.g. to wait for its response): never one :meth:`send` also picks."""
        return next(self._ids)

    async def send(
        self,
        command: int,
        source: int = Source.STATE,
        *,
        config: pb.Configuration | None = None,
        command_id: int | None = None,
    ) -> int:
        """Send one ``ClientCommand``; returns its id (chosen here unless given)."""
        cid = self.next_command_id() if command_id is None else command_id
        message = pb.ClientCommand(id=cid, command=command, source=source)  # type: ignore[arg-type]
        message.version.version = PROTOCOL_VERSION
        if config is not None:
            message.config.CopyFrom(config)
        await self.ws.send_message(message.SerializeToString())
        return cid

    async def ready(self) -> None:
        """Signal "ready for the next snapshot" (``REQUEST`` + ``STATE``)."""
        await self.send(Command.REQUEST, Source.STATE)

    async def receive(self) -> Received:
        """The next message. Raises :class:`ProtocolError` for a bad frame, a text frame
        that is not a binary string (after closing the session with 1007) or a message
        that is not protobuf, ``trio_websocket.ConnectionClosed`` when the server closed
        the session. A text frame holding a binary string is read as its bytes (module
        doc). A message above :attr:`limits` comes back unparsed, with
        :attr:`Received.skipped` saying why."""
        message_data = await self.ws.get_message()
        frame_kind = "frame"
        if isinstance(message_data, str):
            data = await self._binary_string(message_data)
            frame_kind = "text frame (read as a binary string)"
        else:
            data = message_data
        try:
            payload = decode_frame(data, self.max_message_size)
        except FrameError as exc:
            raise ProtocolError(f"bad {frame_kind} from server: {exc}") from exc
        checksum = decode_header(data, self.max_message_size).checksum  # verified above
        if self.limits is not None:
            counts = await measure_paced(payload, self.limits, trio.lowlevel.checkpoint)
            if counts.malformed:
                raise ProtocolError(f"server message does not parse: {counts.malformed}")
            if counts.over_limit:
                reason = (
                    f"a {counts.kind or 'message'} of {len(payload):,} bytes holds "
                    f"{counts.over_limit}"
                )
                return Received(pb.ServerMessage(), payload, checksum, reason, counts.kind)
        message = pb.ServerMessage()
        try:
            message.ParseFromString(payload)
        except Exception as exc:  # DecodeError, or RecursionError on hostile nesting
            raise ProtocolError(f"server message does not parse: {exc}") from exc
        return Received(message, payload, checksum)

    async def _binary_string(self, text: str) -> bytes:
        """The bytes a text frame spells, one per character (§2); a character above
        U+00FF closes the session with 1007 and raises :class:`ProtocolError`."""
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError as exc:
            char = text[exc.start]
            reason = "text frame is not a binary string: a character above U+00FF"
            with trio.move_on_after(_CLOSE_TIMEOUT_S):
                await self.ws.aclose(CLOSE_INVALID_DATA, reason)
            raise ProtocolError(
                f"server sent a {reason} (U+{ord(char):04X} at character {exc.start:,}); "
                f"closed the session with {CLOSE_INVALID_DATA}"
            ) from None

    async def receive_kind(self, kind: str, *, limit: int = 10_000) -> Received:
        """Read until a message of ``kind`` arrives (at most ``limit`` messages); one
        skipped for the limits counts (check :attr:`Received.skipped`)."""
        for _ in range(limit):
            received = await self.receive()
            if received.kind == kind or received.skipped_kind == kind:
                return received
        raise ProtocolError(f"no {kind} message in {limit} messages")

    async def aclose(self) -> None:
        """Close the session (1000)."""
        await self.ws.aclose()


@asynccontextmanager
async def connect(
    url: str,
    *,
    token: str | None = None,
    max_message_size: int = MAX_MESSAGE_SIZE,
    connect_timeout: float = 10.0,
    limits: RecordLimits | None = DEFAULT_LIMITS,
) -> AsyncIterator[IntrospectionClient]:
    """Open a session with the server at ``url`` (``ws://HOST:PORT/introspect``).

    ``token`` is sent in the ``X-Introspection-Token`` header when the server
    requires one (default: the ``LIBP2P_INTROSPECTION_TOKEN`` environment
    variable, if set). Raises ``OSError`` / ``trio_websocket.HandshakeError``
    when it cannot connect (a refused token or origin is a ``HandshakeError``
    with the HTTP status). The client's message size limit is raised to 64 MiB
    (WebSocket libraries default to 1 MiB; big snapshots are several MB).
    ``ValueError`` for a token that cannot go in a header (its message never
    shows the token; see :func:`libp2p_introspection.config.check_token`).
    ``limits``: see :class:`IntrospectionClient`.
    """
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    token = check_token(token)
    headers = [(TOKEN_HEADER.encode(), token.encode())] if token else None
    try:
        async with open_websocket_url(
            url,
            extra_headers=headers,
            max_message_size=max_message_size,
            connect_timeout=connect_timeout,
            disconnect_timeout=5.0,
            message_queue_size=16,
        ) as ws:
            yield IntrospectionClient(ws, max_message_size, limits)
    except* (h11.ProtocolError, wsproto.utilities.ProtocolError) as group:
        # trio-websocket lets HTTP and WebSocket parse errors of a server's answer
        # (a wrong Sec-WebSocket-Accept, an extension never offered, garbage, a
        # malformed body) escape from its reader task; they are the server's fault.
        first = _first_leaf(group)
        raise ProtocolError(
            f"the server's answer is not valid HTTP/WebSocket: {_one_line(str(first))}"
        ) from None


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
