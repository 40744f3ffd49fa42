"""The WebSocket endpoint: a thin trio adapter around the session state machine.

One nursery for the server (snapshot clock, timer, listener), one task per TCP
connection, and inside it one nursery per session (reader, writer, pinger,
which live and die together). Sessions share nothing but the snapshot bytes
(§4.9): the node and the clock only call the synchronous
:class:`~libp2p_introspection.server.hub.Hub`, which never waits. Nothing
raised by or about one connection leaves that connection's task (see
:meth:`IntrospectionServer._connection`).

Every task of the server runs KI-protected (``trio.lowlevel.enable_ki_protection``):
a Ctrl-C in the application that hosts it reaches the application's main task at
a checkpoint, never the middle of a statement here. Landing between a socket
write and the wire's bookkeeping, it made the close path write part of a frame
again, and a client read a corrupt stream instead of the server's 1001.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio
from trio.lowlevel import enable_ki_protection

from libp2p_introspection import config as defaults
from libp2p_introspection.abc import IntrospectionSource
from libp2p_introspection.protocol.admission import Refusal, admit
from libp2p_introspection.protocol.closecodes import CLOSE_GOING_AWAY
from libp2p_introspection.protocol.session import (
    Close,
    SessionStats,
)
from libp2p_introspection.server.config import ServerConfig
from libp2p_introspection.server.hub import Hub
from libp2p_introspection.server.session_io import SessionHandle, serve_session
from libp2p_introspection.server.websocket import WebSocketTransport, describe_peer
from libp2p_introspection.server.wire import (
    PlainRequest,
    UpgradeRequested,
)

log = logging.getLogger(__name__)

#: Seconds to wait for a client's side of the closing handshake.
CLOSE_TIMEOUT_S = 2.0
#: Connections evicted for the handshake limit are summarized in one log line at
#: most this often, seconds (each is logged at DEBUG).
SHED_LOG_INTERVAL_S = 10.0


@enable_ki_protection
async def _run_protected(
    run: Callable[..., Awaitable[None]], *args: object, task_status: trio.TaskStatus[Any]
) -> None:
    """Run a source's task shielded from a ``KeyboardInterrupt`` raised mid-statement."""
    await run(*args, task_status=task_status)


@dataclass(frozen=True, slots=True)
class ClosedSession:
    """A finished session: who, why it was closed by the server (``None`` if the client
    left or the server stopped), its counters, the frames written per payload kind, and
    how the connection ended (the words of the "session closed" log line)."""

    peer: str
    close: Close | None
    stats: SessionStats
    sent: Counter[str]
    ended: str = ""


