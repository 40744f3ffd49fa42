"""Load a recording file (PROTOCOL.md §2) into a dashboard :class:`~.store.Store`.

The page shows a recording the way it shows a live node: the recording's
``Runtime``, its snapshots on the timeline (the newest selected), its events.
A file is read record by record with
:class:`~libp2p_introspection.protocol.recording.RecordingReader` (bad
records skipped and counted, a truncated tail reported) into a fresh store
with no time bound, so a whole recording is browsable; the store's count
bounds still apply (the newest snapshots and events are kept). Loading is
synchronous and CPU-bound: the dashboard runs it in a worker thread.

What a file can cost is bound by what its records expand to, not by its size
(a 2 MB record of a million empty connections once took the dashboard to
1.7 GB for 13 s): the reader walks each record's wire format before it is
parsed, and a record above the
:class:`~libp2p_introspection.protocol.wire.RecordLimits` (by default 10,000
connections, 100,000 streams, 100,000 other list entries) is skipped, counted
in :attr:`RecordingInfo.over_limit` and shown on the page (that file now
loads its other snapshots in milliseconds, with no measurable growth).
Converting one snapshot within the limits costs at most about 2.5 KB per
connection and 1.5 KB per stream, plus their strings, each capped (1 KiB at
most: :mod:`.convert`), plus its JSON text, which is at most
``max_snapshot_bytes`` (64 MiB by default: a snapshot whose text would be
larger is skipped before it is built, counted in
:attr:`RecordingInfo.over_limit` and shown on the page), plus about three
times the record's bytes while it is read and parsed (measured: 90 MB for
10,000 empty connections of 10 empty streams each, 141 MB for the 10 MB
synthetic 9,990 x 10 snapshot; a 60 MB record of one peer id of U+0000
peaks at 170 MB above the start), on top of what the store keeps (its
``max_bytes`` of snapshot text and ``max_event_bytes`` of event text, see
:mod:`.store`). Connections carried on after they vanished count toward
the connection limit and the size budget too
(:class:`~.convert.SnapshotConverter`): a file whose every record holds
40,000 new connections that never close makes snapshots of 40,000
connections, not of all of them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import BinaryIO

from libp2p_introspection.dashboard.convert import (
    DEFAULT_CLOSED_TTL_MS,
    DEFAULT_MAX_SNAPSHOT_BYTES,
    SnapshotConverter,
    SnapshotTooLarge,
)
from libp2p_introspection.dashboard.convert_events import (
    event_to_json,
    event_type_to_json,
    runtime_to_json,
)
from libp2p_introspection.dashboard.errors import DashboardError
from libp2p_introspection.dashboard.store import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_SNAPSHOTS,
    Store,
)
from libp2p_introspection.protocol.recording import RecordingError, RecordingReader
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits

#: Largest recording accepted from the page, bytes (a CLI ``--file`` is not bounded).
DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024


class RecordingLoadError(DashboardError):
    """The file is not a recording this dashboard can show (the message says why)."""


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What was loaded: file name and counts (``checksumFailures``: damaged records
    skipped; ``over_limit``: records skipped for holding more than the limits allow,
    ``over_limit_reason``: why the first one was, or ``""``; ``truncated_at``: the byte
    offset where a truncated tail starts)."""

    name: str
    records: int
    states: int
    events: int
    checksum_failures: int
    truncated: bool
    over_limit: int = 0
    over_limit_reason: str = ""
    #: Where the truncated tail starts (byte offset in the file), ``None`` if not truncated.
    truncated_at: int | None = None

    def to_json(self) -> dict[str, object]:
        """camelCase form for the page."""
        data = asdict(self)
        data["checksumFailures"] = data.pop("checksum_failures")
        data["overLimit"] = data.pop("over_limit")
        data["overLimitReason"] = data.pop("over_limit_reason")
        data["truncatedAt"] = data.pop("truncated_at")
        return data


def load_recording(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    name: str | None = None,
    max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    closed_ttl_ms: int = DEFAULT_CLOSED_TTL_MS,
    limits: RecordLimits = DEFAULT_LIMITS,
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> tuple[Store, RecordingInfo]:
    """Read the recording ``source`` (a path or a binary stream) into a new store.

    ``limits``: records holding more are skipped (module doc), and so are
    snapshots whose JSON would take more than ``max_snapshot_bytes``
    characters (counted in ``over_limit`` too). Raises
    :class:`RecordingLoadError` when it is not a readable recording (not one
    at all, another file version, a record over the size limit, or no
    snapshot in it that is within ``limits``).
    """
    store = Store(
        retention_ms=None,
        max_snapshots=max_snapshots,
        max_events=max_events,
        max_bytes=max_bytes,
        max_event_bytes=max_event_bytes,
    )
    converter = SnapshotConverter(
        closed_ttl_ms=closed_ttl_ms,
        max_connections=limits.max_connections,
        max_snapshot_bytes=max_snapshot_bytes,
    )
    states = events = too_large = 0
    too_large_reason = ""
    label = name or str(getattr(source, "name", source))
    try:
        with RecordingReader(source, limits=limits) as reader:
            reader.name = label
            for record in reader:
                try:
                    message = record.message()
                except Exception:  # a record that passed its checksum but does not parse
                    continue
                kind = message.WhichOneof("payload")
                if kind == "runtime":
                    store.set_runtime(runtime_to_json(message.runtime), record.data)
                elif kind == "state":
                    try:
                        data, text = converter.convert_text(message.state)
                    except SnapshotTooLarge as exc:
                        too_large += 1
                        too_large_reason = too_large_reason or f"record {reader.records}: {exc}"
                        continue
                    store.add_snapshot(data, record.data, text)
                    states += 1
                elif kind == "event":
                    event = message.event
                    type_info = (
                        event_type_to_json(event.type) if event.type.property_types else None
                    )
                    type_raw = event.type.SerializeToString() if type_info is not None else b""
                    store.add_event(event_to_json(event), type_info, record.data, type_raw)
                    events += 1
            info = RecordingInfo(
                name=os.path.basename(label),
                records=reader.records,
                states=states,
                events=events,
                checksum_failures=reader.checksum_failures,
                truncated=reader.truncated,
                truncated_at=reader.truncated_at,
                over_limit=reader.over_limit + too_large,
                over_limit_reason=reader.over_limit_reason or too_large_reason,
            )
    except RecordingError as exc:
        raise RecordingLoadError(str(exc)) from exc
    if states == 0:
        if info.over_limit:
            raise RecordingLoadError(
                f"{label}: the recording holds no snapshot within the dashboard's limits "
                f"({over_limit_text(info.over_limit, info.over_limit_reason)})"
            )
        raise RecordingLoadError(f"{label}: the recording holds no snapshot")
    return store, info


def over_limit_text(count: int, first: str) -> str:
    """What the page and the log say of ``count`` records skipped for the limits."""
    records = "1 record" if count == 1 else f"{count} records"
    return f"{records} over the expansion limits skipped; the first: {first}"
