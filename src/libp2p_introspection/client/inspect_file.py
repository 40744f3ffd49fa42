"""``libp2p-introspect inspect``: what a recording holds, read in constant memory.

:func:`summarize` streams the file once and returns a JSON-ready dict;
:func:`dump` yields every record as one line of protobuf's JSON mapping, with
connection and stream ids in hex and ``transport_id`` as text (or hex), as
everywhere else (:mod:`libp2p_introspection.protocol.ids`), so events join
their connections by equal strings.

A file that reads but is damaged (records that fail their checksum or do not
parse, a truncated tail) is reported on stderr by the CLI, in both modes,
which then exits with :data:`EXIT_DAMAGED` (3) once everything readable was
shown; :func:`problems` words what is wrong.

The summary parses nothing: every record is walked on the wire
(:mod:`libp2p_introspection.protocol.wire`, in C where it is built), which
counts a snapshot's connections and streams without building them, and the
few fields the summary shows (timestamps, the runtime's names, event type
names) are read from the bytes. A snapshot's §3.1 counts are read from the
last snapshot only, once the C side has found every level they read sound
in each snapshot (where it has not, that snapshot is read with
``protowire`` as it comes, which finds the fault): the summary is the same
as when every snapshot's were read, for 1.3 to 1.6 times what checking the
file's checksums costs. Its memory is therefore the reader's buffer of the largest
record (at most 64 MiB) plus a constant, whatever a record holds: a 2 MB
record of a million empty connections costs what a 2 MB record of anything
does (peak RSS 36 MB, against 193 MB when the summary parsed snapshots).
Records above the :class:`~libp2p_introspection.protocol.wire.RecordLimits`
(by default 40,000 connections or 100,000 streams) are skipped and reported.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.config import printable
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.ids import message_to_json
from libp2p_introspection.protocol.protowire import (
    LENGTH_DELIMITED,
    WireError,
    last_string,
    last_varint,
    values,
)
from libp2p_introspection.protocol.recording import Record, RecordingReader
from libp2p_introspection.protocol.wire import (
    DEFAULT_LIMITS,
    LevelCheck,
    RecordLimits,
    occurrences,
)

KINDS = ("runtime", "state", "event", "response", "notice")

#: Most distinct event type names the summary counts one by one; events of any further
#: name are counted together (``events_other_types``), so that a file of ever new names
#: costs constant memory (a real node has a few dozen types).
MAX_EVENT_TYPES = 10_000
#: Longest event type name kept, characters: a longer one is cut and ends in ``…``, as
#: ``watch`` cuts a value (a name cut so counts with the names that share its start).
MAX_TYPE_NAME = 120

#: Exit status of ``inspect`` (and ``inspect --dump``) for a file that was read to
#: its end but is damaged: records failed their checksum or did not parse, or the
#: tail is truncated. (1: the file cannot be read as a recording; 2: a usage error.)
EXIT_DAMAGED = 3

# Field numbers on the paths the summary reads (PROTOCOL.md §3).
_STATE_INSTANT = (2, 3)  # ServerMessage.state.instant_ts
_EVENT_TYPE_NAME = (4, 1, 1)  # ServerMessage.event.type.name
_RUNTIME = 3
_RUNTIME_STRINGS = {"implementation": 1, "version": 2, "platform": 3, "peer_id": 4}
_RUNTIME_EVENT_TYPES = (3, 7)
# PROTOCOL.md §3.1, under ServerMessage.state (2).
_NODE = (2, 100)
_REACHABILITY = (2, 100, 3)
_PROTOCOLS = (2, 101)
_PEER_INFOS = (2, 1, 1, 100)  # Subsystems.connections[].peer
_PUBSUB = (2, 1, 100)
_PUBSUB_TOPICS = (2, 1, 100, 2)
_RESOURCES = (2, 1, 101)
_RESOURCE_SCOPES = (2, 1, 101, 1)
_RESOURCES_BLOCKED = (2, 1, 101, 2)
_REACHABILITY_NAMES = dict(pb.NodeInfo.Reachability.items())
# Every level of a snapshot the paths above read: a snapshot whose levels all read
# cleanly cannot make _extensions() raise, so its counts can wait for the last one.
_SNAPSHOT_LEVELS = LevelCheck({2: {100: {}, 1: {1: {}, 100: {}, 101: {}}}})


def _count(data: bytes | memoryview, path: tuple[int, ...], fast: bool = True) -> int:
    found = occurrences(data, path) if fast else None
    if found is not None:
        return found[0]
    return sum(1 for _ in values(data, path))


def _last_varint(data: bytes | memoryview, path: tuple[int, ...], fast: bool = True) -> int:
    found = occurrences(data, path) if fast else None
    if found is not None:
        return 0 if found[1] is None else found[1]
    return last_varint(data, path)


def _last_string(data: bytes | memoryview, path: tuple[int, ...]) -> str:
    """:func:`~libp2p_introspection.protocol.protowire.last_string`, found in C where it
    can be; raises ``WireError`` as it does."""
    found = occurrences(data, path)
    if found is None:
        return last_string(data, path)
    span = found[2]
    if span is None:
        return ""
    try:
        return bytes(data[span[0] : span[1]]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"field {path} is not valid UTF-8") from exc


def _extensions(data: bytes | memoryview, fast: bool = True) -> dict[str, Any]:
    """The §3.1 counts of one snapshot, read on the wire: ``None`` for a subsystem the
    snapshot lacks (a node without it, or recorded before it). ``fast``: in C where
    it can (:func:`~libp2p_introspection.protocol.wire.occurrences`), else
    ``protowire``; the same either way. Raises ``WireError`` where ``protowire``
    finds a level it reads faulty."""
    has_node = _count(data, _NODE, fast) > 0
    has_pubsub = _count(data, _PUBSUB, fast) > 0
    has_resources = _count(data, _RESOURCES, fast) > 0
    reachability = _last_varint(data, _REACHABILITY, fast)
    names = {v: k for k, v in _REACHABILITY_NAMES.items()}
    return {
        "reachability": names.get(reachability, str(reachability)) if has_node else None,
        "protocols": _count(data, _PROTOCOLS, fast),
        "identified": _count(data, _PEER_INFOS, fast),
        "pubsub_topics": _count(data, _PUBSUB_TOPICS, fast) if has_pubsub else None,
        "resource_scopes": _count(data, _RESOURCE_SCOPES, fast) if has_resources else None,
        "resources_blocked": (
            _last_varint(data, _RESOURCES_BLOCKED, fast) if has_resources else None
        ),
    }


def _extensions_python(data: bytes | memoryview) -> dict[str, Any]:
    """:func:`_extensions` by ``protowire`` alone (the reference)."""
    return _extensions(data, fast=False)


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
    messages in the last snapshot; ``last_extensions``: its PROTOCOL.md §3.1
    counts, ``reachability`` (name), ``protocols`` (``ProtocolStats``),
    ``identified`` (``PeerInfo`` messages), ``pubsub_topics``,
    ``resource_scopes``, ``resources_blocked``, each of the last three and
    ``reachability`` ``None`` when the snapshot lacks that subsystem),
    ``events`` (count per type name, a name longer than :data:`MAX_TYPE_NAME`
    characters cut and ending in ``…``; only the first :data:`MAX_EVENT_TYPES` distinct
    names met in the file), ``events_other_types`` (the events of every further name,
    counted together; 0 for any real node's file).
    Raises the ``RecordingError`` subclasses for a file that is not a
    recording, of an unsupported version, or with an over-limit length field.
    """
    kinds: Counter[str] = Counter({kind: 0 for kind in KINDS})
    events: Counter[str] = Counter()
    other_types = 0
    runtime: dict[str, Any] | None = None
    states: dict[str, Any] = {
        "first_instant_ts": None,
        "last_instant_ts": None,
        "last_connections": None,
        "last_streams": None,
        "last_extensions": None,
    }
    unparsable = 0
    # The bytes of the last snapshot whose §3.1 counts read cleanly (computed once, at
    # the end: only the last snapshot's are shown).
    last_sound: bytes | None = None
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
                    # Everything this record gives is read before any of it is kept: a
                    # snapshot that turns out faulty changes nothing but `unparsable`.
                    if _SNAPSHOT_LEVELS(record.data):
                        # Every level _extensions() reads is sound: defer it.
                        instant = _last_varint(record.data, _STATE_INSTANT)
                        extensions, sound = None, record.data
                    else:  # not known in C: read it here, where a fault is found
                        instant = last_varint(record.data, _STATE_INSTANT)
                        extensions, sound = _extensions(record.data), None
                    if states["first_instant_ts"] is None:
                        states["first_instant_ts"] = instant
                    states["last_instant_ts"] = instant
                    states["last_connections"] = counts.connections
                    states["last_streams"] = counts.streams
                    if sound is None:
                        states["last_extensions"] = extensions
                    last_sound = sound
                elif kind == "event":
                    name = _type_name(_last_string(record.data, _EVENT_TYPE_NAME))
                    if name in events or len(events) < MAX_EVENT_TYPES:
                        events[name] += 1
                    else:
                        other_types += 1
                elif kind == "runtime" and runtime is None:
                    runtime = _runtime(record)
            except WireError:  # a string that is not UTF-8: a parser would refuse the record
                unparsable += 1
                continue
            if kind:
                kinds[kind] += 1
        if last_sound is not None:
            states["last_extensions"] = _extensions(last_sound)
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
            "events_other_types": other_types,
        }


