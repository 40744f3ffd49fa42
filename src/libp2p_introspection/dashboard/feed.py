"""The dashboard's protocol client: the pull loop of PROTOCOL.md §5, kept alive.

:class:`LiveFeed` connects to an introspection server, reads the ``Runtime``
and the first ``State`` (§4.2), says ``HELLO`` with its retention window,
subscribes to events (``PUSH_ENABLE`` + ``EVENTS``), then loops: signal
ready (``REQUEST`` + ``STATE``), read until the next snapshot arrives, hand
it over, repeat. Everything it reads goes to a :class:`FeedSink`.

- **Pause** stops signalling ready and sends ``PUSH_PAUSE`` (the server holds
  events for the retention window, §4.5); **resume** sends ``PUSH_RESUME``
  (the held events follow) and signals ready again. A snapshot already
  asked for before the pause still arrives.
- **Reconnect**: when the session ends or cannot be opened, the feed says
  ``reconnecting`` and tries again after a backoff (0.5 s doubling to 10 s;
  a session that reached ``connected`` resets it).
- **Switch**: :meth:`LiveFeed.switch` points the feed at another URL at
  once; :meth:`LiveFeed.stop` ends the session and stays ``disconnected``
  (the dashboard shows a recording then).
- **Limits**: a message holding more than ``limits`` allow (by default
  40,000 connections or 100,000 streams) is skipped unparsed (it would cost
  gigabytes once converted): the feed counts it in :attr:`LiveFeed.over_limit`,
  keeps the reason in :attr:`LiveFeed.over_limit_reason`, logs it and tells
  the sink (``feed_status``); a skipped snapshot still answers the ready
  signal, so the pull loop goes on. A snapshot the sink cannot take (over
  the dashboard's size budget) is counted the same way
  (:meth:`LiveFeed.note_skipped`).
- **Token**: the shared token (``token``, else the environment's) is sent
  only to the URL the feed was created for (the command line's), compared
  as an endpoint (scheme, host, port, path, query). Any other URL the page
  switches to gets no token at all: the page must not be able to hand the
  token to a server of its choosing. Nor can it read the token: the URL
  it is shown (:attr:`LiveFeed.display_url`), the errors and the log lines
  have it redacted (``?token=***``); switching to that redacted URL means
  the command line's own.

Only one task sends on the WebSocket (the commander); one task reads.
"""

from __future__ import annotations

import logging
import os
import time
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, ConnectionTimeout, HandshakeError

from libp2p_introspection import config as defaults
from libp2p_introspection.client.connection import (
    Command,
    IntrospectionClient,
    ProtocolError,
    Source,
    connect,
)
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits

log = logging.getLogger(__name__)

#: First and last wait between connection attempts, seconds.
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
#: Bound on opening the WebSocket and on reading the Runtime and first State, seconds.
CONNECT_TIMEOUT_S = 10.0


class ConnectionState(StrEnum):
    """Where the feed stands with its server."""

    #: First attempt at the current URL, not yet through.
    CONNECTING = "connecting"
    #: A session is open and the Runtime and first snapshot have arrived.
    CONNECTED = "connected"
    #: The session ended or could not be opened; trying again after a backoff.
    RECONNECTING = "reconnecting"
    #: Not connected and not trying (stopped: a recording is shown).
    DISCONNECTED = "disconnected"


class FeedSink(Protocol):
    """Where :class:`LiveFeed` delivers what it reads (called on the trio thread)."""

    def feed_switched(self, url: str) -> None:
        """The feed now targets ``url`` (another node: forget the previous one's data)."""

    def feed_runtime(self, runtime: pb.Runtime) -> None:
        """A ``Runtime`` arrived (first thing in every session)."""

    def feed_state(self, state: pb.State) -> None:
        """A snapshot arrived."""

    def feed_event(self, event: pb.Event) -> None:
        """An event arrived."""

    def feed_notice(self) -> None:
        """The server dropped push data here (``DISCARDING_EVENTS``)."""

    def feed_status(self) -> None:
        """The feed's state, URL, pause or error changed (read them from the feed)."""


