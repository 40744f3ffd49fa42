"""Load a recording file (PROTOCOL.md §2) into a dashboard :class:`~.store.Store`.

The page shows a recording the way it shows a live node: the recording's
``Runtime``, its snapshots on the timeline (the newest selected), its events.
A file is read record by record with
:class:`~libp2p_introspection.protocol.recording.RecordingReader` (bad
records skipped and counted, a truncated tail reported) into a fresh store
with no time bound, so a whole recording is browsable; the store's count
bounds still apply (the newest snapshots and events are kept). Loading is
synchronous and CPU-bound: the dashboard runs it in a worker thread.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import BinaryIO

from libp2p_introspection.dashboard.convert import (
    DEFAULT_CLOSED_TTL_MS,
    SnapshotConverter,
    event_to_json,
    event_type_to_json,
    runtime_to_json,
)
from libp2p_introspection.dashboard.store import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_SNAPSHOTS,
    Store,
)
from libp2p_introspection.protocol.recording import RecordingError, RecordingReader

#: Largest recording accepted from the page, bytes (a CLI ``--file`` is not bounded).
DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024


class RecordingLoadError(Exception):
    """The file is not a recording this dashboard can show (the message says why)."""


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What was loaded: file name and counts (``checksumFailures``: records skipped)."""

    name: str
    records: int
    states: int
    events: int
    checksum_failures: int
    truncated: bool

    def to_json(self) -> dict[str, object]:
        """camelCase form for the page."""
        data = asdict(self)
        data["checksumFailures"] = data.pop("checksum_failures")
        return data


def load_recording(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    name: str | None = None,
    max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    closed_ttl_ms: int = DEFAULT_CLOSED_TTL_MS,
) -> tuple[Store, RecordingInfo]:
    """Read the recording ``source`` (a path or a binary stream) into a new store.

    Raises :class:`RecordingLoadError` when it is not a readable recording
    (not one at all, another file version, a record over the size limit, or
    no snapshot in it).
    """
    store = Store(
        retention_ms=None, max_snapshots=max_snapshots, max_events=max_events, max_bytes=max_bytes
    )
    converter = SnapshotConverter(closed_ttl_ms=closed_ttl_ms)
    states = events = 0
    label = name or str(getattr(source, "name", source))
    try:
        with RecordingReader(source) as reader:
            reader.name = label
            for record in reader:
                try:
                    message = record.message()
                except Exception:  # a record that passed its checksum but does not parse
                    continue
                kind = message.WhichOneof("payload")
                if kind == "runtime":
                    store.set_runtime(runtime_to_json(message.runtime))
                elif kind == "state":
                    store.add_snapshot(converter.convert(message.state))
                    states += 1
                elif kind == "event":
                    event = message.event
                    type_info = (
                        event_type_to_json(event.type) if event.type.property_types else None
                    )
                    store.add_event(event_to_json(event), type_info)
                    events += 1
            info = RecordingInfo(
                name=os.path.basename(label),
                records=reader.records,
                states=states,
                events=events,
                checksum_failures=reader.checksum_failures,
                truncated=reader.truncated,
            )
    except RecordingError as exc:
        raise RecordingLoadError(str(exc)) from exc
    if states == 0:
        raise RecordingLoadError(f"{label}: the recording holds no snapshot")
    return store, info
