"""``libp2p-introspect inspect``: what a recording holds, read in constant memory.

:func:`summarize` streams the file once and returns a JSON-ready dict;
:func:`dump` yields every record as one line of protobuf's JSON mapping.

The summary parses nothing: every record is walked on the wire
(:mod:`libp2p_introspection.protocol.wire`), which counts a snapshot's
connections and streams without building them, and the few fields the
summary shows (timestamps, the runtime's names, event type names) are read
from the bytes. Its memory is therefore the reader's buffer of the largest
record (at most 64 MiB) plus a constant, whatever a record holds: a 2 MB
record of a million empty connections costs what a 2 MB record of anything
does (peak RSS 36 MB, against 193 MB when the summary parsed snapshots).
Records above the :class:`~libp2p_introspection.protocol.wire.RecordLimits`
(by default 10,000 connections or 100,000 streams) are skipped and reported.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import json_format

from libp2p_introspection.protocol.recording import Record, RecordingReader
from libp2p_introspection.protocol.wire import (
    DEFAULT_LIMITS,
    LENGTH_DELIMITED,
    RecordLimits,
    WireError,
    last_string,
    last_varint,
    values,
)

KINDS = ("runtime", "state", "event", "response", "notice")

# Field numbers on the paths the summary reads (PROTOCOL.md §3).
_STATE_INSTANT = (2, 3)  # ServerMessage.state.instant_ts
_EVENT_TYPE_NAME = (4, 1, 1)  # ServerMessage.event.type.name
_RUNTIME = 3
_RUNTIME_STRINGS = {"implementation": 1, "version": 2, "platform": 3, "peer_id": 4}
_RUNTIME_EVENT_TYPES = (3, 7)


def summarize(
    path: str | os.PathLike[str], *, limits: RecordLimits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """Summary of the recording at ``path``.

    Keys: ``records`` (whole records with a good checksum), ``kinds`` (count
    per payload kind), ``checksum_failures``, ``truncated`` (bool),
    ``unparsable`` (records that checksum but are not well-formed protobuf),
    ``over_limit`` (records skipped for holding more than ``limits`` allow)
    and ``over_limit_reason`` (the first one's offset, kind and reason, or
    ``""``), ``bytes``, ``runtime`` (``implementation``, ``version``,
    ``platform``, ``peer_id``, ``event_types`` as names; ``None`` if absent),
    ``states`` (``first_instant_ts``/``last_instant_ts`` in ms since epoch,
    ``last_connections``, ``last_streams``: ``Connection`` and ``Stream``
    messages in the last snapshot), ``events`` (count per type name).
    Raises the ``RecordingError`` subclasses for a file that is not a
    recording, of an unsupported version, or with an over-limit length field.
    """
    kinds: Counter[str] = Counter({kind: 0 for kind in KINDS})
    events: Counter[str] = Counter()
    runtime: dict[str, Any] | None = None
    states: dict[str, Any] = {
        "first_instant_ts": None,
        "last_instant_ts": None,
        "last_connections": None,
        "last_streams": None,
    }
    unparsable = 0
    with RecordingReader(path, limits=limits) as reader:
        for record in reader:
            counts = record.counts
            assert counts is not None  # the reader walks every record
            if counts.malformed:
                unparsable += 1
                continue
            kind = counts.kind
            try:
                if kind == "state":
                    instant = last_varint(record.data, _STATE_INSTANT)
                    if states["first_instant_ts"] is None:
                        states["first_instant_ts"] = instant
                    states["last_instant_ts"] = instant
                    states["last_connections"] = counts.connections
                    states["last_streams"] = counts.streams
                elif kind == "event":
                    events[last_string(record.data, _EVENT_TYPE_NAME)] += 1
                elif kind == "runtime" and runtime is None:
                    runtime = _runtime(record)
            except WireError:  # a string that is not UTF-8: a parser would refuse the record
                unparsable += 1
                continue
            if kind:
                kinds[kind] += 1
        return {
            "file": str(path),
            "records": reader.records,
            "kinds": dict(kinds),
            "checksum_failures": reader.checksum_failures,
            "truncated": reader.truncated,
            "truncated_at": reader.truncated_at,
            "unparsable": unparsable,
            "over_limit": reader.over_limit,
            "over_limit_reason": reader.over_limit_reason,
            "bytes": reader.bytes_read,
            "runtime": runtime,
            "states": states,
            "events": dict(sorted(events.items())),
        }


def _runtime(record: Record) -> dict[str, Any]:
    data = record.data
    summary: dict[str, Any] = {
        key: last_string(data, (_RUNTIME, number)) for key, number in _RUNTIME_STRINGS.items()
    }
    names = []
    for wire_type, _, begin, stop in values(data, _RUNTIME_EVENT_TYPES):
        if wire_type == LENGTH_DELIMITED:
            names.append(last_string(data[begin:stop], (1,)))
    summary["event_types"] = names
    return summary


def dump(
    path: str | os.PathLike[str],
    *,
    limits: RecordLimits = DEFAULT_LIMITS,
    on_skip: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Every parsable record of ``path`` as one compact JSON line (protobuf JSON mapping).

    Records above ``limits`` are not parsed: ``on_skip`` is called with the
    reason of each (once the file is read, with their count if there were several).
    """
    with RecordingReader(path, limits=limits) as reader:
        for record in reader:
            try:
                message = record.message()
            except Exception:
                continue
            yield json.dumps(json_format.MessageToDict(message), separators=(",", ":"))
        if reader.over_limit and on_skip is not None:
            on_skip(_over_limit_text(reader.over_limit, reader.over_limit_reason))


def _over_limit_text(count: int, first: str) -> str:
    records = "1 record" if count == 1 else f"{count} records"
    return f"{records} over the expansion limits skipped (first: {first})"


def render(summary: dict[str, Any]) -> str:
    """The human-readable form of :func:`summarize`'s result."""
    lines = [f"{summary['file']}: {summary['records']} records, {summary['bytes']} bytes"]
    kinds = summary["kinds"]
    lines.append("  " + ", ".join(f"{kinds[k]} {k}" for k in KINDS))
    problems = []
    if summary["checksum_failures"]:
        problems.append(f"{summary['checksum_failures']} records failed their checksum (skipped)")
    if summary["unparsable"]:
        problems.append(f"{summary['unparsable']} records did not parse (skipped)")
    if summary["truncated"]:
        problems.append(f"truncated at offset {summary['truncated_at']} (the tail was cut off)")
    if summary["over_limit"]:
        problems.append(_over_limit_text(summary["over_limit"], summary["over_limit_reason"]))
    lines.append("  " + ("; ".join(problems) if problems else "no damaged records"))
    runtime = summary["runtime"]
    if runtime:
        lines.append(
            f"  runtime: {runtime['implementation']} {runtime['version']} on "
            f"{runtime['platform']}, peer {runtime['peer_id']}"
        )
        lines.append(f"  event types: {', '.join(runtime['event_types']) or '(none)'}")
    else:
        lines.append("  runtime: (none recorded)")
    states = summary["states"]
    if states["first_instant_ts"] is not None:
        span = (states["last_instant_ts"] - states["first_instant_ts"]) / 1000
        lines.append(
            f"  states: {states['first_instant_ts']} .. {states['last_instant_ts']} "
            f"({span:.1f} s); last: {states['last_connections']} connections, "
            f"{states['last_streams']} streams"
        )
    if summary["events"]:
        lines.append(
            "  events: " + ", ".join(f"{name} {n}" for name, n in summary["events"].items())
        )
    return "\n".join(lines)