def _type_name(name: str) -> str:
    """An event type name as the summary keeps it: cut to :data:`MAX_TYPE_NAME`."""
    return name if len(name) <= MAX_TYPE_NAME else f"{name[:MAX_TYPE_NAME]}…"


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


@dataclass
class DumpReport:
    """What :func:`dump` met, once its lines are all read: ``records`` (whole records
    with a good checksum), ``checksum_failures``, ``unparsable`` (records that checksum
    but do not parse), ``truncated``/``truncated_at`` (offset, bytes), ``over_limit``
    (records skipped for the limits) and the first one's reason, ``lines`` (lines
    yielded); :attr:`problems` and :attr:`damaged` say it in words and as a flag."""

    records: int = 0
    checksum_failures: int = 0
    unparsable: int = 0
    truncated: bool = False
    truncated_at: int | None = None
    over_limit: int = 0
    over_limit_reason: str = ""
    lines: int = 0

    @property
    def problems(self) -> list[str]:
        """One sentence per kind of trouble (see :func:`problems`)."""
        return problems(vars(self))

    @property
    def damaged(self) -> bool:
        """Whether the file is damaged (checksum failures, unparsable records, a cut
        tail); records skipped for the limits are not damage."""
        return is_damaged(vars(self))


def dump(
    path: str | os.PathLike[str],
    *,
    limits: RecordLimits = DEFAULT_LIMITS,
    on_skip: Callable[[str], None] | None = None,
    report: DumpReport | None = None,
) -> Iterator[str]:
    """Every parsable record of ``path`` as one compact JSON line: protobuf's JSON
    mapping, with ids as :func:`~libp2p_introspection.protocol.ids.message_to_json`
    writes them.

    Records above ``limits`` are not parsed, nor are records that fail their
    checksum or do not parse. Once the file is read, ``on_skip`` is called with
    each of :func:`problems`' sentences, and ``report`` (if given) holds the
    counts. Raises the ``RecordingError`` subclasses as :func:`summarize` does.
    """
    report = report if report is not None else DumpReport()
    with RecordingReader(path, limits=limits) as reader:
        for record in reader:
            try:
                message = record.message()
                line = json.dumps(message_to_json(message), separators=(",", ":"))
            except Exception:  # DecodeError, or RecursionError on hostile nesting
                report.unparsable += 1
                continue
            report.lines += 1
            yield line
        report.records = reader.records
        report.checksum_failures = reader.checksum_failures
        report.truncated = reader.truncated
        report.truncated_at = reader.truncated_at
        report.over_limit = reader.over_limit
        report.over_limit_reason = reader.over_limit_reason
    if on_skip is not None:
        for sentence in report.problems:
            on_skip(sentence)