class LiveFeed:
    """A self-healing protocol client feeding a :class:`FeedSink`; see the module doc.

    ``url``: ``ws://HOST:PORT/introspect``. ``retention_ms``: sent in
    ``HELLO`` as ``retention_period_ms`` (how long the server holds events
    while paused; ``None``: the server's default). ``events``: subscribe to
    events. ``token``: the server's shared token, sent to ``url`` only (not
    to the URLs of later :meth:`switch` calls); ``None``: the environment's.
    ``limits``: what one message may hold before it is skipped (module doc).
    Run with ``await nursery.start(feed.run)``.
    """

    def __init__(
        self,
        url: str,
        sink: FeedSink,
        *,
        retention_ms: int | None = None,
        events: bool = True,
        token: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        limits: RecordLimits = DEFAULT_LIMITS,
    ) -> None:
        self.url = url
        self.token = token
        #: The endpoint the token belongs to (the URL the feed was created for).
        self.token_endpoint = endpoint_key(url)
        self._home_url = url
        #: URLs whose refusal was logged at WARNING (once each; the retries at INFO).
        self._told: set[str] = set()
        self.sink = sink
        self.retention_ms = retention_ms
        self.events = events
        self.connect_timeout_s = connect_timeout_s
        self.state = ConnectionState.CONNECTING
        #: Whether the user paused the feed (applies across reconnects).
        self.paused = False
        #: Whether the feed tries to be connected (False after :meth:`stop`).
        self.active = True
        #: Why the last session ended or failed ("" when connected).
        self.error = ""
        #: Wall-clock ms when the current state began.
        self.since_ms = _now_ms()
        self.sessions = 0
        self.notices = 0
        self.limits = limits
        #: Messages skipped for holding more than :attr:`limits` allow (every session).
        self.over_limit = 0
        #: Why the last of them was skipped ("" if none was).
        self.over_limit_reason = ""
        #: The effective configuration the server reported for our HELLO.
        self.effective_config: dict[str, int] = {}
        self._session_scope: trio.CancelScope | None = None
        self._wake = trio.Event()
        self._poke = trio.Event()
        self._awaiting_state = False

    # ------------------------------------------------------------ controls

    def pause(self) -> None:
        """Stop signalling ready and pause the server's push streams."""
        if not self.paused:
            self.paused = True
            self._poke.set()
            self.sink.feed_status()

    def resume(self) -> None:
        """Resume the push streams and signal ready again."""
        if self.paused:
            self.paused = False
            self._poke.set()
            self.sink.feed_status()

    @property
    def awaiting_state(self) -> bool:
        """Whether a ready signal of this session is still unanswered: one more snapshot
        (or the server's skip of one) may come, even after :meth:`pause`."""
        return self._awaiting_state

    @property
    def display_url(self) -> str:
        """:attr:`url` as it may be shown: any token in it is ``***``."""
        return self._redact(self.url)

    def _redact(self, text: str) -> str:
        token = self.token if self.token is not None else os.environ.get(defaults.TOKEN_ENV)
        return defaults.redact(text, defaults.token_secrets(self._home_url, token))

    def switch(self, url: str) -> None:
        """Connect to ``url`` instead (from now on); also restarts a stopped feed.

        The redacted form of the first URL (:attr:`display_url` shows it so)
        means that URL itself, token and all.
        """
        if url != self._home_url and url == self._redact(self._home_url):
            url = self._home_url
        self.url = url
        self.active = True
        self.sink.feed_switched(url)
        self._set_state(ConnectionState.CONNECTING, "")
        self._restart()

    def stop(self) -> None:
        """End the session, if any, and stay disconnected until :meth:`switch`."""
        self.active = False
        self._set_state(ConnectionState.DISCONNECTED, "")
        self._restart()

    def _restart(self) -> None:
        if self._session_scope is not None:
            self._session_scope.cancel()
        self._wake.set()

    def _set_state(self, state: ConnectionState, error: str) -> None:
        error = self._redact(error)
        if state != self.state or error != self.error:
            self.state = state
            self.error = error
            self.since_ms = _now_ms()
            self.sink.feed_status()

    # ---------------------------------------------------------------- loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a session open with :attr:`url` until cancelled."""
        task_status.started()
        backoff = BACKOFF_MIN_S
        while True:
            if not self.active:
                await self._wake.wait()
            self._wake = trio.Event()
            if not self.active:
                continue
            url = self.url
            error = ""
            with trio.CancelScope() as scope:
                self._session_scope = scope
                try:
                    await self._session(url)
                    error = "the server ended the session"
                except Exception as exc:
                    described = describe_failure(exc)
                    if described is not None and _rejected(exc) and url not in self._told:
                        # Not a server that is down (retried quietly) but one that said no:
                        # a dashboard's port given as the endpoint, a wrong path or token.
                        self._told.add(url)
                        log.warning("cannot follow %s: %s", self._redact(url),
                                    self._redact(described))  # fmt: skip
                    if described is None:
                        # A bug of ours on this session's data must not stop the
                        # dashboard: log it whole and reconnect like any failure.
                        log.exception(
                            "live feed: unexpected error in the session with %s", self._redact(url)
                        )
                        described = f"internal error: {exc!r}"
                    error = described
            self._session_scope = None
            if scope.cancelled_caught:  # switched or stopped: go at once
                backoff = BACKOFF_MIN_S
                continue
            if self.state == ConnectionState.CONNECTED:
                backoff = BACKOFF_MIN_S
            log.info(
                "introspection session with %s: %s; retrying in %.1fs",
                self._redact(url), self._redact(error), backoff,
            )  # fmt: skip
            self._set_state(ConnectionState.RECONNECTING, error)
            with trio.move_on_after(backoff):
                await self._wake.wait()
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def token_for(self, url: str) -> str | None:
        """The token to present to ``url``: ours for our own server, ``""`` (none) elsewhere."""
        if endpoint_key(url) == self.token_endpoint:
            return self.token
        return ""  # not None, which would mean the environment's token

    async def _session(self, url: str) -> None:
        token = self.token_for(url)
        async with connect(
            url, token=token, connect_timeout=self.connect_timeout_s, limits=self.limits
        ) as client:
            with trio.fail_after(self.connect_timeout_s):
                runtime = await client.receive_kind("runtime", limit=16)
                if runtime.skipped:
                    self._skipped(runtime.skipped)
                else:
                    self.sink.feed_runtime(runtime.message.runtime)
                first = await client.receive_kind("state", limit=16)
            if first.skipped:
                self._skipped(first.skipped)
            else:
                self.sink.feed_state(first.message.state)
            self.sessions += 1
            self._awaiting_state = False
            self._set_state(ConnectionState.CONNECTED, "")
            config = None
            if self.retention_ms is not None:
                config = pb.Configuration(retention_period_ms=self.retention_ms)
            await client.send(Command.HELLO, Source.STATE, config=config)
            if self.events:
                await client.send(Command.PUSH_ENABLE, Source.EVENTS)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._commander, client)
                await self._reader(client)
                nursery.cancel_scope.cancel()

    async def _commander(self, client: IntrospectionClient) -> None:
        """The one sender: pause/resume the push streams, signal ready when due."""
        sent_paused = False
        while True:
            self._poke = trio.Event()
            if self.paused != sent_paused:
                await client.send(
                    Command.PUSH_PAUSE if self.paused else Command.PUSH_RESUME, Source.EVENTS
                )
                sent_paused = self.paused
            if not self.paused and not self._awaiting_state:
                self._awaiting_state = True
                await client.ready()
            await self._poke.wait()

    async def _reader(self, client: IntrospectionClient) -> None:
        """Read every message and deliver it; returns if the server ends the session."""
        while True:
            received = await client.receive()
            kind = received.kind
            message = received.message
            if received.skipped:
                if received.skipped_kind == "state":  # it answered the ready signal
                    self._awaiting_state = False
                    self._poke.set()
                self._skipped(received.skipped)
            elif kind == "state":
                self._awaiting_state = False
                self._poke.set()
                self.sink.feed_state(message.state)
            elif kind == "event":
                self.sink.feed_event(message.event)
            elif kind == "runtime":
                self.sink.feed_runtime(message.runtime)
            elif kind == "notice":
                self.notices += 1
                self.sink.feed_notice()
            elif kind == "response":
                response = message.response
                if response.result == pb.CommandResponse.ERR:
                    log.warning("server refused command %d: %s", response.id, response.error)
                elif response.HasField("effective_config"):
                    effective = response.effective_config
                    self.effective_config = {
                        "retentionPeriodMs": effective.retention_period_ms,
                        "snapshotIntervalMs": effective.state_snapshot_interval_ms,
                    }
                    self.sink.feed_status()

    def note_skipped(self, reason: str) -> None:
        """Count one message of this feed's source skipped by its sink, and why
        (a snapshot over the converter's size budget), as the limits' skips are."""
        self._skipped(reason)

    def _skipped(self, reason: str) -> None:
        self.over_limit += 1
        self.over_limit_reason = f"skipped a message from the node: {reason}"
        # Once at WARNING (a flood of them must not flood the log), then at DEBUG.
        level = logging.WARNING if self.over_limit == 1 else logging.DEBUG
        log.log(level, "live feed from %s: %s", self.url, self.over_limit_reason)
        self.sink.feed_status()


