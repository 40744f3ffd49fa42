"""The WebSocket endpoint: thin trio-websocket adapter around the session state machine.

One nursery for the server (snapshot clock, timer, listener), one per
session (reader and writer, which live and die together). Sessions share
nothing but the snapshot bytes (§4.9): the node and the clock only call the
synchronous :class:`~libp2p_introspection.server.hub.Hub`, which never waits.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
)

from libp2p_introspection import config as defaults
from libp2p_introspection.abc import IntrospectionSource
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import HEADER_SIZE, MAX_COMMAND_SIZE, payload_kind
from libp2p_introspection.protocol.session import (
    CLOSE_POLICY_VIOLATION,
    Close,
    SessionLimits,
    SessionStats,
)
from libp2p_introspection.server.admission import admit, is_loopback
from libp2p_introspection.server.hub import Hub, SessionHandle

log = logging.getLogger(__name__)

#: Seconds to wait for a client's side of the closing handshake.
CLOSE_TIMEOUT_S = 2.0
#: Close code when the server (or the node it serves) stops.
CLOSE_GOING_AWAY = 1001
#: Close code when handling a session's input failed on our side.
CLOSE_INTERNAL_ERROR = 1011


@dataclass(frozen=True, slots=True)
class ClosedSession:
    """A finished session: who, why it was closed by the server (``None`` if the client
    left or the server stopped), its counters, and the frames written per payload kind."""

    peer: str
    close: Close | None
    stats: SessionStats
    sent: Counter[str]


@dataclass(frozen=True)
class ServerConfig:
    """Options of the introspection server (CLI flags of ``serve``).

    ``host``/``port``: where to listen (127.0.0.1 and
    :data:`~libp2p_introspection.config.DEFAULT_PORT` by default; port 0 picks a free one).
    ``interval_ms``: the base snapshot interval, ms.
    The rest are the session limits of PROTOCOL.md §4 (see ``SessionLimits``),
    and admission: ``max_sessions``, ``allowed_origins`` (besides loopback ones),
    ``token`` (required from every client when set), ``allow_remote`` (needed
    to bind a non-loopback address; ``ValueError`` otherwise); liveness:
    ``ping_interval_s``/``pong_timeout_s`` and ``handshake_timeout_s``.
    ``closed_connection_lifetime_ms`` is applied by sources that track
    connections (the host introspector).
    """

    host: str = defaults.DEFAULT_HOST
    port: int = defaults.DEFAULT_PORT
    interval_ms: int = defaults.DEFAULT_INTERVAL_MS
    closed_connection_lifetime_ms: int = defaults.DEFAULT_CLOSED_CONNECTION_LIFETIME_MS
    max_retention_ms: int = defaults.DEFAULT_MAX_RETENTION_MS
    push_byte_budget: int = defaults.DEFAULT_PUSH_BYTE_BUDGET
    queue_bound: int = defaults.DEFAULT_QUEUE_BOUND
    write_timeout_s: float = defaults.DEFAULT_WRITE_TIMEOUT_S
    max_command_size: int = MAX_COMMAND_SIZE
    max_sessions: int = defaults.DEFAULT_MAX_SESSIONS
    commands_per_second: float = defaults.DEFAULT_COMMANDS_PER_SECOND
    command_burst: int = defaults.DEFAULT_COMMAND_BURST
    ping_interval_s: float = defaults.DEFAULT_PING_INTERVAL_S
    pong_timeout_s: float = defaults.DEFAULT_PONG_TIMEOUT_S
    handshake_timeout_s: float = defaults.DEFAULT_HANDSHAKE_TIMEOUT_S
    allow_remote: bool = False
    allowed_origins: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)
    limits: SessionLimits = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "limits",
            SessionLimits(
                base_interval_ms=self.interval_ms,
                max_retention_ms=max(self.max_retention_ms, self.interval_ms),
                push_byte_budget=self.push_byte_budget,
                queue_bound=self.queue_bound,
                write_timeout_s=self.write_timeout_s,
                max_command_size=self.max_command_size,
                commands_per_second=self.commands_per_second,
                command_burst=self.command_burst,
            ),
        )
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"refusing to bind {self.host}: it is not a loopback address, and the endpoint "
                "exposes the node's peers, addresses and traffic; pass allow_remote=True "
                "(--allow-remote) to do it anyway"
            )


class IntrospectionServer:
    """Serves one :class:`~libp2p_introspection.abc.IntrospectionSource` on ``ws://HOST:PORT/introspect``.

    Start it with ``await nursery.start(server.run)``; once started,
    :attr:`url` is the address clients connect to. Errors of one session
    (a vanished client, a broken socket) end that session only.
    """

    def __init__(self, source: IntrospectionSource, config: ServerConfig | None = None) -> None:
        self.source = source
        self.config = config or ServerConfig()
        self.hub = Hub(self.config.limits, source.runtime())
        self.sessions_served = 0
        self.snapshot_errors = 0
        self.refused = 0
        self._admitted = 0  # sessions accepted or being accepted (the limit counts these)
        #: What the most recent closed sessions did (for logs and tests); their
        #: buffers are gone with them.
        self.closed_sessions: deque[ClosedSession] = deque(maxlen=64)
        self._listener: WebSocketServer | None = None
        self._bound: list[trio.SocketListener] | None = None

    async def bind(self) -> list[trio.SocketListener]:
        """Open the listening sockets now (``OSError`` if the address is taken or not
        ours); :meth:`run` then serves on them."""
        self._bound = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        return self._bound

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        if self._listener is None:
            raise RuntimeError("the server is not listening yet")
        return self._listener.port

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/introspect`` of the running server."""
        return defaults.default_url(self.config.host, self.port)

    async def run(
        self, *, task_status: trio.TaskStatus[IntrospectionServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind (unless :meth:`bind` already did), take the first snapshot, and serve
        until cancelled. Raises ``OSError`` (not wrapped) if the address cannot be bound.
        """
        listeners = self._bound or await self.bind()
        self._bound = None
        self.source.set_event_sink(self.hub.publish_event)
        try:
            async with trio.open_nursery() as nursery:
                if not self.source.clocks_snapshots:
                    self._take_snapshot()  # §4.1: there is always a latest snapshot
                    nursery.start_soon(self._snapshot_clock)
                # A self-clocked source publishes its first snapshot before it starts.
                await nursery.start(self.source.run, self.hub)
                listener = WebSocketServer(
                    self._handle,
                    listeners,
                    handler_nursery=nursery,
                    message_queue_size=4,
                    max_message_size=self.config.max_command_size,
                    connect_timeout=self.config.handshake_timeout_s,
                    disconnect_timeout=CLOSE_TIMEOUT_S,
                )
                self._listener = await nursery.start(listener.run)
                nursery.start_soon(self._timer)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.source.set_event_sink(None)
            self.hub.close_all()
            for socket_listener in listeners:
                with trio.CancelScope(shield=True):
                    await socket_listener.aclose()

    # ------------------------------------------------------------ server tasks

    def _take_snapshot(self) -> None:
        try:
            state = self.source.encoded_state()
        except Exception:
            # A source fault must not stop the clock or the server: keep the
            # previous snapshot as the latest and try again next tick.
            self.snapshot_errors += 1
            log.exception("the source failed to build a snapshot")
            if self.hub.latest is None:
                self.hub.publish_state(pb.State())
            return
        self.hub.publish_encoded_state(state)

    async def _snapshot_clock(self) -> None:
        interval = self.config.interval_ms / 1000
        deadline = trio.current_time()
        while True:
            deadline += interval
            now = trio.current_time()
            if deadline < now:  # we fell behind (a long GC, a slow source): skip, don't burst
                deadline = now + interval
            await trio.sleep_until(deadline)
            self._take_snapshot()

    async def _timer(self) -> None:
        period = max(0.05, min(1.0, self.config.write_timeout_s / 4))
        while True:
            await trio.sleep(period)
            self.hub.tick()

    # ------------------------------------------------------------- one session

    async def _handle(self, request: WebSocketRequest) -> None:
        path = urlsplit(request.path).path
        if path != defaults.PATH:
            await request.reject(404, body=f"no endpoint at {path}; use {defaults.PATH}\n".encode())
            return
        refusal = admit(
            request.path,
            request.headers,
            token=self.config.token,
            allowed_origins=self.config.allowed_origins,
            sessions=self._admitted,
            max_sessions=self.config.max_sessions,
        )
        if refusal is not None:
            self.refused += 1
            log.warning(
                "refused %s: %s (HTTP %d)", _describe(request), refusal.reason, refusal.status
            )
            await request.reject(refusal.status, body=f"{refusal.reason}\n".encode())
            return
        # Counted from here, not from the session's start: concurrent handshakes
        # must not all pass the limit while each is still being accepted.
        self._admitted += 1
        try:
            ws = await request.accept()
        except BaseException:
            self._admitted -= 1
            raise
        peer = _describe(ws)
        handle = self.hub.open_session(peer)
        self.sessions_served += 1
        log.info("session opened: %s", peer)
        try:
            with trio.CancelScope() as scope:
                handle.cancel_scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader, ws, handle, nursery.cancel_scope)
                    nursery.start_soon(self._writer, ws, handle, nursery.cancel_scope)
                    nursery.start_soon(self._pinger, ws, handle)
        finally:
            self._admitted -= 1
            self.hub.close_session(handle)
            session_close = handle.session.close
            close = session_close or Close(CLOSE_GOING_AWAY, "introspection server stopping")
            with trio.move_on_after(CLOSE_TIMEOUT_S) as cleanup:
                cleanup.shield = True
                await ws.aclose(close.code, close.reason)  # a no-op if the client closed first
            self.closed_sessions.append(
                ClosedSession(peer, session_close, handle.session.stats, handle.sent)
            )
            log.info(
                "session closed: %s (%s); sent %s",
                peer,
                _closed_reason(ws),
                dict(handle.sent),
            )

    async def _pinger(self, ws: WebSocketConnection, handle: SessionHandle) -> None:
        # A session whose pongs stop is dead (a vanished peer, a half-open TCP
        # connection); a paused client still answers pings and stays.
        interval = self.config.ping_interval_s
        timeout = self.config.pong_timeout_s
        while handle.session.close is None:
            await trio.sleep(interval)
            with trio.move_on_after(timeout) as waited:
                try:
                    await ws.ping()
                except ConnectionClosed:
                    return
            if waited.cancelled_caught:
                handle.session.end(
                    CLOSE_POLICY_VIOLATION, f"no pong within {timeout:g} s: session is dead"
                )
                handle.notify()
                return

    async def _reader(
        self, ws: WebSocketConnection, handle: SessionHandle, scope: trio.CancelScope
    ) -> None:
        session = handle.session
        limits = self.config.limits
        try:
            while session.close is None:
                # Backpressure: a client that sends commands without reading the
                # answers is not read from until its queue drains (TCP pushes back).
                while session.queued_replies > limits.queue_bound:
                    await handle.wait_drained()
                message = await ws.get_message()
                now = trio.current_time()
                try:
                    if isinstance(message, bytes):
                        session.receive_command(message, now)
                    else:
                        session.receive_text(message, now)
                except Exception:
                    # A fault of ours on this input: it ends this session only (§4.9).
                    log.exception("session %s: internal error handling a command", handle.peer)
                    session.end(CLOSE_INTERNAL_ERROR, "internal error handling the command")
                handle.notify()
        except ConnectionClosed:
            pass
        scope.cancel()

    async def _writer(
        self, ws: WebSocketConnection, handle: SessionHandle, scope: trio.CancelScope
    ) -> None:
        session = handle.session
        try:
            while session.close is None:
                frame = session.next_frame()
                if frame is None:
                    await handle.wait()
                    continue
                await ws.send_message(frame)
                session.frame_sent(trio.current_time())
                handle.sent[payload_kind(memoryview(frame)[HEADER_SIZE:])] += 1
                handle.drained()
        except ConnectionClosed:
            pass
        scope.cancel()


def _describe(ws: WebSocketConnection | WebSocketRequest) -> str:
    remote = ws.remote
    return str(remote) if isinstance(remote, str) else f"{remote.address}:{remote.port}"


def _closed_reason(ws: WebSocketConnection) -> str:
    reason = ws.closed
    return f"{reason.code} {reason.reason or ''}".strip() if reason else "closed"


@asynccontextmanager
async def open_introspection_server(
    source: IntrospectionSource, config: ServerConfig | None = None
) -> AsyncIterator[IntrospectionServer]:
    """Serve ``source`` in the background for the duration of the ``async with`` block.

    Yields the running :class:`IntrospectionServer` (its :attr:`~IntrospectionServer.url`
    is ready). Raises ``OSError`` if the port cannot be bound.
    """
    server = IntrospectionServer(source, config)
    await server.bind()  # here, so that a taken port is a plain OSError
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