def _plural(count: int, noun: str) -> str:
    """``1 record``, ``2 records`` (``noun`` takes an ``s``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _over_limit_text(count: int, first: str) -> str:
    return f"{_plural(count, 'record')} over the expansion limits skipped (first: {first})"


def problems(counts: dict[str, Any]) -> list[str]:
    """What is wrong with a file, one sentence per kind of trouble, from the counts of
    :func:`summarize` (or a :class:`DumpReport`): checksum failures, unparsable
    records, a truncated tail, records over the limits. Empty for a sound file."""
    found = []
    failures = counts["checksum_failures"]
    if failures:
        verb = "failed its checksum" if failures == 1 else "failed their checksum"
        found.append(f"{_plural(failures, 'record')} {verb} (skipped)")
    if counts["unparsable"]:
        found.append(f"{_plural(counts['unparsable'], 'record')} did not parse (skipped)")
    if counts["truncated"]:
        found.append(f"truncated at offset {counts['truncated_at']} (the tail was cut off)")
    if counts["over_limit"]:
        found.append(_over_limit_text(counts["over_limit"], counts["over_limit_reason"]))
    return found


def is_damaged(counts: dict[str, Any]) -> bool:
    """Whether :func:`summarize`'s counts (or a :class:`DumpReport`'s) show damage:
    checksum failures, unparsable records or a truncated tail (:data:`EXIT_DAMAGED`)."""
    return bool(counts["checksum_failures"] or counts["unparsable"] or counts["truncated"])


def _text(value: str) -> str:
    """A string from the file (or its path) as one line of text: made
    :func:`~libp2p_introspection.config.printable`, and its newlines and tabs shown as
    ``\\n`` and ``\\t`` too, so that it cannot start a line of the summary's own."""
    return printable(value).replace("\n", "\\n").replace("\t", "\\t")


