"""``GET /metrics`` over HTTP/1.1: a thin trio adapter around h11 and the admission rules.

One task per TCP connection, one request per connection (``Connection: close``):
read the request head (at most :data:`MAX_REQUEST_SIZE` bytes, within
:data:`REQUEST_TIMEOUT_S`), check it (:func:`~.http.metrics_refusal`), answer with
the exposition (the Prometheus text format 0.0.4) or the refusal, close. At most
:data:`MAX_CONNECTIONS` connections at once; past it a new one is closed at once.
Nothing raised by or about one connection leaves its task.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from http import HTTPStatus

import h11
import trio
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

from libp2p_introspection.protocol.admission import is_loopback
from libp2p_introspection.server.metrics.http import METRICS_PATH, metrics_refusal
from libp2p_introspection.server.websocket import SEND_FLAGS

log = logging.getLogger(__name__)

#: Largest request head accepted, bytes.
MAX_REQUEST_SIZE = 16 * 1024
#: Seconds a client has to send its request, and to take the answer.
REQUEST_TIMEOUT_S = 10.0
#: Connections served at once; more are closed as soon as they are accepted.
MAX_CONNECTIONS = 16


class MetricsEndpoint:
    """Serves ``registry`` at ``http://HOST:PORT/metrics``.

    ``host``: the bind address (the introspection server's: loopback unless
    ``allow_remote``); ``ports``: tried in order, the first free one is taken (one
    port: exactly that one, ``OSError`` if taken; 0: a free one). ``token``: required
    from every request when set. Bind with :meth:`bind`, then ``nursery.start(run)``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str,
        ports: Sequence[int],
        token: str | None = None,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        if not ports:
            raise ValueError("no port to bind the metrics endpoint on")
        self.registry = registry
        self.host = host
        self.ports = tuple(ports)
        self.token = token
        self.allowed_origins = tuple(allowed_origins)
        self.scrapes = 0
        self.refused = 0
        self._active = 0
        self._listeners: list[trio.SocketListener] | None = None

    async def bind(self) -> int:
        """Open the listening sockets on the first free port of :attr:`ports`; returns it.

        Raises ``OSError`` if none is free (the last port's error) or the address is
        not ours.
        """
        failure: OSError | None = None
        for index, port in enumerate(self.ports):
            try:
                self._listeners = await trio.open_tcp_listeners(port, host=self.host)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or index == len(self.ports) - 1:
                    raise
                failure = exc
                continue
            if index:
                log.info("metrics port %d is taken: serving metrics on %d", self.ports[0],
                         self.port)  # fmt: skip
            return self.port
        raise failure or OSError("no port")  # pragma: no cover (the loop raises)

    @property
    def bound(self) -> bool:
        """Whether :meth:`bind` has opened the sockets."""
        return self._listeners is not None

    @property
    def port(self) -> int:
        """The port bound."""
        if not self._listeners:
            raise RuntimeError("the metrics endpoint is not bound yet")
        port: int = self._listeners[0].socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics``."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}{METRICS_PATH}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (binding first unless :meth:`bind` did)."""
        if self._listeners is None:
            await self.bind()
        assert self._listeners is not None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._connection, self._listeners)
                task_status.started()
        finally:
            for listener in self._listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()

    async def _connection(self, stream: trio.SocketStream) -> None:
        if self._active >= MAX_CONNECTIONS:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        self._active += 1
        try:
            with trio.move_on_after(REQUEST_TIMEOUT_S):
                await self._serve(stream)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("metrics connection lost: %r", exc)
        except Exception:
            log.exception("internal error answering a metrics request; the endpoint goes on")
        finally:
            self._active -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_SIZE)
        request: h11.Request | None = None
        while request is None:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._send(stream, exc.error_status_hint, "bad request\n")
                return
            if event is h11.NEED_DATA:
                data = await stream.receive_some(MAX_REQUEST_SIZE)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            else:
                return
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        headers = [(name.lower(), value) for name, value in request.headers]
        refusal = metrics_refusal(
            method, target, headers, token=self.token, allowed_origins=self.allowed_origins,
            loopback_only=is_loopback(self.host),
        )  # fmt: skip
        if refusal is not None:
            self.refused += 1
            log.warning("refused a metrics request: %s (HTTP %d)", refusal.reason, refusal.status)
            extra = [("WWW-Authenticate", "Bearer")] if refusal.status == 401 else []
            await self._send(stream, refusal.status, refusal.reason + "\n", extra)
            return
        body = generate_latest(self.registry)
        self.scrapes += 1
        await self._send(stream, 200, body, content_type=CONTENT_TYPE_PLAIN_0_0_4,
                         head=method == "HEAD")  # fmt: skip

    async def _send(
        self,
        stream: trio.SocketStream,
        status: int,
        body: str | bytes,
        extra: Sequence[tuple[str, str]] = (),
        *,
        content_type: str = "text/plain; charset=utf-8",
        head: bool = False,
    ) -> None:
        """Write one whole response (no text in it from the request) and its body."""
        data = body.encode() if isinstance(body, str) else body
        phrase = HTTPStatus(status).phrase
        headers = [("Content-Type", content_type), ("Content-Length", str(len(data))),
                   ("Connection", "close"), ("Cache-Control", "no-store"), *extra]  # fmt: skip
        head_text = f"HTTP/1.1 {status} {phrase}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers
        )
        # Not stream.send_all: every send says MSG_NOSIGNAL (SEND_FLAGS), or a scraper
        # that resets after its FIN kills a host whose SIGPIPE is at its default.
        view = memoryview(head_text.encode("latin-1") + b"\r\n" + (b"" if head else data))
        while view:
            view = view[await stream.socket.send(view, SEND_FLAGS) :]
