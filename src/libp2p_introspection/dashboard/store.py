"""The dashboard's memory: a time-indexed, bounded store of snapshots and events.

Pure (no I/O, no clock of its own): time is the source's time, the
``instant_ts`` of the snapshot added last (for a live node, the newest:
§4.1), so a live node and a recording are kept the same way. Bounds:

- ``retention_ms``: a window around the store's time. Snapshots older than
  it minus ``retention_ms``, or newer than it plus ``retention_ms``, are
  dropped, and so are events whose time is outside the window (events are
  kept in arrival order, which is not ``ts`` order, so an event goes when it
  reaches the front). An event's time is its ``ts``, but never later than
  the store's time when it arrived: an event stamped 2^64 - 1 ages as if it
  happened then, and a snapshot stamped 2^64 - 1 is dropped by the next
  honest one, so no timestamp keeps anything for ever. ``None``: no time
  bound (a recording is kept whole, within the other bounds);
- ``max_snapshots`` and ``max_events``: counts, oldest first;
- ``max_bytes``: the total size of the stored snapshots' JSON text and
  their original bytes (below), oldest first (a node with thousands of
  connections makes snapshots of megabytes); the newest snapshot stays
  whatever its size, which the converter bounds
  (:data:`.convert.DEFAULT_MAX_SNAPSHOT_BYTES`: a larger one never reaches
  the store);
- ``max_event_bytes``: the total size of the stored events' JSON text
  (characters; their content is most of it) and their original bytes,
  oldest first; an event larger than the whole bound is not stored.

Each snapshot and event can also keep its original ``ServerMessage`` bytes
(``raw``, as a recording record holds them: what "Save recording" writes,
:mod:`.save`), and each snapshot the number of the events that had arrived
before it (``events_before``), so that a saved window keeps the order in
which they came. The raw bytes count against the same bounds as the text
(a hostile node's 1 MB string costs its 1 MB there, not the 1 KiB the
converter cuts it to).

Snapshots and events are stored as their JSON text (see :mod:`.convert`),
computed once, and the snapshots' chart summary; the parsed form is not
kept. Each connection's traffic over the stored snapshots is kept on the
side, small (a tuple per connection per snapshot), so that a
per-connection chart does not reparse every snapshot. So the store holds
about ``max_bytes`` plus ``max_event_bytes`` of text and raw bytes (up to 4
bytes per character of non-ASCII text), plus about 250 bytes per connection per
stored snapshot (measured: 155 when the same connections recur, 235 when
every snapshot brings new ones) and 200 per stored event.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from libp2p_introspection.config import DEFAULT_MAX_RETENTION_MS
from libp2p_introspection.dashboard.caps import dumps
from libp2p_introspection.dashboard.convert import JSON, summarize
from libp2p_introspection.dashboard.convert_events import MAX_EVENT_TYPES, MAX_PROPERTY_TYPES

#: What the event types' original bytes (:attr:`Store.event_types_raw`) may take, bytes.
MAX_EVENT_TYPE_RAW_BYTES = 4 * 1024 * 1024

#: Default retention window, ms (the server's default maximum retention).
DEFAULT_RETENTION_MS = DEFAULT_MAX_RETENTION_MS
#: Default bound on stored snapshots (2 hours at the default 1 s interval).
DEFAULT_MAX_SNAPSHOTS = 7_200
#: Default bound on stored events.
DEFAULT_MAX_EVENTS = 50_000
#: Default bound on the stored snapshots' JSON text, bytes (characters).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: Default bound on the stored events' JSON text, bytes (characters): the
#: count bound's 50,000 events at 1 KiB each, more than honest events take.
DEFAULT_MAX_EVENT_BYTES = 64 * 1024 * 1024
#: Fields of one point of a connection's series, in the order they are kept.
_SERIES_FIELDS = ("ts", "bwIn", "bwOut", "in", "out", "status")


def _point_ts(point: tuple[Any, ...]) -> Any:
    return point[0]


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """One snapshot: its ``instant_ts``, JSON text and chart summary (and its text);
    ``raw``: its ``ServerMessage`` bytes (``b""`` if not kept); ``events_before``:
    the ``seq`` the next event stored after it gets (events below arrived before it)."""

    ts: int
    text: str
    summary: JSON
    summary_text: str
    raw: bytes = b""
    events_before: int = 0

    @property
    def size(self) -> int:
        """What it counts against ``max_bytes``: its text's characters and raw bytes."""
        return len(self.text) + len(self.raw)

    @property
    def data(self) -> JSON:
        """The converted snapshot, parsed again from its text (a new dict each time)."""
        parsed: JSON = json.loads(self.text)
        return parsed


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event: its number, ``ts`` (ms), type name, the time it ages by and its JSON text.

    ``key``: ``ts``, or the store's time when it arrived if that is earlier
    (module doc). ``text``: the event's JSON (shape of
    :func:`.convert_events.event_to_json`, ``seq`` set), as sent to pages.
    """

    seq: int
    ts: int
    type: str
    key: int
    text: str
    raw: bytes = b""

    @property
    def size(self) -> int:
        """What it counts against ``max_event_bytes``: its text's characters and raw bytes."""
        return len(self.text) + len(self.raw)

    @property
    def data(self) -> JSON:
        """The event, parsed again from its text (a new dict each time)."""
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
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    runtime: JSON | None = None
    #: The runtime's ``ServerMessage`` bytes, as received (``b""``: not kept).
    runtime_raw: bytes = b""
    #: Event types by name, as declared by the runtime and by first events (bounded:
    #: :meth:`_add_event_type`).
    event_types: dict[str, JSON] = field(default_factory=dict)
    #: Of the types first declared by an event: the ``EventType`` bytes as the source
    #: sent them, by the same (display) name, for Save recording (at most
    #: :data:`MAX_EVENT_TYPE_RAW_BYTES` in all; a type over that keeps none).
    event_types_raw: dict[str, bytes] = field(default_factory=dict)
    _event_types_raw_bytes: int = 0
    _event_type_properties: int = 0
    _ts: list[int] = field(default_factory=list)
    _snapshots: list[StoredSnapshot] = field(default_factory=list)
    #: The store's time: ``instant_ts`` of the snapshot added last (``None``: none yet).
    _now: int | None = None
    _events: deque[StoredEvent] = field(default_factory=deque)
    _event_counts: Counter[str] = field(default_factory=Counter)
    _next_seq: int = 1
    #: What the stored snapshots and events count against their bounds (text and raw).
    _bytes: int = 0
    _event_bytes: int = 0
    #: Of which their raw bytes.
    _raw_bytes: int = 0
    _event_raw_bytes: int = 0
    #: Per connection id: its points ``(ts, bwIn, bwOut, in, out, status)``, by ``ts``.
    _conn_series: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    #: Events dropped by the bounds so far (for the status line).
    events_dropped: int = 0

    # ----------------------------------------------------------------- writing

    def set_runtime(self, runtime: JSON, raw: bytes = b"") -> None:
        """Record the node's runtime (and the event types it declares); ``raw``: its
        ``ServerMessage`` bytes."""
        self.runtime = runtime
        self.runtime_raw = raw
        for event_type in runtime.get("eventTypes", []):
            self._add_event_type(event_type, replace=True)

    def _add_event_type(self, event_type: JSON, *, replace: bool = False, raw: bytes = b"") -> None:
        """Know ``event_type``, within :data:`.convert_events.MAX_EVENT_TYPES` types of
        :data:`.convert_events.MAX_PROPERTY_TYPES` properties in all (more are not kept:
        events of a type not kept are still stored and shown)."""
        name = event_type["name"]
        old = self.event_types.get(name)
        if old is not None and not replace:
            return
        properties = self._event_type_properties - (len(old["properties"]) if old else 0)
        if (old is None and len(self.event_types) >= MAX_EVENT_TYPES) or (
            properties + len(event_type["properties"]) > MAX_PROPERTY_TYPES
        ):
            return
        self.event_types[name] = event_type
        self._event_type_properties = properties + len(event_type["properties"])
        self._event_types_raw_bytes -= len(self.event_types_raw.pop(name, b""))
        if raw and self._event_types_raw_bytes + len(raw) <= MAX_EVENT_TYPE_RAW_BYTES:
            self.event_types_raw[name] = raw
            self._event_types_raw_bytes += len(raw)

    def add_snapshot(self, data: JSON, raw: bytes = b"", text: str | None = None) -> StoredSnapshot:
        """Store a converted snapshot (``raw``: its ``ServerMessage`` bytes; ``text``: its
        JSON text, ``dumps(data)``, if the caller has it:
        :meth:`.convert.SnapshotConverter.convert_text` builds it for less); returns the
        stored form.

        Its ``ts`` becomes the store's time. A snapshot with the ``ts`` of a
        stored one replaces it; one older than the newest is inserted in place
        (never expected from a server, §4.1, but harmless). Prunes afterwards.
        """
        summary = summarize(data)
        if text is None:
            text = dumps(data)
        stored = StoredSnapshot(data["ts"], text, summary, dumps(summary), raw, self._next_seq)
        index = bisect.bisect_left(self._ts, stored.ts)
        if index < len(self._ts) and self._ts[index] == stored.ts:
            self._bytes -= self._snapshots[index].size
            self._raw_bytes -= len(self._snapshots[index].raw)
            self._snapshots[index] = stored
        else:
            self._ts.insert(index, stored.ts)
            self._snapshots.insert(index, stored)
        self._bytes += stored.size
        self._raw_bytes += len(stored.raw)
        self._now = stored.ts
        self._add_series_points(stored.ts, data)
        self.prune()
        return stored

    def _add_series_points(self, ts: int, data: JSON) -> None:
        for conn in data["conns"]:
            point = (ts, conn["bwIn"], conn["bwOut"], conn["in"], conn["out"], conn["status"])
            series = self._conn_series.setdefault(conn["id"], [])
            if series and series[-1][0] >= ts:  # a replaced or late snapshot (rare)
                at = bisect.bisect_left(series, ts, key=_point_ts)
                if at < len(series) and series[at][0] == ts:
                    series[at] = point
                else:
                    series.insert(at, point)
            else:
                series.append(point)

    def add_event(
        self,
        event: JSON,
        type_info: JSON | None = None,
        raw: bytes = b"",
        type_raw: bytes = b"",
    ) -> StoredEvent:
        """Store an event (shape of :func:`.convert_events.event_to_json`; ``raw``: its
        ``ServerMessage`` bytes); numbers it; returns it.

        ``event["seq"]`` is set. ``type_info``: the event's full type, when the
        server declared it with the event (first event of a type the runtime
        did not list); ``type_raw``: that type's ``EventType`` bytes as the
        source sent them (what Save recording declares it with). The event may
        be dropped at once by the bounds (it is still returned, for the pages).
        """
        if type_info is not None and type_info.get("properties"):
            self._add_event_type(type_info, raw=type_raw)
        event["seq"] = self._next_seq
        self._next_seq += 1
        ts = event["ts"]
        key = ts if self._now is None else min(ts, self._now)
        stored = StoredEvent(event["seq"], ts, event["type"], key, dumps(event), raw)
        if stored.size > self.max_event_bytes:  # larger than the whole bound: not kept
            self.events_dropped += 1
            return stored
        self._events.append(stored)
        self._event_bytes += stored.size
        self._event_raw_bytes += len(stored.raw)
        self._event_counts[stored.type] += 1
        self.prune_events()
        return stored

    def _window(self) -> tuple[int, int] | None:
        """Oldest and newest time kept by the time bound (``None``: no time bound)."""
        if self.retention_ms is None or self._now is None:
            return None
        return self._now - self.retention_ms, self._now + self.retention_ms

    def prune(self) -> None:
        """Apply the bounds to snapshots and events."""
        count = len(self._ts)
        low, high = 0, count
        window = self._window()
        if window is not None:
            low = bisect.bisect_left(self._ts, window[0])
            high = bisect.bisect_right(self._ts, window[1])
        low = max(low, high - self.max_snapshots)
        kept = self._bytes
        kept -= sum(s.size for s in self._snapshots[:low])
        kept -= sum(s.size for s in self._snapshots[high:])
        while low < high - 1 and kept > self.max_bytes:
            kept -= self._snapshots[low].size
            low += 1
        if low > 0 or high < count:
            self._bytes = kept
            self._raw_bytes -= sum(len(s.raw) for s in self._snapshots[:low])
            self._raw_bytes -= sum(len(s.raw) for s in self._snapshots[high:])
            del self._ts[high:], self._snapshots[high:]
            del self._ts[:low], self._snapshots[:low]
            first, last = self._ts[0], self._ts[-1]
            for conn_id in list(self._conn_series):
                series = self._conn_series[conn_id]
                if series[-1][0] > last:
                    del series[bisect.bisect_right(series, last, key=_point_ts) :]
                if series and series[0][0] < first:
                    del series[: bisect.bisect_left(series, first, key=_point_ts)]
                if not series:
                    del self._conn_series[conn_id]
        self.prune_events()

    def prune_events(self) -> None:
        """Apply the bounds to events."""
        window = self._window()
        events = self._events
        while events and (
            len(events) > self.max_events
            or self._event_bytes > self.max_event_bytes
            or (window is not None and not window[0] <= events[0].key <= window[1])
        ):
            dropped = events.popleft()
            self._event_bytes -= dropped.size
            self._event_raw_bytes -= len(dropped.raw)
            self.events_dropped += 1
            self._event_counts[dropped.type] -= 1
            if self._event_counts[dropped.type] <= 0:
                del self._event_counts[dropped.type]

    def clear(self) -> None:
        """Forget everything (the dashboard switched to another node or file)."""
        self.runtime = None
        self.runtime_raw = b""
        self.event_types.clear()
        self.event_types_raw.clear()
        self._event_types_raw_bytes = 0
        self._event_type_properties = 0
        self._ts.clear()
        self._snapshots.clear()
        self._now = None
        self._bytes = self._raw_bytes = 0
        self._conn_series.clear()
        self._events.clear()
        self._event_bytes = self._event_raw_bytes = 0
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
            "max_event_bytes": self.max_event_bytes,
        }

    @property
    def horizon(self) -> int | None:
        """Oldest time kept by the time bound (``None``: no time bound or no snapshot)."""
        window = self._window()
        return None if window is None else window[0]

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

    def window(self) -> tuple[list[StoredSnapshot], list[StoredEvent]]:
        """The stored snapshots (oldest first) and events (in arrival order), as new
        lists: what the store holds now, whatever it stores or drops afterwards."""
        return list(self._snapshots), list(self._events)

    def series(self) -> list[JSON]:
        """The chart summary of every stored snapshot, oldest first."""
        return [s.summary for s in self._snapshots]

    def connection_series(self, conn_id: str) -> list[JSON]:
        """One connection's traffic over the stored snapshots, oldest first.

        ``[{"ts", "bwIn", "bwOut", "in", "out", "status"}]``, only for the
        snapshots that hold the connection.
        """
        points = self._conn_series.get(conn_id, ())
        return [dict(zip(_SERIES_FIELDS, p, strict=True)) for p in points]

    def stored_events(
        self,
        *,
        after_seq: int = 0,
        until_ts: int | None = None,
        types: Iterable[str] | None = None,
        limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredEvent]:
        """Stored events in arrival order, filtered; the newest ``limit`` of them if given,
        and the newest whose texts add up to at most ``max_bytes`` if given."""
        wanted = set(types) if types is not None else None
        selected = [
            e
            for e in self._events
            if e.seq > after_seq
            and (until_ts is None or e.ts <= until_ts)
            and (wanted is None or e.type in wanted)
        ]
        if limit is not None and len(selected) > limit:
            selected = selected[len(selected) - limit :] if limit > 0 else []
        if max_bytes is not None:
            first, total = len(selected), 0
            while first > 0 and total + len(selected[first - 1].text) <= max_bytes:
                first -= 1
                total += len(selected[first].text)
            selected = selected[first:]
        return selected

    def events(
        self,
        *,
        after_seq: int = 0,
        until_ts: int | None = None,
        types: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[JSON]:
        """:meth:`stored_events`, parsed (new dicts)."""
        chosen = self.stored_events(
            after_seq=after_seq, until_ts=until_ts, types=types, limit=limit
        )
        return [e.data for e in chosen]

    @property
    def event_count(self) -> int:
        """Number of stored events."""
        return len(self._events)

    def event_counts(self) -> dict[str, int]:
        """Stored events per type."""
        return dict(self._event_counts)

    def describe(self) -> dict[str, Any]:
        """Sizes and bounds, for the status line and logs (``bytes``, ``eventBytes``:
        the stored snapshots' and events' JSON text, characters; ``rawBytes``,
        ``eventRawBytes``: their original bytes; ``max_bytes`` bounds ``bytes`` plus
        ``rawBytes``, ``max_event_bytes`` the events' two)."""
        return {
            "snapshots": len(self._ts),
            "events": len(self._events),
            "eventsDropped": self.events_dropped,
            "bytes": self._bytes - self._raw_bytes,
            "eventBytes": self._event_bytes - self._event_raw_bytes,
            "rawBytes": self._raw_bytes,
            "eventRawBytes": self._event_raw_bytes,
            "oldest": self.oldest_ts,
            "latest": self._ts[-1] if self._ts else None,
            "retentionMs": self.retention_ms,
        }
