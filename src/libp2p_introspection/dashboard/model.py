"""The dashboard's state: what it shows (a store), where it comes from, who watches.

:class:`DashboardModel` is the :class:`~.feed.FeedSink` of the live feed and
the owner of the :class:`~.store.Store`. It converts each snapshot once,
stores it, and queues one prebuilt message for every open page
(:class:`~.browsers.BrowserHub`). Its source is either the live feed
(``mode == "live"``) or a loaded recording (``mode == "recording"``); both
fill a store the same way, so the page does not care which.

Browser messages (JSON objects, sent in arrays; shapes of the parts in
:mod:`.convert`, :mod:`.convert_swarm`, :mod:`.convert_ext` and
:mod:`.convert_events`)::

    {"t": "hello", "status": STATUS, "runtime": RUNTIME|null,
     "timeline": [ts, ...], "series": [SUMMARY, ...],
     "latest": PAGE_SNAPSHOT|null (:mod:`.page_json`: without its streams),
     "events": [EVENT, ...] (the newest HELLO_EVENTS, at most HELLO_EVENT_BYTES),
     "eventCounts": {type: n}, "eventTypes": [EVENT_TYPE, ...]}
    {"t": "snapshot", "seq": n, "oldest": ts of the oldest stored snapshot,
     "summary": SUMMARY, "data": PAGE_SNAPSHOT (SNAPSHOT without its streams, which
     pages ask for a page at a time, GET /api/streams: :mod:`.page_json`)}
    {"t": "delta", "seq": n, "base": n - 1, "oldest": ..., "summary": SUMMARY,
     "data": PAGE_DELTA (what changed since the snapshot numbered "base":
     :mod:`.page_json`)}
    {"t": "streams", "q": ..., "answer": ...} (to a page that said which page of
     streams it shows, right after each snapshot or delta: :mod:`.streams_api`)
    {"t": "event", "e": EVENT}
    {"t": "runtime", "runtime": RUNTIME}
    {"t": "status", "status": STATUS}
    {"t": "nodes", "nodes": NODES (:mod:`.nodes`) and "focus": the id of the
     node the other views show, or null}

The ``hello`` carries ``"nodes"`` too (the same object, ``null`` without a fleet),
and ``"seq"``: the number of the snapshot its ``latest`` is, the base of the next
``delta`` (``null``: the next is a whole ``snapshot``).

    STATUS = {"mode": "live"|"recording", "url": str, "connection":
              "connecting"|"connected"|"reconnecting"|"disconnected",
              "since": ms, "error": str, "paused": bool,
              "awaitingState": bool (a ready signal is unanswered: one more
                  snapshot may come, after a pause too), "notices": n,
              "recording": {"name", "records", "states", "events",
                            "checksumFailures", "truncated", "truncatedAt",
                            "overLimit", "overLimitReason"}|null,
              "overLimit": {"count": n, "reason": str} (messages or records
                  of the current source skipped for holding more than the
                  limits allow, and why the last one was),
              "effectiveConfig": {...}, "store": {...}}
"""

from __future__ import annotations

import logging
from typing import Any

from libp2p_introspection.dashboard.browsers import BrowserHub
from libp2p_introspection.dashboard.caps import dumps
from libp2p_introspection.dashboard.convert import (
    DEFAULT_CLOSED_TTL_MS,
    DEFAULT_MAX_SNAPSHOT_BYTES,
    JSON,
    SnapshotConverter,
    SnapshotTooLarge,
)
from libp2p_introspection.dashboard.convert_events import (
    event_to_json,
    event_type_to_json,
    runtime_to_json,
)
from libp2p_introspection.dashboard.feed import ConnectionState, LiveFeed, endpoint_key
from libp2p_introspection.dashboard.nodes import NodeFleet
from libp2p_introspection.dashboard.page_json import PageFeed, pack
from libp2p_introspection.dashboard.recording import RecordingInfo, over_limit_text
from libp2p_introspection.dashboard.save import server_message
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.dashboard.streams_api import StreamPages
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits

log = logging.getLogger(__name__)

#: Newest events sent in a ``hello`` (a page keeps what it gets afterwards).
HELLO_EVENTS = 5_000
#: At most this much of them, bytes (characters of their JSON text): the
#: newest that fit (honest events take well under 1 KiB each).
HELLO_EVENT_BYTES = 8 * 1024 * 1024