def _rejected(exc: BaseException) -> bool:
    """Whether ``exc`` (or every leaf of a group) is the server refusing the WebSocket."""
    if isinstance(exc, BaseExceptionGroup):
        return bool(exc.exceptions) and all(_rejected(leaf) for leaf in exc.exceptions)
    return isinstance(exc, ConnectionRejected)


def describe_failure(exc: BaseException) -> str | None:
    """Why a session ended or could not open, for the user; ``None`` if it is a bug.

    Groups (errors from inside the session's nursery) are described by their
    first leaf, as long as every leaf is an expected failure.
    """
    if isinstance(exc, BaseExceptionGroup):
        described = [describe_failure(leaf) for leaf in exc.exceptions]
        if not described or any(d is None for d in described):
            return None
        return described[0]
    if isinstance(exc, ConnectionClosed):
        reason = exc.reason
        if reason is None:
            return "the server closed the session"
        text = f": {reason.reason}" if reason.reason else ""
        return f"the server closed the session ({reason.code}{text})"
    if isinstance(exc, ConnectionRejected):
        # The server's text says why (e.g. "this is the libp2p-introspection dashboard,
        # not an introspection endpoint"); shown as text, at most a few hundred chars.
        said = " ".join((exc.body or b"")[:300].decode("utf-8", "replace").split())
        return f"the server refused the session (HTTP {exc.status_code})" + (
            f": {said}" if said else ""
        )
    if isinstance(exc, ConnectionTimeout):
        return "timed out opening the WebSocket"
    if isinstance(exc, HandshakeError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError):
            return f"cannot connect: {cause.strerror or cause}"
        return f"WebSocket handshake failed: {exc or cause or type(exc).__name__}"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    if isinstance(exc, ProtocolError):
        return str(exc)
    if isinstance(exc, trio.TooSlowError):
        return "the server sent no Runtime and snapshot in time"
    if isinstance(exc, ValueError):  # a URL trio-websocket cannot parse
        return f"bad URL: {exc}"
    return None


def endpoint_key(url: str) -> tuple[str, ...]:
    """What identifies the server at ``url``: scheme, host, port, path and query, normalized.

    A URL that does not parse is its own key (it then matches only itself).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return (url,)
    scheme = parts.scheme.lower()
    if port is None:
        port = defaults.DEFAULT_PORT if scheme == "ws" else 443
    host = (parts.hostname or "").lower()
    return (scheme, host, str(port), parts.path or defaults.PATH, parts.query)


def _now_ms() -> int:
    return int(time.time() * 1000)