class IntrospectionServer:
    """Serves one :class:`~libp2p_introspection.abc.IntrospectionSource` on ``ws://HOST:PORT/introspect``.

    Start it with ``await nursery.start(server.run)``; once started,
    :attr:`url` is the address clients connect to. Errors of one connection
    (a vanished client, a reset, a broken socket, a protocol violation, a fault of
    ours on its input) end that connection only: the server and the node go on.
    """

    def __init__(self, source: IntrospectionSource, config: ServerConfig | None = None) -> None:
        self.source = source
        #: The options in force: ``config`` with the source's own base interval, if it
        #: declares one (a replay, §4.10), in place of ``interval_ms``.
        self.config = (config or ServerConfig()).for_source(source.base_interval_ms)
        self.hub = Hub(self.config.limits, source.runtime())
        self.sessions_served = 0
        self.refused = 0
        self._admitted = 0  # sessions accepted or being accepted (the limit counts these)
        self._connections: set[WebSocketTransport] = set()
        #: Of those, the ones not (yet) in a session, oldest first, with the cancel scope
        #: of each one's handshake: max_handshakes counts these.
        self._handshaking: dict[WebSocketTransport, trio.CancelScope] = {}
        #: Connections evicted in their handshake (the oldest), for the handshake limit.
        self.shed = 0
        self._shed_unlogged = 0
        self._shed_logged_at = float("-inf")
        #: What the most recent closed sessions did (for logs and tests); their
        #: buffers are gone with them.
        self.closed_sessions: deque[ClosedSession] = deque(maxlen=64)
        #: Connections that ended on an unexpected error of ours (logged with a traceback).
        self.connection_faults = 0
        self._listeners: list[trio.SocketListener] | None = None
        self._bound: list[trio.SocketListener] | None = None
        #: The ``http://`` address of a dashboard following this server, if the same
        #: program runs one (``libp2p-introspect demo`` does): a plain HTTP request
        #: to the endpoint is pointed there.
        self.dashboard_url: str | None = None

    async def bind(self) -> list[trio.SocketListener]:
        """Open the listening sockets now (``OSError`` if the address is taken or not
        ours); :meth:`run` then serves on them."""
        self._bound = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        return self._bound

    @property
    def connections(self) -> frozenset[WebSocketTransport]:
        """The TCP connections open now (handshaking, in a session, or closing)."""
        return frozenset(self._connections)

    @property
    def handshakes(self) -> int:
        """Connections open now that are not (yet) in a session."""
        return len(self._handshaking)

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        if not self._listeners:
            raise RuntimeError("the server is not listening yet")
        port: int = self._listeners[0].socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/introspect`` of the running server."""
        return defaults.default_url(self.config.host, self.port)

    @enable_ki_protection
    async def run(
        self, *, task_status: trio.TaskStatus[IntrospectionServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind (unless :meth:`bind` already did), take the first snapshot, and serve
        until cancelled. Raises ``OSError`` (not wrapped) if the address cannot be bound.
        """
        listeners = self._bound or await self.bind()
        self._bound = None
        try:
            async with trio.open_nursery() as nursery:
                # The source publishes its first snapshot before it reports started
                # (§4.1: there is always a latest snapshot), then hands the hub its
                # snapshots and events until cancelled.
                await nursery.start(_run_protected, self.source.run, self.hub)
                # Each connection runs in the listener's own nursery; _connection
                # never lets an exception of one connection out into it.
                await nursery.start(trio.serve_listeners, self._connection, listeners)
                self._listeners = listeners
                nursery.start_soon(self._timer)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.hub.close_all()
            for socket_listener in listeners:
                with trio.CancelScope(shield=True):
                    await socket_listener.aclose()

    def plain_http_text(self) -> str:
        """The answer to a plain HTTP ``GET`` (a browser opening the URL): what this
        endpoint is and where to see it in a browser, in a few lines of text."""
        url = self.url
        if self.dashboard_url is not None:
            browse = f"Open its dashboard at {self.dashboard_url}"
        else:
            browse = (
                f"For a page, run `libp2p-introspect dashboard {url}`: it serves one on "
                f"{defaults.page_url()} by default"
            )
        return (
            f"This is a libp2p introspection endpoint, {url}: a WebSocket for protocol "
            "clients (libp2p-introspect watch, the dashboard, observer-toolkit), not a web "
            f"page.\n{browse}.\n"
        )

    # ------------------------------------------------------------ server tasks

    @enable_ki_protection
    async def _timer(self) -> None:
        period = max(0.05, min(1.0, self.config.write_timeout_s / 4))
        while True:
            await trio.sleep(period)
            self.hub.tick()
            self._log_shed()

    def _log_shed(self, *, now: float | None = None) -> None:
        """Summarize connections evicted since the last summary (at most once per
        :data:`SHED_LOG_INTERVAL_S`)."""
        now = trio.current_time() if now is None else now
        if not self._shed_unlogged or now - self._shed_logged_at < SHED_LOG_INTERVAL_S:
            return
        log.warning(
            "closed %d connection%s still in the handshake, the oldest, to make room for "
            "newer ones: %d connections were in their handshake (the limit, --max-handshakes)",
            self._shed_unlogged, "" if self._shed_unlogged == 1 else "s",
            self.config.max_handshakes,
        )  # fmt: skip
        self._shed_unlogged = 0
        self._shed_logged_at = now

    def _evict_oldest_handshake(self) -> None:
        # At the handshake limit the oldest connection still in its handshake goes (its
        # descriptor back at once), not the newest: an honest client finishes in
        # milliseconds, and idle sockets held open cannot lock it out.
        oldest = next(iter(self._handshaking))
        scope = self._handshaking.pop(oldest)
        self.shed += 1
        self._shed_unlogged += 1
        log.debug(
            "%s: closed in its handshake for a newer connection: %d connections in their "
            "handshake (limit %d)",
            oldest.peer, len(self._handshaking) + 1, self.config.max_handshakes,
        )  # fmt: skip
        oldest.ended = oldest.ended or "closed in the handshake for a newer connection"
        scope.cancel()
        oldest.abort()
        self._log_shed()

    # ---------------------------------------------------------- one connection

    @enable_ki_protection
    async def _connection(self, stream: trio.SocketStream) -> None:
        """One TCP connection from accept to close: handshake, admission, session.

        The barrier of the server: no exception raised by or about this connection
        (a reset at any point, a socket already gone, a fault of ours) leaves this
        task. A lost connection is logged at DEBUG; an unexpected error (a bug) is
        logged with its traceback and counted in :attr:`connection_faults`. Only
        cancellation (the server stopping) goes through.
        """
        while len(self._handshaking) >= self.config.max_handshakes:
            self._evict_oldest_handshake()
        peer = describe_peer(stream)  # now: a client that resets takes its address along
        transport = WebSocketTransport(
            # The transport stops buffering a command past the session's limit; the
            # session decides the close (§4.8).
            stream,
            peer=peer,
            max_message_size=self.config.limits.max_command_size,
        )
        self._connections.add(transport)
        handshake = trio.CancelScope()
        self._handshaking[transport] = handshake
        try:
            with handshake:  # cancelled only while in the handshake (evicted for a newer one)
                await self._serve_connection(transport)
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as lost:
            log.debug("%s: connection lost: %r", peer, lost.exceptions[0])
        except* Exception as group:
            self.connection_faults += 1
            log.error(
                "internal error on the connection of %s; the server goes on", peer, exc_info=group
            )
        finally:
            self._handshaking.pop(transport, None)
            self._connections.discard(transport)
            transport.abort()

    async def _serve_connection(self, transport: WebSocketTransport) -> None:
        deadline = trio.current_time() + self.config.handshake_timeout_s
        upgrade: UpgradeRequested | PlainRequest | None = None
        with trio.move_on_at(deadline):
            upgrade = await transport.read_upgrade()
        if upgrade is None:
            log.debug("%s: no upgrade (%s)", transport.peer, transport.ended or "timed out")
            return
        if isinstance(upgrade, PlainRequest):
            path = urlsplit(upgrade.target).path
            log.debug("%s: a plain HTTP GET of %s, answered with what this is", transport.peer,
                      path)  # fmt: skip
            status, text = 426, self.plain_http_text()
            if path != defaults.PATH:
                status, text = 404, f"Nothing is served at {path}.\n{text}"
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await transport.reject(status, text)
            return
        refusal = self._admission(upgrade, transport.peer)
        if refusal is not None:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await transport.reject(refusal.status, refusal.reason)
            return
        # Counted from here, not from the session's start: concurrent handshakes
        # must not all pass the limit while each is still being accepted.
        self._admitted += 1
        try:
            accepted = False
            with trio.move_on_at(deadline):
                accepted = await transport.accept()
            if not accepted:
                log.debug("%s: gone before the 101 was out", transport.peer)
                return
            self._handshaking.pop(transport, None)  # a session now: max_sessions counts it
            await self._session(transport)
        finally:
            self._admitted -= 1

    def _admission(self, upgrade: UpgradeRequested, peer: str) -> Refusal | None:
        """The refusal to answer ``upgrade`` with (logged), or ``None`` to accept it."""
        path = urlsplit(upgrade.target).path
        if path != defaults.PATH:
            return Refusal(404, f"no endpoint at {path}; use {defaults.PATH}")
        refusal = admit(
            upgrade.target,
            upgrade.headers,
            token=self.config.token,
            allowed_origins=self.config.allowed_origins,
            sessions=self._admitted,
            max_sessions=self.config.max_sessions,
        )
        if refusal is not None:
            self.refused += 1
            log.warning("refused %s: %s (HTTP %d)", peer, refusal.reason, refusal.status)
        return refusal

    # ------------------------------------------------------------- one session

    async def _session(self, transport: WebSocketTransport) -> None:
        peer = transport.peer
        session = self.hub.open_session()
        handle = SessionHandle(session, peer)
        self.hub.join(handle)
        transport.on_progress = lambda: session.write_progress(trio.current_time())
        transport.on_pending = lambda pending: session.write_pending(pending, trio.current_time())
        session.write_pending(transport.write_pending, trio.current_time())
        self.sessions_served += 1
        log.info("session opened: %s", peer)
        try:
            await serve_session(
                transport,
                handle,
                ping_interval_s=self.config.ping_interval_s,
                pong_timeout_s=self.config.pong_timeout_s,
            )
        finally:
            # Cancelled from outside this session: the server (or the node) stops.
            stopping = trio.current_effective_deadline() == float("-inf")
            self.hub.leave(handle)
            session_close = session.close
            # §4.6: the frame in flight is finished, then the close frame goes out,
            # within the close grace; a stopping server gives every session less.
            with trio.CancelScope(shield=True):
                if session_close is not None:
                    await transport.close(
                        session_close.code,
                        session_close.reason,
                        grace=self.config.close_grace_s,
                        linger=CLOSE_TIMEOUT_S,
                    )
                else:
                    # The server stops, or the client left: then its close frame was
                    # answered or its socket is gone, and nothing more goes out.
                    reason = "introspection server stopping" if stopping else "session ended"
                    with trio.move_on_after(CLOSE_TIMEOUT_S):
                        await transport.close(
                            CLOSE_GOING_AWAY, reason, grace=CLOSE_TIMEOUT_S, linger=CLOSE_TIMEOUT_S
                        )
            handle.settle(transport.wire.bytes_sent)
            self.closed_sessions.append(
                ClosedSession(
                    peer, session_close, session.stats, handle.sent, transport.ended or ""
                )
            )
            log.info("session closed: %s (%s); sent %s", peer, transport.ended, dict(handle.sent))


