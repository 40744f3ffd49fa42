"""Run the dashboard: the live feed plus the web page, on trio (hypercorn's protocol code)."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import trio

from libp2p_introspection import config as defaults
from libp2p_introspection.dashboard.app import create_app
from libp2p_introspection.dashboard.bodies import UPLOAD_TIMEOUT_S
from libp2p_introspection.dashboard.browsers import (
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PENDING_BYTES,
    BrowserHub,
)
from libp2p_introspection.dashboard.convert import (
    DEFAULT_CLOSED_TTL_MS,
    DEFAULT_MAX_SNAPSHOT_BYTES,
)
from libp2p_introspection.dashboard.feed import LiveFeed
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.nodes import MAX_NODES, PULL_INTERVAL_S, NodeFleet
from libp2p_introspection.dashboard.recording import (
    DEFAULT_MAX_UPLOAD_BYTES,
    load_recording,
    over_limit_text,
)
from libp2p_introspection.dashboard.serving import DEFAULT_SEND_TIMEOUT_S, serve_asgi
from libp2p_introspection.dashboard.store import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_SNAPSHOTS,
    DEFAULT_RETENTION_MS,
    Store,
)
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits

log = logging.getLogger(__name__)

#: Rows of the Nodes view are sent to pages at most this often, seconds.
NODES_BROADCAST_S = 1.0


@dataclass(frozen=True)
class DashboardConfig:
    """Options of the dashboard (flags of ``libp2p-introspect dashboard``).

    ``host``/``port``: where the page is served (127.0.0.1:8846; port 0 picks
    a free one). ``url``: the introspection server to follow. ``file``: show
    this recording instead at start (the page can still connect to a node).
    ``retention_ms``: how far back the live store keeps snapshots and events,
    ms. ``max_snapshots``/``max_events``: count bounds of the store, and
    ``max_bytes``/``max_event_bytes`` the bounds on its snapshots' and events'
    JSON text and original bytes, bytes (a recording is bound by these only).
    ``max_upload_bytes``: largest recording accepted from the page;
    ``upload_timeout_s``: how long its whole body may take to arrive, seconds.
    ``events``: subscribe to the node's events.
    ``token``: the introspection server's shared token, if it requires one.
    ``closed_ttl_ms``: how long a connection that vanished from the server's
    snapshots is still shown as closed, ms. ``max_pending``/``max_pending_bytes``:
    messages (and their bytes) queued for one browser before it is resynced
    instead. ``max_pages``: pages (``/feed`` connections) open at once; more
    are refused with HTTP 503. ``send_timeout_s``: a
    browser that accepts no bytes for this long is disconnected, seconds.
    ``limits``: what one snapshot (live, or a recording's record) may hold
    before it is skipped with a notice on the page; ``max_snapshot_bytes``:
    the most characters of JSON one converted snapshot may take (carried
    connections included), likewise.
    ``nodes``: keep the Nodes view (:mod:`.nodes`): follow the registry's
    servers (``registry_dir``, ``None``: the user's), those added by URL and
    ``url``, with ``lan`` those announced over mDNS too; at most ``max_nodes``,
    each pulled every ``node_pull_s`` seconds.
    """

    host: str = defaults.DEFAULT_HOST
    port: int = defaults.DEFAULT_DASHBOARD_PORT
    url: str = defaults.default_url()
    file: str | None = None
    retention_ms: int = DEFAULT_RETENTION_MS
    max_snapshots: int = DEFAULT_MAX_SNAPSHOTS
    max_events: int = DEFAULT_MAX_EVENTS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    upload_timeout_s: float = UPLOAD_TIMEOUT_S
    events: bool = True
    token: str | None = None
    closed_ttl_ms: int = DEFAULT_CLOSED_TTL_MS
    max_pending: int = DEFAULT_MAX_PENDING
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    max_pages: int = DEFAULT_MAX_PAGES
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    limits: RecordLimits = DEFAULT_LIMITS
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
    nodes: bool = True
    lan: bool = False
    max_nodes: int = MAX_NODES
    node_pull_s: float = PULL_INTERVAL_S
    registry_dir: str | None = None


class Dashboard:
    """The dashboard service. ``await nursery.start(dashboard.run)``, then :attr:`url`.

    A ``config.file`` is loaded before anything is served (errors raise
    :class:`~.recording.RecordingLoadError`); the live feed then starts
    stopped, and the page's "connect" starts it.
    """

    def __init__(self, config: DashboardConfig | None = None) -> None:
        self.config = config = config or DashboardConfig()
        store = Store(
            retention_ms=config.retention_ms,
            max_snapshots=config.max_snapshots,
            max_events=config.max_events,
            max_bytes=config.max_bytes,
            max_event_bytes=config.max_event_bytes,
        )
        self.model = DashboardModel(
            store,
            BrowserHub(
                config.max_pending,
                max_pending_bytes=config.max_pending_bytes,
                max_pages=config.max_pages,
            ),
            closed_ttl_ms=config.closed_ttl_ms,
            limits=config.limits,
            max_snapshot_bytes=config.max_snapshot_bytes,
        )
        self.feed = LiveFeed(
            config.url,
            self.model,
            retention_ms=config.retention_ms,
            events=config.events,
            token=config.token,
            limits=config.limits,
        )
        self.model.attach_feed(self.feed)
        self._nodes_dirty = trio.Event()
        self.fleet: NodeFleet | None = None
        if config.nodes:
            self.fleet = NodeFleet(
                token_for=self.feed.token_for,
                on_change=lambda: self._nodes_dirty.set(),
                registry_dir=config.registry_dir,
                lan=config.lan,
                max_nodes=config.max_nodes,
                pull_interval_s=config.node_pull_s,
                limits=config.limits,
            )
            self.model.attach_nodes(self.fleet)
            if config.file is None:
                self.fleet.add(config.url)
        self.app = create_app(
            self.model,
            max_upload_bytes=config.max_upload_bytes,
            bind_host=config.host,
            upload_timeout_s=config.upload_timeout_s,
        )
        self.port: int | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` of the running page."""
        if self.port is None:
            raise RuntimeError("the dashboard is not listening yet")
        return defaults.page_url(self.config.host, self.port)

    async def run(
        self, *, task_status: trio.TaskStatus[Dashboard] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled. Raises ``OSError`` if the port cannot be bound."""
        config = self.config
        if config.file is not None:
            path = config.file
            store, info = await trio.to_thread.run_sync(
                lambda: load_recording(
                    path,
                    name=os.path.basename(path),
                    max_snapshots=config.max_snapshots,
                    max_events=config.max_events,
                    max_bytes=config.max_bytes,
                    max_event_bytes=config.max_event_bytes,
                    closed_ttl_ms=config.closed_ttl_ms,
                    limits=config.limits,
                    max_snapshot_bytes=config.max_snapshot_bytes,
                )
            )
            if info.over_limit:
                log.warning("%s: %s", path, over_limit_text(info.over_limit,
                                                           info.over_limit_reason))  # fmt: skip
            if info.checksum_failures:
                log.warning("%s: %d records failed their checksum and were skipped", path,
                            info.checksum_failures)  # fmt: skip
            if info.truncated:
                log.warning(
                    "%s: truncated at offset %s (the tail was cut off); showing the %d "
                    "records before it", path, info.truncated_at, info.records,
                )  # fmt: skip
            self.model.show_recording(store, info)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.feed.run)
            if self.fleet is not None:
                await nursery.start(self.fleet.run)
                nursery.start_soon(self._broadcast_nodes)
            self.port = await nursery.start(
                functools.partial(
                    serve_asgi,
                    self.app,
                    config.host,
                    config.port,
                    send_timeout_s=config.send_timeout_s,
                )
            )
            log.info("dashboard at %s following %s", self.url, self.feed.display_url)
            task_status.started(self)
            await trio.sleep_forever()

    async def _broadcast_nodes(self) -> None:
        """Send the Nodes view's rows when they changed, at most every NODES_BROADCAST_S."""
        while True:
            await self._nodes_dirty.wait()
            self._nodes_dirty = trio.Event()
            self.model.broadcast_nodes()
            await trio.sleep(NODES_BROADCAST_S)
