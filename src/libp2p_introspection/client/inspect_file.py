"""``libp2p-introspect inspect``: what a recording holds, read in constant memory.

:func:`summarize` streams the file once and returns a JSON-ready dict;
:func:`dump` yields every record as one line of protobuf's JSON mapping.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingReader

KINDS = ("runtime", "state", "event", "response", "notice")


def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summary of the recording at ``path``.

    Keys: ``records`` (whole records with a good checksum), ``kinds`` (count
    per payload kind), ``checksum_failures``, ``truncated`` (bool),
    ``unparsable`` (records that checksum but do not parse), ``bytes``,
    ``runtime`` (``implementation``, ``version``, ``platform``, ``peer_id``,
    ``event_types`` as names; ``None`` if absent), ``states``
    (``first_instant_ts``/``last_instant_ts`` in ms since epoch,
    ``last_connections``, ``last_streams``), ``events`` (count per type name).
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
    # Only the last snapshot's connections and streams are reported: count them
    # once, at the end, rather than walking every snapshot's connections.
    last_state: pb.State | None = None
    with RecordingReader(path) as reader:
        for record in reader:
            try:
                message = record.message()
            except Exception:
                unparsable += 1
                continue
            kind = message.WhichOneof("payload")
            if kind is None:
                continue
            kinds[kind] += 1
            if kind == "state":
                state = message.state
                if states["first_instant_ts"] is None:
                    states["first_instant_ts"] = state.instant_ts
                states["last_instant_ts"] = state.instant_ts
                last_state = state
            elif kind == "event":
                events[message.event.type.name] += 1
            elif kind == "runtime" and runtime is None:
                rt = message.runtime
                runtime = {
                    "implementation": rt.implementation,
                    "version": rt.version,
                    "platform": rt.platform,
                    "peer_id": rt.peer_id,
                    "event_types": [t.name for t in rt.event_types],
                }
        if last_state is not None:
            connections = last_state.subsystems.connections
            states["last_connections"] = len(connections)
            states["last_streams"] = sum(len(c.streams.streams) for c in connections)
        return {
            "file": str(path),
            "records": reader.records,
            "kinds": dict(kinds),
            "checksum_failures": reader.checksum_failures,
            "truncated": reader.truncated,
            "truncated_at": reader.truncated_at,
            "unparsable": unparsable,
            "bytes": reader.bytes_read,
            "runtime": runtime,
            "states": states,
            "events": dict(sorted(events.items())),
        }


def dump(path: str | os.PathLike[str]) -> Iterator[str]:
    """Every parsable record of ``path`` as one compact JSON line (protobuf JSON mapping)."""
    with RecordingReader(path) as reader:
        for record in reader:
            try:
                message = record.message()
            except Exception:
                continue
            yield json.dumps(json_format.MessageToDict(message), separators=(",", ":"))


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
