"""The Nodes view's data: every introspection server the dashboard knows of, each
followed by a light summary session.

:class:`NodeFleet` keeps a list of nodes: those of the user's registry (PROTOCOL.md
§6, re-read every :data:`REFRESH_S`), those announced on the local network (with
``lan``, browsed every :data:`LAN_REFRESH_S`), and those added by URL (the page's
"add", and the URL the dashboard was started for). Each node is followed by one
task holding one protocol session open with no push streams: it signals ready
every ``pull_interval_s`` seconds (§4.3), reads the snapshot, and keeps only the
numbers the row shows (:func:`summarize_state`) plus the last :data:`SPARK_POINTS`
bandwidth points. What one node costs is therefore bounded: a few hundred bytes of
summary, its strings capped at :data:`MAX_SHOWN` characters, one WebSocket, one
snapshot parsed every few seconds. At most ``max_nodes`` (:data:`MAX_NODES`, 64)
are followed; servers found beyond that are counted (``notFollowed``), and adding
one by URL is refused with :class:`FleetFull`.

A node's status (:class:`NodeStatus`): ``connecting`` until its first snapshot,
``live`` while its session is open, ``gone`` when the session ended or cannot be
opened (the task keeps trying, 0.5 s doubling to 10 s; it goes ``live`` again
when the node comes back), ``refused`` when the server turned the session down
(HTTP 401/403/404: a token it requires, an origin it refuses; tried every 10 s).
A node no longer registered nor announced nor added, and not ``live``, is
dropped after ``gone_ttl_s`` (:data:`GONE_TTL_S`, 60 s): a node that goes away
stays listed as gone for that long.

The token rule is the live feed's: a node is sent the token only if it is the
server the dashboard was started for (``token_for``); every other gets none.

Shape of :meth:`NodeFleet.to_json` (``NODES``; ms since the epoch, bytes/s)::

    {"nodes": [NODE, ...], "max": max_nodes, "notFollowed": n,
     "problems": [str, ...] (discovery's, the last refresh's), "lan": bool}
    NODE = {"id": str, "url": str (token redacted), "origins": ["registry"|"lan"|"added"],
            "peerId": str, "implementation": str, "status": "connecting"|"live"|
            "gone"|"refused", "since": ms, "error": str, "tokenRequired": bool,
            "conns": n (ACTIVE), "connsTotal": n, "streams": n,
            "bwIn": B/s, "bwOut": B/s, "ts": instant_ts of the last snapshot (0: none),
            "spark": [[ts, bwIn, bwOut], ...] (oldest first, at most SPARK_POINTS)}
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import trio
from trio_websocket import ConnectionRejected

from libp2p_introspection import config as defaults
from libp2p_introspection.client import discovery
from libp2p_introspection.client.connection import IntrospectionClient, connect
from libp2p_introspection.dashboard.caps import capped
from libp2p_introspection.dashboard.errors import DashboardError
from libp2p_introspection.dashboard.feed import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    CONNECT_TIMEOUT_S,
    describe_failure,
    endpoint_key,
)
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.discovery import ServerEntry
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits

log = logging.getLogger(__name__)

#: Most nodes followed at once.
MAX_NODES = 64
#: Seconds between two snapshots pulled from one node.
PULL_INTERVAL_S = 2.0
#: Seconds between two readings of the registry.
REFRESH_S = 2.0
#: Seconds between two mDNS browses (with ``lan``), and how long one listens.
LAN_REFRESH_S = 30.0
LAN_LISTEN_S = 3.0
#: How long a node that is no longer found stays listed once it is not live, seconds.
GONE_TTL_S = 60.0
#: Bandwidth points kept per node (the row's sparkline).
SPARK_POINTS = 30
#: Longest string kept of what a node or an entry says (peer id, implementation,
#: URL, error), characters; longer ones are cut and the cut shown.
MAX_SHOWN = 256


class NodeStatus(StrEnum):
    """Where the dashboard stands with one node (module doc)."""

    CONNECTING = "connecting"
    LIVE = "live"
    GONE = "gone"
    REFUSED = "refused"


class FleetFull(DashboardError):
    """Already ``max_nodes`` nodes are followed; the message says so."""


def summarize_state(state: pb.State) -> dict[str, int]:
    """The numbers a row shows, counted on the protobuf ``State`` itself (no conversion):
    ``conns`` (ACTIVE connections), ``connsTotal``, ``streams`` (of every connection),
    ``bwIn``/``bwOut`` (the node's, bytes/s) and ``ts`` (its ``instant_ts``, ms)."""
    connections = state.subsystems.connections
    active = sum(1 for c in connections if c.status == pb.Status.ACTIVE)
    return {
        "ts": state.instant_ts,
        "conns": active,
        "connsTotal": len(connections),
        "streams": sum(len(c.streams.streams) for c in connections),
        "bwIn": state.traffic.traffic_in.inst_bw,
        "bwOut": state.traffic.traffic_out.inst_bw,
    }


class FollowedNode:
    """One row of the Nodes view: what is known of one server (see :meth:`to_json`)."""

    def __init__(self, node_id: str, url: str, clock: Callable[[], float]) -> None:
        self.id = node_id
        #: Where to connect (token included, if the URL carries one: never shown).
        self.url = url
        self.key = endpoint_key(url)
        self.display_url = capped(defaults.redact(url, defaults.token_secrets(url)), MAX_SHOWN)
        self.origins: set[str] = set()
        self.peer_id = ""
        self.implementation = ""
        self.token_required = False
        self.status = NodeStatus.CONNECTING
        self.error = ""
        self.since_ms = _now_ms()
        #: When it was last live or found, on ``clock`` (seconds): the gone rule counts from it.
        self.seen_at = clock()
        self.summary: dict[str, int] = {}
        self.spark: deque[tuple[int, int, int]] = deque(maxlen=SPARK_POINTS)
        self.scope = trio.CancelScope()

    def describe(self, entry: ServerEntry) -> None:
        """Take what a registry entry or an announcement says (until the node says more)."""
        if not self.peer_id:
            self.peer_id = capped(entry.peer_id, MAX_SHOWN)
        if not self.implementation:
            self.implementation = capped(entry.implementation, MAX_SHOWN)
        self.token_required = entry.token_required

    def set_status(self, status: NodeStatus, error: str = "") -> bool:
        """Change the status; whether anything changed."""
        error = capped(error, MAX_SHOWN)
        if status == self.status and error == self.error:
            return False
        if status != self.status:
            self.since_ms = _now_ms()
        self.status, self.error = status, error
        return True

    def to_json(self) -> dict[str, Any]:
        """``NODE`` (module doc)."""
        s = self.summary
        return {
            "id": self.id, "url": self.display_url, "origins": sorted(self.origins),
            "peerId": self.peer_id, "implementation": self.implementation,
            "status": self.status.value, "since": self.since_ms, "error": self.error,
            "tokenRequired": self.token_required,
            "conns": s.get("conns", 0), "connsTotal": s.get("connsTotal", 0),
            "streams": s.get("streams", 0), "bwIn": s.get("bwIn", 0), "bwOut": s.get("bwOut", 0),
            "ts": s.get("ts", 0), "spark": [list(p) for p in self.spark],
        }  # fmt: skip


class NodeFleet:
    """The nodes of the Nodes view and the tasks following them; see the module doc.

    ``token_for(url)``: the token to present to ``url`` (the live feed's rule).
    ``on_change()``: called (on the trio thread) when a row changed; the caller
    coalesces. ``registry_dir``: the registry to read (``None``: the user's).
    ``clock``: seconds, for the gone rule (default ``trio.current_time``).
    Run with ``await nursery.start(fleet.run)``; :meth:`add` works before too.
    """

    def __init__(
        self,
        *,
        token_for: Callable[[str], str | None] = lambda url: "",
        on_change: Callable[[], None] = lambda: None,
        registry_dir: str | None = None,
        lan: bool = False,
        max_nodes: int = MAX_NODES,
        pull_interval_s: float = PULL_INTERVAL_S,
        gone_ttl_s: float = GONE_TTL_S,
        limits: RecordLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.token_for = token_for
        self.on_change = on_change
        self.registry_dir = registry_dir
        self.lan = lan
        self.max_nodes = max_nodes
        self.pull_interval_s = pull_interval_s
        self.gone_ttl_s = gone_ttl_s
        self.limits = limits
        self.clock = clock or trio.current_time
        self.nodes: dict[tuple[str, ...], FollowedNode] = {}
        self.not_followed = 0
        self.problems: list[str] = []
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self._pending: list[FollowedNode] = []

    # ------------------------------------------------------------ the list

    def by_id(self, node_id: str) -> FollowedNode | None:
        """The node of that id, if it is listed."""
        return next((n for n in self.nodes.values() if n.id == node_id), None)

    def add(self, url: str, origin: str = "added") -> FollowedNode:
        """Follow ``url`` (already normalized), or mark the node there with ``origin``.
        Raises :class:`FleetFull` when ``max_nodes`` are followed already."""
        key = endpoint_key(url)
        node = self.nodes.get(key)
        if node is None:
            if len(self.nodes) >= self.max_nodes:
                raise FleetFull(f"already following {self.max_nodes} nodes, the most there may "
                                "be; remove one first")  # fmt: skip
            node = FollowedNode(f"n{next(self._ids)}", url, self.clock)
            self.nodes[key] = node
            self._start(node)
        if origin not in node.origins:
            node.origins.add(origin)
            self.on_change()
        return node

    def remove(self, node_id: str) -> bool:
        """Stop following a node added by URL (one also discovered stays, as found);
        whether the node was listed."""
        node = self.by_id(node_id)
        if node is None:
            return False
        node.origins.discard("added")
        if not node.origins:
            self._drop(node)
        self.on_change()
        return True

    def found(self, entries: list[ServerEntry], origin: str) -> None:
        """What one discovery pass found (``origin`` ``"registry"`` or ``"lan"``): new
        servers are followed (as room allows), the others lose ``origin``."""
        keys = set()
        not_followed = 0
        for entry in entries:
            key = endpoint_key(entry.url)
            keys.add(key)
            try:
                node = self.add(entry.url, origin)
            except FleetFull:
                not_followed += 1
                continue
            node.seen_at = self.clock()
            node.describe(entry)
        for node in self.nodes.values():
            if origin in node.origins and node.key not in keys:
                node.origins.discard(origin)
                self.on_change()
        if not_followed != self.not_followed:
            self.not_followed = not_followed
            self.on_change()

    def expire(self) -> None:
        """Drop the nodes no longer found nor added that have not been live for
        ``gone_ttl_s`` seconds."""
        now = self.clock()
        for node in list(self.nodes.values()):
            if node.status == NodeStatus.LIVE:
                node.seen_at = now
            elif not node.origins and now - node.seen_at >= self.gone_ttl_s:
                self._drop(node)
                self.on_change()

    def _drop(self, node: FollowedNode) -> None:
        node.scope.cancel()
        self.nodes.pop(node.key, None)

    def to_json(self) -> dict[str, Any]:
        """``NODES`` (module doc)."""
        return {
            "nodes": [node.to_json() for node in self.nodes.values()],
            "max": self.max_nodes,
            "notFollowed": self.not_followed,
            "problems": [capped(p, MAX_SHOWN * 2) for p in self.problems[:10]],
            "lan": self.lan,
        }

    # ---------------------------------------------------------------- tasks

    def _start(self, node: FollowedNode) -> None:
        if self._nursery is None:
            self._pending.append(node)
        else:
            self._nursery.start_soon(self._follow, node)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Discover, follow and expire until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for node in self._pending:
                nursery.start_soon(self._follow, node)
            self._pending.clear()
            await self.refresh()
            if self.lan:
                nursery.start_soon(self._browse_loop)
            task_status.started()
            while True:
                await trio.sleep(REFRESH_S)
                await self.refresh()

    async def refresh(self) -> None:
        """Read the registry once (in a thread), take what it holds, expire the gone."""
        result = await trio.to_thread.run_sync(discovery.read_registry, self.registry_dir)
        if result.problems != self.problems:
            self.problems = result.problems
            self.on_change()
        self.found(result.entries, "registry")
        self.expire()

    async def _browse_loop(self) -> None:
        while True:
            result = await trio.to_thread.run_sync(discovery.browse_lan, LAN_LISTEN_S)
            for problem in result.problems:
                log.info("nodes: %s", problem)
            self.found(result.entries, "lan")
            await trio.sleep(LAN_REFRESH_S)

    async def _follow(self, node: FollowedNode) -> None:
        """Keep a summary session with ``node`` until it is dropped."""
        backoff = BACKOFF_MIN_S
        with node.scope:
            while True:
                try:
                    await self._session(node)
                    error, status = "the server ended the session", NodeStatus.GONE
                except Exception as exc:
                    described = describe_failure(exc)
                    if described is None:
                        log.exception("nodes: unexpected error following %s", node.display_url)
                        described = f"internal error: {exc!r}"
                    error = defaults.redact(described, defaults.token_secrets(node.url))
                    refused = isinstance(_leaf(exc), ConnectionRejected)
                    status = NodeStatus.REFUSED if refused else NodeStatus.GONE
                if node.status == NodeStatus.LIVE:
                    backoff = BACKOFF_MIN_S
                if status == NodeStatus.REFUSED:
                    backoff = BACKOFF_MAX_S
                if node.set_status(status, error):
                    self.on_change()
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _session(self, node: FollowedNode) -> None:
        token = self.token_for(node.url)
        async with connect(node.url, token=token, connect_timeout=CONNECT_TIMEOUT_S,
                           limits=self.limits) as client:  # fmt: skip
            with trio.fail_after(CONNECT_TIMEOUT_S):
                runtime = await client.receive_kind("runtime", limit=16)
                if not runtime.skipped:
                    rt = runtime.message.runtime
                    node.peer_id = capped(rt.peer_id, MAX_SHOWN)
                    node.implementation = capped(rt.implementation, MAX_SHOWN)
                self._take(node, await client.receive_kind("state", limit=16))
            node.set_status(NodeStatus.LIVE)
            node.seen_at = self.clock()
            self.on_change()
            while True:
                await trio.sleep(self.pull_interval_s)
                await client.ready()
                with trio.fail_after(self.pull_interval_s + CONNECT_TIMEOUT_S):
                    self._take(node, await _next_state(client))
                self.on_change()

    def _take(self, node: FollowedNode, received: Any) -> None:
        if received.skipped:  # over the limits: the row keeps its last numbers
            node.error = capped(f"skipped a snapshot: {received.skipped}", MAX_SHOWN)
            return
        summary = summarize_state(received.message.state)
        node.summary = summary
        node.error = ""
        last = node.spark[-1][0] if node.spark else -1
        if summary["ts"] > last:
            node.spark.append((summary["ts"], summary["bwIn"], summary["bwOut"]))


async def _next_state(client: IntrospectionClient) -> Any:
    """The next ``State`` (a runtime, a response or a notice may come first)."""
    return await client.receive_kind("state", limit=64)


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _now_ms() -> int:
    return int(time.time() * 1000)
