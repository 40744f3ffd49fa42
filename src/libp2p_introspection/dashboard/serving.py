"""Serve an ASGI app on trio with hypercorn's HTTP/WebSocket protocol, sends bounded in time.

Why not ``hypercorn.trio.serve``: hypercorn writes to a connection inside a
shielded cancel scope (``TCPServer.protocol_send``), so a browser that stops
reading (a suspended tab, a hostile page) blocks that write for ever: no
timeout or cancellation reaches it, and Ctrl-C then waits on it for ever.
This module runs hypercorn's own per-connection ``TCPServer`` on listeners we
open, over a stream wrapper whose ``send_all`` has its own deadline and can be
cancelled at shutdown (an inner cancel scope still fires inside an outer
shield). A peer that accepts nothing for ``send_timeout_s`` is disconnected.

One connection never takes the others down: whatever error escapes
hypercorn's handling of a connection (a protocol error, a bug) is logged
and that connection closed; it never reaches the listeners' nursery.

Incoming WebSocket messages are bounded by ``websocket_max_message_size``
(:func:`hypercorn_config`). Hypercorn answers a message over it with a 1009
close but keeps buffering what follows, and writes the next message into
the same buffer (a text frame after an oversized binary message raised
``TypeError``); :class:`DroppingWebsocketBuffer`, installed in hypercorn's
WebSocket stream on import, drops everything after the overflow instead.
Hypercorn then also kept reading and parsing whatever the peer went on
sending; :func:`_guarded_ws_handle`, installed in place of
``WSStream.handle``, reads nothing more from a connection that overflowed
and closes it right after the 1009 close frame. It also ends a connection
whose client sends frames before the 101 answer (RFC 6455 §4.1 forbids it):
hypercorn answered those with a 400 while the page's handler accepted,
and the two raced into h11 errors logged with tracebacks, one per client.

The ``/feed`` WebSocket negotiates no compression: hypercorn accepts every
``permessage-deflate`` offer and inflates each frame whole before any size
check, so a small compressed message could make it allocate without bound
(a 64 KiB frame inflating to hundreds of MB) and hold the event loop while
it did. The feed runs on loopback and the page sends nothing, so
:class:`DeclinedPerMessageDeflate`, installed in hypercorn's handshake,
declines every offer; a peer that compresses anyway (RSV1 set) is closed
with 1002 by wsproto before any inflating.

An HTTP answer's ``send`` runs to its end even when the app cancels it
(:class:`CompleteSends`). Hypercorn (0.18 reports ASGI ``spec_version``
2.1) does a connection's end-of-answer bookkeeping inside the app's last
``send``: it posts ``http.disconnect`` to the app, then starts the
keep-alive idle timer (or, after ``Connection: close``, closes the
connection). Below spec 2.4 Starlette's ``StreamingResponse`` and
``FileResponse`` run a second task waiting for that ``http.disconnect``,
which cancels the sender at once, inside that bookkeeping: the timer was
never started and the close never done, so every finished download, page
or script load left its connection (and file descriptor) open for ever.
Claiming spec 2.4 instead would be false: 2.4 promises that ``send``
raises once the client is gone, and hypercorn 0.18's does not (Starlette
would then stream a whole file to nobody).

Depends on hypercorn's ``TCPServer``/``WorkerContext`` and
``protocol.ws_stream`` (``WebsocketBuffer``, ``WSStream.handle``, its use of
``PerMessageDeflate`` in the handshake; pinned ``<0.19``).
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import Data, Event, StreamClosed
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app
from wsproto.extensions import PerMessageDeflate

log = logging.getLogger(__name__)

#: A connection that accepts no bytes for this long is closed, seconds.
DEFAULT_SEND_TIMEOUT_S = 15.0
#: While stopping, how long a write may still wait (closing handshakes), seconds.
STOPPING_SEND_TIMEOUT_S = 0.5
#: Largest WebSocket message accepted from a page, bytes (the page sends none).
MAX_INCOMING_MESSAGE_BYTES = 64 * 1024


class DroppingWebsocketBuffer(ws_stream.WebsocketBuffer):
    """Hypercorn's message buffer, except that nothing is kept once a message is too large.

    After the first overflow (hypercorn then sends a 1009 close) every later
    piece of data raises ``FrameTooLargeError`` again without being stored,
    so the peer can neither grow the buffer nor mix a text message into a
    binary one (or the reverse) while the connection closes.
    """

    def __init__(self, max_length: int) -> None:
        super().__init__(max_length)
        self.overflowed = False

    def extend(self, event: Any) -> None:
        if self.overflowed:
            raise ws_stream.FrameTooLargeError()
        try:
            super().extend(event)
        except ws_stream.FrameTooLargeError:
            self.overflowed = True
            self.value = None
            raise


ws_stream.WebsocketBuffer = DroppingWebsocketBuffer  # type: ignore[misc]


class DeclinedPerMessageDeflate(PerMessageDeflate):
    """``permessage-deflate`` as hypercorn's handshake sees it: every offer declined.

    The answer then carries no ``Sec-WebSocket-Extensions`` and the extension
    stays disabled, so wsproto refuses compressed frames (close 1002)
    instead of inflating them.
    """

    def accept(self, offer: str) -> None:
        return None


ws_stream.PerMessageDeflate = DeclinedPerMessageDeflate  # type: ignore[misc]

_hypercorn_ws_handle = ws_stream.WSStream.handle


async def _guarded_ws_handle(self: ws_stream.WSStream, event: Event) -> None:
    """Hypercorn's ``WSStream.handle``, ending the connection of a peer that misbehaves.

    - Data before the handshake is answered: the stream ends at once (the
      page's handler gets its disconnect; no 400 races its accept).
    - Once :class:`DroppingWebsocketBuffer` overflowed (hypercorn has sent
      the 1009 close), the stream ends and any data still coming is never
      parsed.

    Ending the stream closes the TCP connection (hypercorn's own path for a
    finished stream).
    """
    if self.closed:
        return
    if isinstance(event, Data):
        early = self.state == ws_stream.ASGIWebsocketState.HANDSHAKE and not self.handshake.accepted
        if early or getattr(self.buffer, "overflowed", False):
            if early:
                log.info("closing a dashboard WebSocket that sent data before its handshake")
            await self.send(StreamClosed(stream_id=self.stream_id))
            return
    await _hypercorn_ws_handle(self, event)
    if getattr(self.buffer, "overflowed", False) and not self.closed:
        log.info("closing a dashboard WebSocket that sent an oversized message")
        await self.send(StreamClosed(stream_id=self.stream_id))


ws_stream.WSStream.handle = _guarded_ws_handle  # type: ignore[method-assign]


class PendingSends:
    """The writes in progress on every connection, so that stopping can abandon them."""

    def __init__(self) -> None:
        self.scopes: set[trio.CancelScope] = set()
        self.stopping = False

    def stop(self) -> None:
        """Abandon every pending write; later ones get :data:`STOPPING_SEND_TIMEOUT_S`."""
        self.stopping = True
        for scope in list(self.scopes):
            scope.cancel()


class BoundedSendStream(trio.abc.HalfCloseableStream):
    """A ``SocketStream`` whose writes give up after ``send_timeout_s`` or at shutdown.

    A write that gives up closes the connection and raises
    ``trio.BrokenResourceError`` (hypercorn then treats the peer as gone).
    """

    def __init__(self, stream: trio.SocketStream, send_timeout_s: float,
                 sends: PendingSends) -> None:  # fmt: skip
        self._stream = stream
        self._send_timeout_s = send_timeout_s
        self._sends = sends
        #: The socket, which hypercorn reads the addresses from.
        self.socket = stream.socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        timeout = STOPPING_SEND_TIMEOUT_S if self._sends.stopping else self._send_timeout_s
        with trio.move_on_after(timeout) as scope:
            self._sends.scopes.add(scope)
            try:
                await self._stream.send_all(data)
                return
            finally:
                self._sends.scopes.discard(scope)
        log.info("closing a dashboard connection that stopped reading")
        self._stream.socket.close()
        raise trio.BrokenResourceError("the peer stopped reading")

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class CompleteSends:
    """ASGI wrapper: an HTTP ``send`` is never cancelled halfway by the app (module doc).

    Each ``send`` of an HTTP answer runs in a shielded cancel scope, so a
    cancellation from the app (Starlette's disconnect listener) lands at the
    app's next checkpoint, after hypercorn has finished the message and its
    bookkeeping. The send stays bounded: its writes by
    :class:`BoundedSendStream`, and stopping cancels it like a pending write
    (``sends``, :meth:`PendingSends.stop`).
    """

    def __init__(self, app: Any, sends: PendingSends) -> None:
        self.app = app
        self.sends = sends

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sends = self.sends

        async def complete_send(message: Any) -> None:
            with trio.CancelScope(shield=True) as cancel_scope:
                if sends.stopping:
                    cancel_scope.deadline = trio.current_time() + STOPPING_SEND_TIMEOUT_S
                sends.scopes.add(cancel_scope)
                try:
                    await send(message)
                finally:
                    sends.scopes.discard(cancel_scope)
            # The cancellation held off (the app's own, or stopping) takes effect now.
            await trio.lowlevel.checkpoint_if_cancelled()

        await self.app(scope, receive, complete_send)


def hypercorn_config() -> Config:
    """Hypercorn's settings for the dashboard: quiet logs, small WebSocket messages in."""
    config = Config()
    config.accesslog = None
    config.loglevel = "WARNING"
    config.websocket_max_message_size = MAX_INCOMING_MESSAGE_BYTES
    return config


async def serve_asgi(
    app: Any,
    host: str,
    port: int,
    *,
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
    config: Config | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``task_status.started(port)`` once bound.

    Raises ``OSError`` when the port cannot be bound. On cancellation every
    pending write is abandoned at once, so stopping never waits on a peer.
    """
    config = config or hypercorn_config()
    sends = PendingSends()
    wrapped = wrap_app(CompleteSends(app, sends), config.wsgi_max_body_size, "asgi")
    context = WorkerContext(None)
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def handle(stream: trio.SocketStream) -> None:
        bounded = BoundedSendStream(stream, send_timeout_s, sends)
        try:
            peer = stream.socket.getpeername()
        except OSError:
            peer = "?"
        try:
            await TCPServer(wrapped, config, context, {}, bounded)  # type: ignore[arg-type]
        except Exception:
            _log_connection_error(peer)
        except BaseExceptionGroup as group:  # errors with a Cancelled: log those, let it go on
            errors, rest = group.split(Exception)
            if errors is not None:
                _log_connection_error(peer, errors)
            if rest is not None:
                raise rest from None
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    try:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(trio.serve_listeners, handle, listeners)
                task_status.started(listeners[0].socket.getsockname()[1])
                await trio.sleep_forever()
            finally:
                sends.stop()
    finally:
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()


def _log_connection_error(peer: Any, error: BaseException | None = None) -> None:
    log.warning("dashboard connection from %s failed; closed it", peer,
                exc_info=error if error is not None else True)  # fmt: skip