def render(summary: dict[str, Any]) -> str:
    """The human-readable form of :func:`summarize`'s result, safe to write to a
    terminal as it is: every string from the file (the runtime's names, event type
    names) and the path are escaped (:func:`_text`), so each line is the summary's."""
    lines = [
        f"{_text(summary['file'])}: {_plural(summary['records'], 'record')}, "
        f"{_plural(summary['bytes'], 'byte')}"
    ]
    kinds = summary["kinds"]
    lines.append("  " + ", ".join(f"{kinds[k]} {k}" for k in KINDS))
    found = problems(summary)
    lines.append("  " + ("; ".join(found) if found else "no damaged records"))
    runtime = summary["runtime"]
    if runtime:
        lines.append(
            f"  runtime: {_text(runtime['implementation'])} {_text(runtime['version'])} on "
            f"{_text(runtime['platform'])}, peer {_text(runtime['peer_id'])}"
        )
        names = ", ".join(_text(name) for name in runtime["event_types"])
        lines.append(f"  event types: {names or '(none)'}")
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
        extra = _extensions_text(states.get("last_extensions"))
        if extra:
            lines.append(f"  last snapshot's node: {extra}")
    if summary["events"]:
        lines.append(
            "  events: "
            + ", ".join(f"{_text(name)} {n}" for name, n in summary["events"].items())
        )
    other = summary.get("events_other_types", 0)
    if other:
        lines.append(
            f"  {_plural(other, 'event')} of further types counted together (only the "
            f"first {MAX_EVENT_TYPES:,} distinct type names are counted one by one)"
        )
    return "\n".join(lines)


def _extensions_text(ext: dict[str, Any] | None) -> str:
    """The §3.1 counts of the last snapshot in words (``""`` when it has none)."""
    if not ext:
        return ""
    parts = []
    if ext["reachability"] is not None:
        parts.append(f"reachability {ext['reachability']}")
    if ext["protocols"]:
        parts.append(_plural(ext["protocols"], "protocol") + " with traffic")
    if ext["identified"]:
        parts.append(f"{ext['identified']} identified")
    if ext["pubsub_topics"] is not None:
        parts.append(f"pubsub: {_plural(ext['pubsub_topics'], 'topic')}")
    if ext["resource_scopes"] is not None:
        parts.append(
            f"resource manager: {_plural(ext['resource_scopes'], 'scope')}, "
            f"{ext['resources_blocked']} refused"
        )
    return "; ".join(parts)