@asynccontextmanager
async def open_introspection_server(
    source: IntrospectionSource, config: ServerConfig | None = None
) -> AsyncIterator[IntrospectionServer]:
    """Serve ``source`` in the background for the duration of the ``async with`` block.

    Yields the running :class:`IntrospectionServer` (its :attr:`~IntrospectionServer.url`
    is ready). Raises ``OSError`` if the port cannot be bound. What the block raises
    comes out as itself, not inside an exception group: Ctrl-C in the block is one
    ``KeyboardInterrupt``, a ``ValueError`` is a ``ValueError``.
    """
    server = IntrospectionServer(source, config)
    await server.bind()  # here, so that a taken port is a plain OSError
    async with background(server.run) as _:
        yield server


@asynccontextmanager
async def background(
    task: Callable[..., Awaitable[object]],
) -> AsyncIterator[object]:
    """Run ``task`` (started as by ``nursery.start``) for the duration of the block,
    then cancel it; yields what it passed to ``task_status.started``.

    Unlike a bare nursery around the block, what the block raises is not wrapped:
    it comes out as itself once the task has stopped (a nursery would turn one
    Ctrl-C into a ``BaseExceptionGroup`` at every level it crosses). A task that
    fails while stopping is raised grouped with the block's error, so neither is
    lost; a group of nothing but ``KeyboardInterrupt`` (Ctrl-C that landed inside
    the task) is one ``KeyboardInterrupt``.
    """
    raised: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            started = await nursery.start(task)
            try:
                yield started
            except BaseException as exc:  # re-raised below, unwrapped
                raised = exc
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        interrupts, rest = group.split(KeyboardInterrupt)
        only_interrupts = rest is None and interrupts is not None
        if only_interrupts and (raised is None or isinstance(raised, KeyboardInterrupt)):
            raise (raised or _first(group)) from None
        if raised is not None:
            raise BaseExceptionGroup("the block and its background task failed",
                                     [raised, *group.exceptions]) from None  # fmt: skip
        raise
    if raised is not None:
        raise raised


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of ``group``."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf
