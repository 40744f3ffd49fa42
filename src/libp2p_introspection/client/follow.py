"""Following nodes from a script: one node with :func:`follow`, every registered one
with :func:`follow_all`.

Built on :func:`~libp2p_introspection.client.connection.connect` (the protocol
client) and the registry of local servers (PROTOCOL.md §6,
:func:`~libp2p_introspection.client.discovery.read_registry`)::

    async with follow() as node:                  # the one registered server
        async for snapshot in node.snapshots():   # pull: one at the loop's pace
            ...
    async with follow_all() as nodes:
        async for entry, snapshot in nodes:       # every registered server
            ...

One task per session reads every message and routes it (the caller's loops never
block each other): snapshots and events wait in bounded buffers where the oldest
goes first when the script falls behind (counted in :attr:`FollowedNode.dropped`);
command responses reach the command that waits for them. Everything received is
data from the server: ``pb`` messages as parsed, nothing trusted for a size beyond
the client's :class:`~libp2p_introspection.protocol.wire.RecordLimits`.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio
from trio_websocket import CloseReason, ConnectionClosed, HandshakeError

from libp2p_introspection import config as defaults
from libp2p_introspection.client.connection import (
    Command,
    IntrospectionClient,
    ProtocolError,
    Source,
    connect,
)
from libp2p_introspection.client.discovery import choose, read_registry
from libp2p_introspection.client.errors import ClientError
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.discovery import ServerEntry

log = logging.getLogger(__name__)

#: Where :func:`follow` connects when no URL is given and no server is registered.
DEFAULT_URL = f"ws://{defaults.DEFAULT_HOST}:{defaults.DEFAULT_PORT}{defaults.PATH}"
#: Snapshots kept for a script that reads them slower than they are pushed.
SNAPSHOT_BUFFER = 4
#: Events kept for a script that reads them slower than they come.
EVENT_BUFFER = 4096

T = TypeVar("T")


class CommandError(ClientError):
    """The server answered a command with ``ERR`` (its ``error`` text is the message)."""


class _Inbox(Generic[T]):
    """A bounded buffer the reader task fills without ever waiting: when full, the
    oldest item goes (counted in ``dropped``)."""

    def __init__(self, size: int) -> None:
        self.items: deque[T] = deque(maxlen=size)
        self.dropped = 0
        self._changed = trio.Event()

    def put(self, item: T) -> None:
        if len(self.items) == self.items.maxlen:
            self.dropped += 1
        self.items.append(item)
        self.wake()

    def wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def get(self, node: FollowedNode) -> T | None:
        """The oldest item; ``None`` once the session is over and nothing is left."""
        while not self.items:
            node._raise_if_failed()
            if node.closed:
                return None
            await self._changed.wait()
        return self.items.popleft()


class FollowedNode:
    """One followed server, as :func:`follow` yields it.

    ``url``: where it is; ``entry``: its registry entry (``None`` when given by URL);
    ``runtime``: its ``pb.Runtime`` (updated if it sends another); ``latest``: the
    newest ``pb.State`` received (``instant_ts`` in ms since epoch). ``notices``: how
    many ``DISCARDING_EVENTS`` notices the server sent (each one is a gap it made,
    §4.6); ``dropped``: snapshots and events this client let go because the script read
    slower than they came; ``skipped``: messages over the client's limits, never parsed.
    ``close_reason``: the server's ``CloseReason`` once it closed the session.
    """

    def __init__(
        self,
        client: IntrospectionClient,
        url: str,
        runtime: pb.Runtime,
        first: pb.State,
        entry: ServerEntry | None = None,
    ) -> None:
        self.client = client
        self.url = url
        self.entry = entry
        self.runtime = runtime
        self.latest = first
        self.notices = 0
        self.skipped = 0
        self.close_reason: CloseReason | None = None
        self.closed = False
        self._failure: ProtocolError | None = None
        self._states: _Inbox[pb.State] = _Inbox(SNAPSHOT_BUFFER)
        self._states.put(first)
        self._events: _Inbox[pb.Event] = _Inbox(EVENT_BUFFER)
        self._subscribed: set[int] = set()
        self._waiting: dict[int, trio.MemoryObjectSendChannel[pb.CommandResponse]] = {}

    @property
    def dropped(self) -> int:
        return self._states.dropped + self._events.dropped

    def snapshots(self, *, push: bool = False) -> AsyncIterator[pb.State]:
        """The node's snapshots (``pb.State``), the one received on connect first.

        Pull (the default, §4.3): each step asks for the next one when the loop comes
        back for it, so a slow loop gets the newest and skips the ones between. Push
        (``push=True``, §4.4): the server sends every k-th snapshot of its clock (see
        :meth:`configure`) and they are kept here (the oldest goes when
        :data:`SNAPSHOT_BUFFER` are waiting); the subscription lasts as long as the
        session. Ends when the server closes the session; raises
        :class:`ProtocolError` for a server that breaks the protocol and
        :class:`CommandError` if the server refuses the subscription.
        """
        return _Snapshots(self, push)

    def events(self) -> AsyncIterator[pb.Event]:
        """The node's events (``pb.Event``: ``type.name``, ``ts`` in ms since epoch,
        ``content`` a JSON object as a string), from the first step on: that step
        subscribes (``PUSH_ENABLE`` + ``EVENTS``), and the subscription lasts as long as
        the session. Up to :data:`EVENT_BUFFER` wait here; beyond that the oldest goes
        (see :attr:`dropped`; gaps the server made are :attr:`notices`). Ends when the
        server closes the session; raises as :meth:`snapshots` does."""
        return _Events(self)

    async def pause(self) -> None:
        """Pause every push stream (``PUSH_PAUSE``, §4.5): the server holds events and
        pushed snapshots (bounded by the retention and its byte budget) until
        :meth:`resume`. A pull still gets its snapshot. Raises :class:`CommandError` on
        ``ERR``, ``trio_websocket.ConnectionClosed`` once the session is over."""
        await self.command(Command.PUSH_PAUSE)

    async def resume(self) -> None:
        """Resume the push streams (``PUSH_RESUME``): what was held comes next, in the
        order it was produced. Raises as :meth:`pause` does."""
        await self.command(Command.PUSH_RESUME)

    async def configure(
        self, *, interval_ms: int = 0, retention_ms: int = 0
    ) -> pb.Configuration:
        """Ask for a push interval and a pause retention, both ms (0: unchanged,
        §4.7); returns the server's ``effective_config`` (the interval rounded up to a
        multiple of its base interval, the retention clamped). Raises as :meth:`pause`
        does."""
        wanted = pb.Configuration(
            retention_period_ms=retention_ms, state_snapshot_interval_ms=interval_ms
        )
        response = await self.command(Command.UPDATE_CONFIG, config=wanted)
        return response.effective_config

    async def command(
        self, command: int, source: int = Source.STATE, *, config: pb.Configuration | None = None
    ) -> pb.CommandResponse:
        """Send one command and wait for its ``CommandResponse`` (not for a ``REQUEST``:
        the data answers it). Raises :class:`CommandError` on ``ERR``,
        ``trio_websocket.ConnectionClosed`` if the session ends first."""
        self._raise_if_failed()
        if self.closed:
            raise ConnectionClosed(self.close_reason)
        send, receive = trio.open_memory_channel[pb.CommandResponse](1)
        command_id = self.client.next_command_id()
        self._waiting[command_id] = send
        try:
            await self.client.send(command, source, config=config, command_id=command_id)
            try:
                response = await receive.receive()
            except trio.EndOfChannel:
                self._raise_if_failed()
                raise ConnectionClosed(self.close_reason) from None
        finally:
            self._waiting.pop(command_id, None)
        if response.result == pb.CommandResponse.Result.ERR:
            raise CommandError(response.error or "the server refused the command")
        return response

    async def _subscribe(self, source: int) -> None:
        if source not in self._subscribed:
            self._subscribed.add(source)
            try:
                await self.command(Command.PUSH_ENABLE, source)
            except BaseException:
                self._subscribed.discard(source)
                raise

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _read(self, _nursery: trio.Nursery | None = None) -> None:
        """The session's one reader: routes every message until the session ends."""
        try:
            while True:
                received = await self.client.receive()
                if received.skipped:
                    self.skipped += 1
                    continue
                message = received.message
                kind = received.kind
                if kind == "state":
                    self.latest = message.state
                    self._states.put(message.state)
                elif kind == "event":
                    if Source.EVENTS in self._subscribed:
                        self._events.put(message.event)
                elif kind == "runtime":
                    self.runtime = message.runtime
                elif kind == "notice":
                    self.notices += 1
                elif kind == "response":
                    waiting = self._waiting.pop(message.response.id, None)
                    if waiting is not None:
                        waiting.send_nowait(message.response)
        except ConnectionClosed as exc:
            self.close_reason = exc.reason
        except ProtocolError as exc:
            self._failure = exc
        finally:
            self.closed = True
            for waiting in self._waiting.values():
                waiting.close()
            self._states.wake()
            self._events.wake()


class _Snapshots:
    def __init__(self, node: FollowedNode, push: bool) -> None:
        self.node = node
        self.push = push

    def __aiter__(self) -> _Snapshots:
        return self

    async def __anext__(self) -> pb.State:
        node = self.node
        if self.push:
            await node._subscribe(Source.STATE)
        elif not node._states.items and not node.closed:
            with contextlib.suppress(ConnectionClosed):  # the reader sees it and ends it
                await node.client.ready()
        state = await node._states.get(node)
        if state is None:
            raise StopAsyncIteration
        return state


class _Events:
    def __init__(self, node: FollowedNode) -> None:
        self.node = node

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> pb.Event:
        await self.node._subscribe(Source.EVENTS)
        event = await self.node._events.get(self.node)
        if event is None:
            raise StopAsyncIteration
        return event


@asynccontextmanager
async def follow(
    url: str | None = None,
    *,
    token: str | None = None,
    entry: ServerEntry | None = None,
    registry: str | None = None,
    connect_timeout: float = 10.0,
) -> AsyncIterator[FollowedNode]:
    """Follow the server at ``url`` (``ws://HOST:PORT/introspect``) for the block.

    Without a URL: the one server in the registry (``registry``: its directory,
    default this user's), :data:`DEFAULT_URL` when none is registered, and
    :class:`~libp2p_introspection.client.discovery.NoChoice` (listing them) when
    several are: give one's URL, or use :func:`follow_all`. ``token``: as
    :func:`~libp2p_introspection.client.connection.connect` (sent to this server
    only). The yielded :class:`FollowedNode` already holds the node's ``Runtime`` and
    first snapshot (§4.2). Raises ``OSError`` / ``trio_websocket.HandshakeError`` when
    it cannot connect (a refused token is a ``HandshakeError`` with status 401 or 403),
    :class:`ProtocolError` for a server that does not speak the protocol.
    """
    if url is None:
        chosen = entry or choose(read_registry(registry).entries, None)
        entry, url = chosen, chosen.url if chosen else DEFAULT_URL
    async with connect(url, token=token, connect_timeout=connect_timeout) as client:
        runtime = (await client.receive_kind("runtime", limit=16)).message.runtime
        first = (await client.receive_kind("state", limit=16)).message.state
        node = FollowedNode(client, url, runtime, first, entry)
        async with _in_background(node._read):
            yield node


@dataclass
class Following:
    """What :func:`follow_all` yields: iterate it for ``(entry, snapshot)`` pairs
    (``ServerEntry``, ``pb.State``). ``nodes``: the servers followed now, by URL;
    ``problems``: one sentence per server that could not be followed or that broke
    the protocol, and per registry problem."""

    _receive: trio.MemoryReceiveChannel[tuple[ServerEntry, pb.State]]
    nodes: dict[str, FollowedNode] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __aiter__(self) -> AsyncIterator[tuple[ServerEntry, pb.State]]:
        return self._receive.__aiter__()


@asynccontextmanager
async def follow_all(
    *,
    token: str | Callable[[ServerEntry], str | None] | None = None,
    registry: str | None = None,
    rescan_s: float = 2.0,
) -> AsyncIterator[Following]:
    """Follow every server in the registry (``registry``: its directory, default this
    user's), one session each, for the block; re-read every ``rescan_s`` seconds, so
    that servers that start are followed and those that stop are let go (the
    iteration goes on with the others). Each session pulls at the script's pace: a
    server's next snapshot is asked for when its previous one was taken from the
    iteration.

    ``token``: a string goes to the servers whose entry says they require one, never
    to the others; a function of the ``ServerEntry`` chooses per server (``None``:
    none). The environment's ``LIBP2P_INTROSPECTION_TOKEN`` is not used here. A server
    that refuses the session or breaks the protocol is let go with a sentence in
    :attr:`Following.problems`, and is not tried again while its entry (URL and start
    time) stays the same.
    """
    send, receive = trio.open_memory_channel[tuple[ServerEntry, pb.State]](0)
    following = Following(receive)
    given_up: set[tuple[str, int]] = set()
    running: dict[tuple[str, int], trio.CancelScope] = {}

    def token_for(entry: ServerEntry) -> str:
        if callable(token):
            return token(entry) or ""
        return (token or "") if entry.token_required else ""

    async def one(entry: ServerEntry, scope: trio.CancelScope) -> None:
        key = (entry.url, entry.started_ms)
        with scope:
            try:
                async with follow(entry.url, token=token_for(entry), entry=entry) as node:
                    following.nodes[entry.url] = node
                    async for snapshot in node.snapshots():
                        await send.send((entry, snapshot))
                    if node.close_reason is not None:
                        log.info("%s closed: %s", entry.url, node.close_reason)
            except (OSError, HandshakeError, ProtocolError, ConnectionClosed) as exc:
                shown = defaults.printable(f"{entry.url}: {exc}")
                following.problems.append(f"not following {shown}")
            finally:
                given_up.add(key)  # a session that ended is not tried again for this entry
                following.nodes.pop(entry.url, None)
                running.pop(key, None)

    async def scan(nursery: trio.Nursery) -> None:
        while True:
            found = await trio.to_thread.run_sync(read_registry, registry)
            for problem in found.problems:
                if problem not in following.problems:
                    following.problems.append(problem)
            live = {(entry.url, entry.started_ms) for entry in found.entries}
            for key, scope in list(running.items()):
                if key not in live:  # its server is gone: let it go now
                    scope.cancel()
            for entry in found.entries:
                key = (entry.url, entry.started_ms)
                if key not in running and key not in given_up:
                    running[key] = trio.CancelScope()
                    nursery.start_soon(one, entry, running[key])
            await trio.sleep(rescan_s)

    async with _in_background(scan):
        async with receive:
            yield following


@asynccontextmanager
async def _in_background(task: Callable[[trio.Nursery], Awaitable[object]]) -> AsyncIterator[None]:
    """Run ``task(nursery)`` for the block, then cancel it. What the block raises comes
    out as itself, not in a nursery's exception group (the tasks run here catch what
    a server can cause, so a group left is a bug and comes out whole)."""
    raised: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(task, nursery)
        try:
            yield
        except BaseException as exc:  # re-raised below, unwrapped
            raised = exc
        finally:
            nursery.cancel_scope.cancel()
    if raised is not None:
        raise raised