class DashboardModel:
    """See the module doc. ``feed`` is attached after construction (:meth:`attach_feed`)."""

    def __init__(
        self,
        store: Store,
        hub: BrowserHub | None = None,
        *,
        closed_ttl_ms: int = DEFAULT_CLOSED_TTL_MS,
        limits: RecordLimits = DEFAULT_LIMITS,
        max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
    ) -> None:
        self.store = store
        #: What one record of an uploaded recording may hold (the live feed has its own).
        self.limits = limits
        self.hub = hub or BrowserHub()
        self.converter = SnapshotConverter(
            closed_ttl_ms=closed_ttl_ms,
            max_connections=limits.max_connections,
            max_snapshot_bytes=max_snapshot_bytes,
        )
        self.feed: LiveFeed | None = None
        #: The Nodes view's nodes (:meth:`attach_nodes`), if any.
        self.nodes: NodeFleet | None = None
        self.mode = "live"
        self.recording: RecordingInfo | None = None
        self._live_store_bounds = store.bounds()
        #: The last ``hello`` built (a whole feed message) and what it was built from.
        self._hello: str | None = None
        self._hello_key: tuple[int, str] | None = None
        #: The page's form of the snapshots sent (deltas after the first), and the
        #: stored form of the last one sent.
        self.pages = PageFeed()
        #: The Streams tables' pages (``GET /api/streams``), from :attr:`store`'s snapshots.
        self.streams = StreamPages()
        self._page_stored: object = None

    def attach_feed(self, feed: LiveFeed) -> None:
        """Use ``feed`` as the live source."""
        self.feed = feed

    def attach_nodes(self, fleet: NodeFleet) -> None:
        """Show ``fleet`` in the Nodes view."""
        self.nodes = fleet

    # ------------------------------------------------------------- FeedSink

    def feed_switched(self, url: str) -> None:
        self.mode = "live"
        self.recording = None
        self.store = Store(**self._live_store_bounds)
        self.converter.reset()
        self.streams.clear()
        self._resync_all()
        self.broadcast_nodes()  # the focus moved

    def feed_runtime(self, runtime: pb.Runtime) -> None:
        data = runtime_to_json(runtime)
        raw = server_message("runtime", runtime.SerializeToString())  # kept for Save recording
        previous = self.store.runtime
        if previous is not None and previous.get("peerId") != data["peerId"]:
            # Another node answers at this URL now: its data must not mix with the old one's.
            where = self.feed.display_url if self.feed else "?"
            log.info("node at %s changed: %s", where, data["peerId"])
            self.store.clear()
            self.converter.reset()
            self.store.set_runtime(data, raw)
            self._resync_all()
            return
        self.store.set_runtime(data, raw)
        self._broadcast(dumps({"t": "runtime", "runtime": data}))

    def feed_state(self, state: pb.State) -> None:
        try:
            data, text = self.converter.convert_text(state)
        except SnapshotTooLarge as exc:  # skipped, and said on the page (status overLimit)
            if self.feed is not None:
                self.feed.note_skipped(str(exc))
            else:
                log.warning("skipped a snapshot: %s", exc)
            return
        raw = server_message("state", state.SerializeToString())
        stored = self.store.add_snapshot(data, raw, text)
        self.streams.prime(stored, data)  # before pages hear of it: they ask for its streams
        self._broadcast_snapshot(stored, data)

    def feed_event(self, event: pb.Event) -> None:
        type_info = event_type_to_json(event.type) if event.type.property_types else None
        raw = server_message("event", event.SerializeToString())
        type_raw = event.type.SerializeToString() if type_info is not None else b""
        stored = self.store.add_event(event_to_json(event), type_info, raw, type_raw)
        self._broadcast(f'{{"t":"event","e":{stored.text}}}')

    def feed_notice(self) -> None:
        self.broadcast_status()

    def feed_status(self) -> None:
        self.broadcast_status()

    # -------------------------------------------------------------- sources

    def show_recording(self, store: Store, info: RecordingInfo) -> None:
        """Show a loaded recording (stops the live feed; :meth:`connect` goes back)."""
        if self.feed is not None and self.feed.active:
            self.feed.stop()
        self.mode = "recording"
        self.recording = info
        self.store = store
        self.converter.reset()
        self.streams.clear()
        self._resync_all()

    def connect(self, url: str) -> None:
        """Show the live node at ``url`` (from a recording too)."""
        if self.feed is None:
            raise RuntimeError("no live feed attached")
        self.feed.switch(url)

    def pause(self) -> None:
        """Pause the live feed (see :meth:`.feed.LiveFeed.pause`)."""
        if self.feed is not None:
            self.feed.pause()

    def resume(self) -> None:
        """Resume the live feed."""
        if self.feed is not None:
            self.feed.resume()

    # ------------------------------------------------------------- messages

    def status(self) -> JSON:
        """The ``STATUS`` object (module doc)."""
        feed = self.feed
        return {
            "mode": self.mode,
            "url": feed.display_url if feed else "",
            "connection": feed.state.value if feed else ConnectionState.DISCONNECTED.value,
            "since": feed.since_ms if feed else 0,
            "error": feed.error if feed else "",
            "paused": feed.paused if feed else False,
            "awaitingState": feed.awaiting_state if feed else False,
            "notices": feed.notices if feed else 0,
            "effectiveConfig": feed.effective_config if feed else {},
            "recording": self.recording.to_json() if self.recording else None,
            "overLimit": self._over_limit(),
            "store": self.store.describe(),
        }

    def _over_limit(self) -> JSON:
        if self.recording is not None:
            count, reason = self.recording.over_limit, self.recording.over_limit_reason
            text = over_limit_text(count, reason) if count else ""
            return {"count": count, "reason": text}
        feed = self.feed
        if feed is None:
            return {"count": 0, "reason": ""}
        return {"count": feed.over_limit, "reason": feed.over_limit_reason}

    def _broadcast(self, text: str) -> None:
        self._hello = None  # out of date now: let it go (rebuilt when a page needs one)
        self.hub.broadcast(text)

    def _broadcast_snapshot(self, stored: Any, data: JSON) -> None:
        """The ``snapshot`` or ``delta`` message of ``data`` (just stored as ``stored``)."""
        pages = self.pages
        out_of_order = stored is not self.store.latest  # a hello's latest is not it: whole
        if out_of_order:
            pages.reset()
        kind, page = pages.next_text(data)
        base = f'"base":{pages.seq - 1},' if kind == "delta" else ""
        self._broadcast(
            f'{{"t":"{kind}","seq":{pages.seq},{base}"oldest":{self.store.oldest_ts},'
            f'"summary":{stored.summary_text},"data":{page}}}'
        )
        self._page_stored = stored
        # Each page showing the Streams view: its page of this snapshot's streams, next.
        self.hub.put_each(self.streams.feed_answers(self.store, stored))
        if out_of_order:
            pages.reset()

    def _resync_all(self) -> None:
        self._hello = None
        self.pages.reset()
        self.hub.resync_all()

    def _hello_latest(self, latest: Any) -> str:
        """The hello's latest snapshot: its ``PAGE_SNAPSHOT`` text (without its streams,
        which pages ask for a page at a time), made from what the page feed keeps when
        it is the snapshot sent last, else from the stored one (a recording shown)."""
        if latest is None:
            return "null"
        if self.pages.has_base and latest is self._page_stored:
            text = self.pages.whole_text()
            if text is not None:
                return text
        return dumps(pack(latest.data))

    def nodes_json(self) -> JSON | None:
        """``NODES`` with ``"focus"``: the node the live feed shows (``None`` without a fleet)."""
        if self.nodes is None:
            return None
        data = self.nodes.to_json()
        focus = None
        if self.mode == "live" and self.feed is not None:
            node = self.nodes.nodes.get(endpoint_key(self.feed.url))
            focus = node.id if node is not None else None
        data["focus"] = focus
        return data

    def broadcast_nodes(self) -> None:
        """Tell every page the Nodes view's rows (nothing without a fleet)."""
        if self.nodes is not None:
            self._broadcast(dumps({"t": "nodes", "nodes": self.nodes_json()}))

    def broadcast_status(self) -> None:
        """Tell every page the current status."""
        self._broadcast(dumps({"t": "status", "status": self.status()}))

    def hello(self) -> str:
        """The ``hello`` as a whole feed message: a JSON array text holding only it.

        Everything a page needs to draw the current picture: the latest
        snapshot, the timeline and chart series, the newest events
        (:data:`HELLO_EVENTS`, at most :data:`HELLO_EVENT_BYTES` of them).
        Built once per change (a message broadcast, a resync, a new status)
        and the same text returned to every page until the next, so pages
        that connect or resync together share one copy.
        """
        status = self.status()
        key = (self.hub.generation, dumps(status))
        if self._hello is not None and self._hello_key == key:
            return self._hello
        self._hello = None  # let the old one go before building the new
        store = self.store
        latest = store.latest
        events = store.stored_events(limit=HELLO_EVENTS, max_bytes=HELLO_EVENT_BYTES)
        head: dict[str, Any] = {
            "t": "hello",
            "status": status,
            "runtime": store.runtime,
            "timeline": store.timeline(),
            "series": store.series(),
            "eventCounts": store.event_counts(),
            "eventTypes": list(store.event_types.values()),
            "nodes": self.nodes_json(),
            # The base of the next delta: the snapshot sent last, if it is the latest.
            "seq": self.pages.seq
            if self.pages.has_base and latest is not None and latest is self._page_stored
            else None,
        }
        # Splice in the prebuilt texts of the latest snapshot and the events.
        self._hello = "".join(
            (
                "[",
                dumps(head)[:-1],
                ',"events":[',
                ",".join(e.text for e in events),
                '],"latest":',
                self._hello_latest(latest),
                "}]",
            )
        )
        self._hello_key = key
        return self._hello
