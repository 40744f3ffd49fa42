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
import os
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio
from trio.lowlevel import enable_ki_protection

from libp2p_introspection import config as defaults
from libp2p_introspection.abc import IntrospectionSource
from libp2p_introspection.protocol.closecodes import CLOSE_GOING_AWAY
from libp2p_introspection.protocol.discovery import INTROSPECTION_PORTS, ServerEntry
from libp2p_introspection.protocol.session import (
    Close,
    SessionStats,
)
from libp2p_introspection.server.background import background
from libp2p_introspection.server.config import ServerConfig
from libp2p_introspection.server.door import Door
from libp2p_introspection.server.handshake import PlainRequest, UpgradeRequested
from libp2p_introspection.server.hub import Hub
from libp2p_introspection.server.metrics import MetricsEndpoint, MetricsView, ServerHealth
from libp2p_introspection.server.metrics.families import ViewCollector, registry
from libp2p_introspection.server.registry import Registration, bind_first_free, register
from libp2p_introspection.server.session_io import PassBudget, SessionHandle, serve_session
from libp2p_introspection.server.websocket import WebSocketTransport, describe_peer

log = logging.getLogger(__name__)

#: Seconds to wait for a client's side of the closing handshake.
CLOSE_TIMEOUT_S = 2.0


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

    def __init__(
        self,
        source: IntrospectionSource,
        config: ServerConfig | None = None,
        *,
        metrics_url: str | None = None,
        registry_dir: str | None = None,
        metrics_fallback: Sequence[int] = (),
    ) -> None:
        self.source = source
        #: The options in force: ``config`` with the source's own base interval, if it
        #: declares one (a replay, §4.10), in place of ``interval_ms``.
        self.config = (config or ServerConfig()).for_source(source.base_interval_ms)
        #: The node's ``Runtime`` (sent to every client on connect).
        self.runtime = runtime = source.runtime()
        self.hub = Hub(self.config.limits, runtime)
        self.sessions_served = 0
        #: The handshake limit and the session count (who waits, who is turned away).
        self.door = Door(self.config)
        self._connections: set[WebSocketTransport] = set()
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
        #: The ``http://`` address of a Prometheus endpoint the caller runs beside the
        #: server (registered with it, §6); the server's own endpoint wins when it has one.
        self._given_metrics_url = metrics_url
        #: Where the registry entry goes (``None``: the user's registry, §6).
        self.registry_dir = registry_dir
        #: The registry entry while serving (``None`` if not registered).
        self.registration: Registration | None = None
        #: When the server started serving, ms since epoch.
        self.started_ms = 0
        #: What all the session writers may still write in this pass without yielding.
        self._write_budget = PassBudget()

        # Totals of the sessions and connections that ended (the health metrics).
        self._ended_dropped = 0
        self._ended_notices = 0
        self._ended_bytes_sent = 0
        #: The Prometheus export (``config.metrics_port`` set): the view the hub feeds,
        #: and its HTTP endpoint, on that port or else the first free one of
        #: ``metrics_fallback`` (the demo's default port and its range, PROTOCOL.md §6).
        self.metrics_view: MetricsView | None = None
        self.metrics: MetricsEndpoint | None = None
        if self.config.metrics_port is not None:
            self.metrics_view = MetricsView(per_peer=self.config.metrics_per_peer)
            self.hub.observers.append(self.metrics_view)
            collector = ViewCollector(self.metrics_view, runtime, self.health)
            self.metrics = MetricsEndpoint(
                registry(collector), host=self.config.host,
                ports=[self.config.metrics_port, *metrics_fallback], token=self.config.token,
                allowed_origins=self.config.allowed_origins,
            )  # fmt: skip

    async def bind(self) -> list[trio.SocketListener]:
        """Open the listening sockets now; :meth:`run` then serves on them.

        Without a port (``config.port`` ``None``) the first free one of 8845, then
        8850-8869 (§6; a fallback is logged at INFO). Raises ``OSError`` if the
        address is taken (every one of those ports, without a port) or not ours.
        """
        host = self.config.host

        async def listen(port: int) -> list[trio.SocketListener]:
            return await trio.open_tcp_listeners(port, host=host)

        if self.config.port is None:
            self._bound, _ = await bind_first_free(INTROSPECTION_PORTS, host, listen)
        else:
            self._bound = await listen(self.config.port)
        if self.metrics is not None and not self.metrics.bound:
            try:
                await self.metrics.bind()
            except BaseException:
                for listener in self._bound:
                    await listener.aclose()
                self._bound = None
                raise
        return self._bound

    async def bind_metrics(self) -> int | None:
        """Open the metrics endpoint's socket now (before :meth:`bind`, to tell its
        failure apart); returns its port, ``None`` when metrics are off. ``OSError`` if
        the port (or every port of the fallback range) is taken."""
        if self.metrics is None:
            return None
        return await self.metrics.bind()

    @property
    def metrics_url(self) -> str | None:
        """``http://HOST:PORT/metrics`` of the Prometheus export, or ``None`` when off."""
        return self._given_metrics_url if self.metrics is None else self.metrics.url

    def health(self) -> ServerHealth:
        """The server's own counters now (the ``libp2p_introspection_*`` metrics)."""
        live = [member.session.stats for member in self.hub.sessions]
        built = self.source.build_stats
        return ServerHealth(
            sessions=len(live),
            sessions_total=self.sessions_served,
            refused_total=self.refused + (self.metrics.refused if self.metrics else 0),
            shed_total=self.shed,
            dropped_total=self._ended_dropped + sum(stats.dropped for stats in live),
            notices_total=self._ended_notices + sum(stats.notices for stats in live),
            bytes_sent_total=self._ended_bytes_sent
            + sum(transport.wire.bytes_sent for transport in self._connections),
            snapshot_builds=built.builds,
            snapshot_build_seconds=built.seconds,
            snapshot_errors_total=built.errors,
            snapshots_total=0 if self.hub.latest is None else self.hub.latest.number,
            events_total=self.hub.events_published,
        )

    @property
    def connections(self) -> frozenset[WebSocketTransport]:
        """The TCP connections open now (handshaking, in a session, or closing)."""
        return frozenset(self._connections)

    @property
    def handshakes(self) -> int:
        """Connections open now that are not (yet) in a session."""
        return self.door.handshakes

    @property
    def shed(self) -> int:
        """Connections evicted in their handshake (the oldest), for the handshake limit."""
        return self.door.shed

    @property
    def refused(self) -> int:
        """Upgrade requests refused by admission (token, origin, session limit)."""
        return self.door.refused

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

    @property
    def local_url(self) -> str:
        """The URL a client on this machine connects to: :attr:`url`, with a wildcard
        bind address (``0.0.0.0``, ``::``) replaced by loopback."""
        host = self.config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return defaults.default_url(host, self.port)

    def entry(self) -> ServerEntry:
        """This server's discovery entry (§6): its :attr:`local_url`, the node's peer id
        and implementation (from the source's ``Runtime``), this process's pid, when it
        started, whether it requires a token, and :attr:`metrics_url`."""
        runtime = self.runtime
        return ServerEntry(
            url=self.local_url,
            peer_id=runtime.peer_id,
            implementation=runtime.implementation,
            pid=os.getpid(),
            started_ms=self.started_ms,
            token_required=bool(self.config.token),
            metrics_url=self.metrics_url,
        )

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
                if self.metrics is not None:
                    await nursery.start(self.metrics.run)
                nursery.start_soon(self._timer)
                nursery.start_soon(self._write_budget.run)
                self.started_ms = int(time.time() * 1000)
                if self.config.register:
                    self.registration = register(self.entry(), self.port, self.registry_dir)
                if self.config.announce:
                    from libp2p_introspection.server.announce import announce

                    nursery.start_soon(announce, self.entry(), self.port, self.config.host)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            if self.registration is not None:
                self.registration.remove()
                self.registration = None
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
            self.door.log_shed()

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
        peer = describe_peer(stream)  # now: a client that resets takes its address along
        transport = WebSocketTransport(
            # The transport stops buffering a command past the session's limit; the
            # session decides the close (§4.8).
            stream,
            peer=peer,
            max_message_size=self.config.limits.max_command_size,
        )
        handshake = trio.CancelScope()
        self.door.enter(transport, handshake)  # at the limit, the oldest handshake goes
        self._connections.add(transport)
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
            self.door.leave_handshake(transport)
            if transport in self._connections:
                self._ended_bytes_sent += transport.wire.bytes_sent
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
        refusal = self.door.admission(upgrade, transport.peer)
        if refusal is not None:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await transport.reject(refusal.status, refusal.reason)
            return
        # Counted from here, not from the session's start: concurrent handshakes
        # must not all pass the limit while each is still being accepted.
        with self.door.admitting():
            accepted = False
            with trio.move_on_at(deadline):
                accepted = await transport.accept()
            if not accepted:
                log.debug("%s: gone before the 101 was out", transport.peer)
                return
            self.door.leave_handshake(transport)  # a session now: max_sessions counts it
            await self._session(transport)

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
                budget=self._write_budget,
            )
        finally:
            # Cancelled from outside this session: the server (or the node) stops.
            stopping = trio.current_effective_deadline() == float("-inf")
            self.hub.leave(handle)
            self._ended_dropped += session.stats.dropped
            self._ended_notices += session.stats.notices
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
    source: IntrospectionSource,
    config: ServerConfig | None = None,
    *,
    metrics_url: str | None = None,
) -> AsyncIterator[IntrospectionServer]:
    """Serve ``source`` in the background for the duration of the ``async with`` block.

    Yields the running :class:`IntrospectionServer` (its :attr:`~IntrospectionServer.url`
    is ready, its registry entry written, with ``metrics_url``). Raises ``OSError``
    if the port cannot be bound. What the block raises
    comes out as itself, not inside an exception group: Ctrl-C in the block is one
    ``KeyboardInterrupt``, a ``ValueError`` is a ``ValueError``.
    """
    server = IntrospectionServer(source, config, metrics_url=metrics_url)
    await server.bind()  # here, so that a taken port is a plain OSError
    async with background(server.run) as _:
        yield server
