"""The dashboard's memory: a time-indexed, bounded store of snapshots and events.

Pure (no I/O, no clock of its own): time is the source's time, the
``instant_ts`` of the newest snapshot, so a live node and a recording are
kept the same way. Bounds:

- ``retention_ms``: snapshots older than the newest one's ``instant_ts``
  minus this are dropped, and so are events whose ``ts`` is older (events
  are kept in arrival order, which is not ``ts`` order, so an old event
  behind newer ones goes when it reaches the front); ``None``: no time
  bound (a recording is kept whole, within the count bounds);
- ``max_snapshots`` and ``max_events``: counts, oldest first;
- ``max_bytes``: the total size of the stored snapshots' JSON text, oldest
  first (a node with thousands of connections makes snapshots of megabytes).

Snapshots are stored as their JSON text (see :mod:`.convert`) and their chart
summary, computed once; the parsed form is not kept. Each connection's
traffic over the stored snapshots is kept on the side, small, so that a
per-connection chart does not reparse every snapshot.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from libp2p_introspection.dashboard.convert import JSON, dumps, summarize

#: Default retention window, ms (the server's default maximum retention).
DEFAULT_RETENTION_MS = 120_000
#: Default bound on stored snapshots (2 hours at the default 1 s interval).
DEFAULT_MAX_SNAPSHOTS = 7_200
#: Default bound on stored events.
DEFAULT_MAX_EVENTS = 50_000
#: Default bound on the stored snapshots' JSON text, bytes (characters).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: Fields of one point of a connection's series.
_SERIES_FIELDS = ("bwIn", "bwOut", "in", "out", "status")


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """One snapshot: its ``instant_ts``, JSON text and chart summary (and its text)."""

    ts: int
    text: str
    summary: JSON
    summary_text: str

    @property
    def data(self) -> JSON:
        """The converted snapshot, parsed again from its text (a new dict each time)."""
        parsed: JSON = json.loads(self.text)
        return parsed


@dataclass
class Store:
    """Snapshots by ``instant_ts`` and events by arrival, bounded (see the module doc).

    Not thread-safe; used from the trio thread only (a recording is loaded
    into a fresh store in a worker thread, then swapped in).
    """

    retention_ms: int | None = DEFAULT_RETENTION_MS
    max_snapshots: int = DEFAULT_MAX_SNAPSHOTS
    max_events: int = DEFAULT_MAX_EVENTS
    max_bytes: int = DEFAULT_MAX_BYTES
    runtime: JSON | None = None
    #: Event types by name, as declared by the runtime and by first events.
    event_types: dict[str, JSON] = field(default_factory=dict)
    _ts: list[int] = field(default_factory=list)
    _snapshots: list[StoredSnapshot] = field(default_factory=list)
    _events: deque[JSON] = field(default_factory=deque)
    _event_counts: Counter[str] = field(default_factory=Counter)
    _next_seq: int = 1
    _bytes: int = 0
    #: Per connection id: its points ``{"ts", "bwIn", "bwOut", "in", "out", "status"}``.
    _conn_series: dict[str, deque[JSON]] = field(default_factory=dict)
    #: Events dropped by the bounds so far (for the status line).
    events_dropped: int = 0

    # ----------------------------------------------------------------- writing

    def set_runtime(self, runtime: JSON) -> None:
        """Record the node's runtime (and the event types it declares)."""
        self.runtime = runtime
        for event_type in runtime.get("eventTypes", []):
            self.event_types[event_type["name"]] = event_type

    def add_snapshot(self, data: JSON) -> StoredSnapshot:
        """Store a converted snapshot; returns the stored form.

        A snapshot with the ``ts`` of a stored one replaces it; one older
        than the newest is inserted in place (never expected from a server,
        §4.1, but harmless). Prunes afterwards.
        """
        summary = summarize(data)
        stored = StoredSnapshot(data["ts"], dumps(data), summary, dumps(summary))
        index = bisect.bisect_left(self._ts, stored.ts)
        if index < len(self._ts) and self._ts[index] == stored.ts:
            self._bytes -= len(self._snapshots[index].text)
            self._snapshots[index] = stored
        else:
            self._ts.insert(index, stored.ts)
            self._snapshots.insert(index, stored)
        self._bytes += len(stored.text)
        self._add_series_points(stored.ts, data)
        self.prune()
        return stored

    def _add_series_points(self, ts: int, data: JSON) -> None:
        for conn in data["conns"]:
            point = {key: conn[key] for key in _SERIES_FIELDS}
            point["ts"] = ts
            series = self._conn_series.setdefault(conn["id"], deque())
            if series and series[-1]["ts"] >= ts:  # a replaced or late snapshot (rare)
                kept = [p for p in series if p["ts"] != ts] + [point]
                series.clear()
                series.extend(sorted(kept, key=lambda p: p["ts"]))
            else:
                series.append(point)

    def add_event(self, event: JSON, type_info: JSON | None = None) -> JSON:
        """Store an event (shape of :func:`.convert.event_to_json`); numbers it; returns it.

        ``type_info``: the event's full type, when the server declared it with
        the event (first event of a type the runtime did not list).
        """
        if type_info is not None and type_info.get("properties"):
            self.event_types.setdefault(type_info["name"], type_info)
        event["seq"] = self._next_seq
        self._next_seq += 1
        self._events.append(event)
        self._event_counts[event["type"]] += 1
        self.prune_events()
        return event

    def prune(self) -> None:
        """Apply the bounds to snapshots and events."""
        excess = len(self._ts) - self.max_snapshots
        horizon = self.horizon
        if horizon is not None:
            # Keep at least the newest snapshot, whatever the window.
            cut = min(bisect.bisect_left(self._ts, horizon), len(self._ts) - 1)
            excess = max(excess, cut)
        excess = max(excess, 0)
        remaining = self._bytes - sum(len(s.text) for s in self._snapshots[:excess])
        while excess < len(self._ts) - 1 and remaining > self.max_bytes:
            remaining -= len(self._snapshots[excess].text)
            excess += 1
        if excess > 0:
            self._bytes = remaining
            del self._ts[:excess]
            del self._snapshots[:excess]
            oldest = self._ts[0]
            for conn_id in list(self._conn_series):
                series = self._conn_series[conn_id]
                while series and series[0]["ts"] < oldest:
                    series.popleft()
                if not series:
                    del self._conn_series[conn_id]
        self.prune_events()

    def prune_events(self) -> None:
        """Apply the bounds to events."""
        horizon = self.horizon
        while self._events and (
            len(self._events) > self.max_events
            or (horizon is not None and self._events[0]["ts"] < horizon)
        ):
            dropped = self._events.popleft()
            self.events_dropped += 1
            self._event_counts[dropped["type"]] -= 1
            if self._event_counts[dropped["type"]] <= 0:
                del self._event_counts[dropped["type"]]

    def clear(self) -> None:
        """Forget everything (the dashboard switched to another node or file)."""
        self.runtime = None
        self.event_types.clear()
        self._ts.clear()
        self._snapshots.clear()
        self._bytes = 0
        self._conn_series.clear()
        self._events.clear()
        self._event_counts.clear()
        self.events_dropped = 0

    # ----------------------------------------------------------------- reading

    def bounds(self) -> dict[str, Any]:
        """This store's bounds, as keyword arguments for a new :class:`Store`."""
        return {
            "retention_ms": self.retention_ms,
            "max_snapshots": self.max_snapshots,
            "max_events": self.max_events,
            "max_bytes": self.max_bytes,
        }

    @property
    def horizon(self) -> int | None:
        """Oldest ``ts`` kept by the time bound (``None``: no time bound or no snapshot)."""
        if self.retention_ms is None or not self._ts:
            return None
        return self._ts[-1] - self.retention_ms

    @property
    def latest(self) -> StoredSnapshot | None:
        """The newest snapshot."""
        return self._snapshots[-1] if self._snapshots else None

    @property
    def oldest_ts(self) -> int | None:
        """``instant_ts`` of the oldest stored snapshot."""
        return self._ts[0] if self._ts else None

    def __len__(self) -> int:
        return len(self._ts)

    def at(self, ts: int) -> StoredSnapshot | None:
        """The snapshot the page shows for the moment ``ts``: the newest at or before it.

        Before the first stored snapshot: the first one. ``None`` if empty.
        """
        if not self._ts:
            return None
        index = bisect.bisect_right(self._ts, ts) - 1
        return self._snapshots[max(index, 0)]

    def timeline(self) -> list[int]:
        """``instant_ts`` of every stored snapshot, oldest first."""
        return list(self._ts)

    def snapshots(self) -> Iterator[StoredSnapshot]:
        """Stored snapshots, oldest first."""
        return iter(self._snapshots)

    def series(self) -> list[JSON]:
        """The chart summary of every stored snapshot, oldest first."""
        return [s.summary for s in self._snapshots]

    def connection_series(self, conn_id: str) -> list[JSON]:
        """One connection's traffic over the stored snapshots, oldest first.

        ``[{"ts", "bwIn", "bwOut", "in", "out", "status"}]``, only for the
        snapshots that hold the connection.
        """
        return list(self._conn_series.get(conn_id, ()))

    def events(
        self,
        *,
        after_seq: int = 0,
        until_ts: int | None = None,
        types: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[JSON]:
        """Stored events in arrival order, filtered; the last ``limit`` of them if given."""
        wanted = set(types) if types is not None else None
        selected = [
            e
            for e in self._events
            if e["seq"] > after_seq
            and (until_ts is None or e["ts"] <= until_ts)
            and (wanted is None or e["type"] in wanted)
        ]
        if limit is not None and len(selected) > limit:
            selected = selected[len(selected) - limit :]
        return selected

    @property
    def event_count(self) -> int:
        """Number of stored events."""
        return len(self._events)

    def event_counts(self) -> dict[str, int]:
        """Stored events per type."""
        return dict(self._event_counts)

    def describe(self) -> dict[str, Any]:
        """Sizes and bounds, for the status line and logs."""
        return {
            "snapshots": len(self._ts),
            "events": len(self._events),
            "eventsDropped": self.events_dropped,
            "bytes": self._bytes,
            "oldest": self.oldest_ts,
            "latest": self._ts[-1] if self._ts else None,
            "retentionMs": self.retention_ms,
        }
