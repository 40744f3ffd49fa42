"""The protobuf wire format, walked without parsing: what a message will cost.

A serialized message's size does not bound what parsing it costs: an empty
``Connection`` is two bytes on the wire (tag and length) but a protobuf
object, a dict in the dashboard, a row in its store. A 2 MB record of a
million empty connections costs gigabytes once parsed and converted. Every
reader of untrusted bytes (recording files, live server messages) therefore
*measures* a message here before it parses it, and skips a message whose
expansion is above its :class:`RecordLimits`.

:func:`measure` walks the bytes once, in constant memory: it never parses a
field's value, never trusts a length field for an allocation (a length only
moves a position, after it is checked against the bytes that hold it), and
keeps a stack only as deep as the message nests (at most
:data:`MAX_DEPTH`). It descends only into the messages that can hold
repeated fields (from the schema: ``State``, ``Subsystems``, ``Connection``,
``StreamList``, ``Stream``, ``ConnectionRef``, ``DHT``, ``Bucket``,
``Runtime``, ``EventType``, ``Event``) and jumps over everything else, and it
counts, wherever they occur (nested ``Connection``s in ``relayed_over`` and
in a stream's ``ConnectionRef`` included):

- ``connections``: ``Connection`` messages;
- ``streams``: ``Stream`` messages; ``stream_ids``: entries of
  ``StreamList.stream_ids`` (each held against the stream cap);
- ``entries``: every other repeated message entry (DHT buckets and peers,
  event types and their property types);
- ``fields``: fields walked, so that the walk's own time is bounded too.

It stops as soon as a count passes its limit. The walk is written twice: in
Python (:func:`measure_python`, the reference, and the fallback where no C
compiler was found at install time) and in C (``_wirewalk.c``, built by
``setup.py``), which :func:`measure` runs first. The C walk answers only for
bytes it finds sound and within the limits; anything else (a fault, a count
over its cap, a group, a non-canonical varint, the deepest nesting) goes to
the Python walk, so the result, wording included, is the Python walk's
whatever the input (tests/protocol/test_wire_accel.py, and the fuzz
harness, hold them equal). Its cost on the 1,000 x 10 synthetic snapshot
(1.6 MB, 120,000 fields): 0.28 ms in C, 20 ms in Python, against 1.6 ms for
its FNV-1a (CPython 3.11, this project's 2-core machine). The 2 MB record
of a million empty connections stops after 10,001 of them, in 2.3 ms (in
Python: C hands over-cap records to it). The worst a record can make the
Python walk visit is :attr:`RecordLimits.max_fields` fields (3.1 million at
the default limits: 0.3 to 0.5 s); :func:`measure_paced` runs the C walk
first too (it does not pause, and answers for sound data within the caps in a few
ms at most: 2-3 ns a field, about 7 ms at the default ``max_fields``) and walks
what it hands over in Python slices, letting an event loop run between them.

Single fields (a timestamp, a name) are read the same way by
:mod:`libp2p_introspection.protocol.protowire`, whose varint reader and
:class:`~libp2p_introspection.protocol.protowire.WireError` the walk shares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.protowire import (
    END_GROUP,
    FIXED32,
    FIXED64,
    LENGTH_DELIMITED,
    PAYLOAD_KINDS,
    START_GROUP,
    VARINT,
    WireError,
    octets,
    read_varint,
)

#: Default cap on ``Connection`` messages in one message or record: a node of 5,000
#: connections that replaces 2% of them a second holds about 17,000 in each snapshot (its
#: closed ones stay two minutes), twice over.
MAX_CONNECTIONS = 40_000
#: Default cap on ``Stream`` messages (and, separately, on stream ids) in one message.
MAX_STREAMS = 100_000
#: Default cap on the other repeated entries (DHT buckets and peers, event types, properties).
MAX_ENTRIES = 100_000
#: Deepest nesting walked (protobuf's own parser stops at 100 levels).
MAX_DEPTH = 128
#: Fields :func:`measure_paced` walks between two pauses (a few ms of work).
SLICE_FIELDS = 50_000

_CONNECTIONS, _STREAMS, _STREAM_IDS, _ENTRIES = range(4)
_COUNTED = (
    "connections (the max_connections cap)",
    "streams (the max_streams cap)",
    "stream ids (the max_streams cap)",
    "DHT buckets and peers, event types and properties (the max_entries cap)",
)


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """What one message (a recording's record or a live server message) may expand to.

    ``max_connections``: ``Connection`` messages (default 40,000);
    ``max_streams``: ``Stream`` messages, and stream ids, each (default
    100,000); ``max_entries``: other repeated entries: DHT buckets and peers,
    event types and property types (default 100,000). The defaults hold the
    5,000 x 10 node the benchmarks target twice over, its closed connections included
    (2% replaced a second, each kept two minutes: about 17,000 connections). A walk also stops
    after :attr:`max_fields` fields. Raises ``ValueError`` for a limit below 1.
    """

    max_connections: int = MAX_CONNECTIONS
    max_streams: int = MAX_STREAMS
    max_entries: int = MAX_ENTRIES

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_streams", "max_entries"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def max_fields(self) -> int:
        """Fields a walk may visit: 64 per connection, 16 per stream and 8 per other entry
        allowed, plus 65,536 (an honest connection has about 15, a stream about 10)."""
        return 64 * self.max_connections + 16 * self.max_streams + 8 * self.max_entries + 65_536

    def caps(self) -> tuple[int, int, int, int]:
        """The limit of each counted kind, in :class:`WireCounts` order."""
        return (self.max_connections, self.max_streams, self.max_streams, self.max_entries)


#: The limits every reader applies unless told otherwise.
DEFAULT_LIMITS = RecordLimits()


@dataclass(frozen=True, slots=True)
class WireCounts:
    """What :func:`measure` found in one serialized ``ServerMessage``.

    ``kind``: the payload (``state``, ``runtime``, ``event``, ``response``,
    ``notice``; ``""`` if none), the last payload field on the wire, as
    protobuf's parser decides it. ``over_limit``: why the message is above
    the limits (``""`` if it is not); ``malformed``: why the bytes are not a
    well-formed message (``""`` if they are). When either is set the walk
    stopped there and the counts are lower bounds.
    """

    kind: str
    connections: int
    streams: int
    stream_ids: int
    entries: int
    fields: int
    over_limit: str = ""
    malformed: str = ""

    @property
    def ok(self) -> bool:
        """Well formed and within the limits: safe to parse."""
        return not self.over_limit and not self.malformed


# --------------------------------------------------------------- the tables

# One table per message type the walk descends into: full tag (field number
# << 3 | wire type 2) -> (counted kind or -1, table of the child or None).
# Only length-delimited fields are listed; every other field is jumped over.
_Table = dict[int, tuple[int, "_Table | None"]]


def _holds_lists(descriptor: Descriptor, path: frozenset[str] = frozenset()) -> bool:
    """Whether a message of this type can hold a repeated field, at any depth."""
    name = descriptor.full_name
    if name in path:
        return False  # a cycle adds nothing: the outer occurrence answers for it
    inner = path | {name}
    for field in descriptor.fields:
        if _is_repeated(field):
            return True
        if field.type == FieldDescriptor.TYPE_MESSAGE and _holds_lists(field.message_type, inner):
            return True
    return False


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _build_tables(root: Descriptor) -> _Table:
    tables: dict[str, _Table] = {}
    counted_type = {
        pb.Connection.DESCRIPTOR.full_name: _CONNECTIONS,
        pb.Stream.DESCRIPTOR.full_name: _STREAMS,
    }
    stream_ids = pb.StreamList.DESCRIPTOR.fields_by_name["stream_ids"]

    def table_of(descriptor: Descriptor) -> _Table:
        name = descriptor.full_name
        if name in tables:
            return tables[name]
        table: _Table = {}
        tables[name] = table
        for field in descriptor.fields:
            tag = field.number << 3 | LENGTH_DELIMITED
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                child_type = field.message_type
                kind = counted_type.get(
                    child_type.full_name, _ENTRIES if _is_repeated(field) else -1
                )
                child = table_of(child_type) if _holds_lists(child_type) else None
                if kind >= 0 or child is not None:
                    table[tag] = (kind, child)
            elif field.full_name == stream_ids.full_name:
                table[tag] = (_STREAM_IDS, None)
        return table

    top = table_of(root)
    # Every payload is walked (an empty table for those without lists), so that
    # the walk sees which one the message carries.
    for number in PAYLOAD_KINDS:
        top.setdefault(number << 3 | LENGTH_DELIMITED, (-1, {}))
    return top


_ROOT = _build_tables(pb.ServerMessage.DESCRIPTOR)
#: What the walk knows of the inside of a group: nothing (it is jumped over field by field).
_EMPTY: _Table = {}


# ----------------------------------------------------------------- the walk


def _flatten(root: _Table) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """The tables reachable from ``root`` as the C walk takes them: table 0 is ``root``,
    each entry ``(tag, counted kind or -1, child table index or -1)``."""
    order: list[_Table] = []
    index: dict[int, int] = {}

    def number(table: _Table) -> int:
        if id(table) not in index:
            index[id(table)] = len(order)
            order.append(table)
        return index[id(table)]

    number(root)
    flat = []
    i = 0
    while i < len(order):
        flat.append(
            tuple(
                (tag, counted, -1 if child is None else number(child))
                for tag, (counted, child) in order[i].items()
            )
        )
        i += 1
    return tuple(flat)


try:  # the C walk (setup.py builds it where a compiler is found)
    from libp2p_introspection.protocol import _wirewalk
except ImportError:  # pragma: no cover - no compiler at install time
    _wirewalk = None  # type: ignore[assignment]
else:
    _wirewalk.configure_walk(_flatten(_ROOT))

#: Whether :func:`measure` runs the C walk first (``False``: only the Python walk).
ACCELERATED = _wirewalk is not None

#: A tree of fields, by number (``{2: {1: {}}}``: field 2's content, and field 1's inside it).
LevelTree = dict[int, "LevelTree"]


#: What :func:`occurrences` finds: how many, the last varint, the last bytes' span.
Occurrences = tuple[int, int | None, tuple[int, int] | None]


def occurrences(data: bytes | memoryview, path: tuple[int, ...]) -> Occurrences | None:
    """What :func:`~libp2p_introspection.protocol.protowire.values` finds at ``path``,
    in C: ``(occurrences, the value last_varint would keep or None if no occurrence is
    a varint, (begin, end) of the bytes last_string would keep or None)``; ``None``
    when that is not known (no C walk, or bytes on the way that are odd in any way:
    read them with ``protowire``, which says where)."""
    if _wirewalk is None:
        return None
    try:
        found: Occurrences | None = _wirewalk.occurrences(octets(data), path)
    except (TypeError, ValueError, BufferError, OverflowError):
        return None  # a buffer C cannot read, a field number above 64 bits
    return found


class LevelCheck:
    """Whether :func:`~libp2p_introspection.protocol.protowire.iter_fields` reads the
    top level of some bytes, and the content of every length-delimited occurrence of
    the fields of ``tree`` (at any depth it names), without a :class:`WireError`.

    Calling it answers ``True`` only when that is certain (in C, where it is built);
    ``False`` means "not known": read the bytes with ``protowire`` itself, which says
    where they are faulty.
    """

    def __init__(self, tree: LevelTree) -> None:
        nodes: list[tuple[tuple[int, int], ...]] = []

        def add(node: LevelTree) -> int:
            index = len(nodes)
            nodes.append(())
            nodes[index] = tuple((number, add(child)) for number, child in node.items())
            return index

        add(tree)
        self._nodes = tuple(nodes)

    def __call__(self, data: bytes | memoryview) -> bool:
        """``True``: those levels read without a fault; ``False``: not known."""
        if _wirewalk is None:
            return False
        try:
            return bool(_wirewalk.levels_ok(octets(data), self._nodes))
        except (TypeError, ValueError, BufferError):  # a buffer C cannot read (strided)
            return False


def measure(data: bytes | memoryview, limits: RecordLimits = DEFAULT_LIMITS) -> WireCounts:
    """Walk serialized ``ServerMessage`` bytes and count what parsing them would build.

    Never raises for any input: a fault is reported in
    :attr:`WireCounts.malformed`, a count above ``limits`` in
    :attr:`WireCounts.over_limit`. Constant memory (a stack of at most
    :data:`MAX_DEPTH` frames); time linear in the fields walked, at most
    :attr:`RecordLimits.max_fields`.

    Where the C walk is built (:data:`ACCELERATED`) it runs first, about 30
    times as fast; it answers only for bytes it finds sound and within the
    limits, and hands everything else (a fault, a count over its cap, a
    group, a non-canonical varint) to the Python walk, which words the
    result as it always has: the counts are the same either way. A ``memoryview``
    of wider items or of several dimensions is read as its bytes (recast, or copied
    when it is not contiguous).
    """
    data = octets(data)
    found = _measure_c(data, limits)
    return found if found is not None else measure_python(data, limits)


def _measure_c(data: bytes | memoryview, limits: RecordLimits) -> WireCounts | None:
    """The C walk's counts of ``data`` (already :func:`octets`), or None where it is not
    built or does not answer (a fault, a count over its cap, a buffer it cannot read)."""
    if _wirewalk is None:
        return None
    try:
        found = _wirewalk.walk(data, limits.caps(), limits.max_fields)
    except (TypeError, ValueError, BufferError):  # a buffer C cannot read (strided)
        return None
    if found is None:
        return None
    kind_number, connections, streams, stream_ids, entries, fields = found
    return WireCounts(PAYLOAD_KINDS.get(kind_number, ""), connections, streams, stream_ids,
                      entries, fields)  # fmt: skip


def measure_python(data: bytes | memoryview, limits: RecordLimits = DEFAULT_LIMITS) -> WireCounts:
    """:func:`measure` by the Python walk alone (the reference the C walk is tested
    against)."""
    walk = _walk(octets(data), limits, 0)
    try:
        next(walk)
    except StopIteration as done:
        result: WireCounts = done.value
        return result
    raise AssertionError("an unsliced walk does not pause")  # pragma: no cover


async def measure_paced(
    data: bytes | memoryview,
    limits: RecordLimits,
    pause: Callable[[], Awaitable[object]],
    slice_fields: int = SLICE_FIELDS,
) -> WireCounts:
    """:func:`measure`, awaiting ``pause()`` every ``slice_fields`` fields of the Python
    walk: the caller's event loop runs other work at each pause (a checkpoint such as
    ``trio.sleep(0)``; slices of :data:`SLICE_FIELDS` are a few ms apart). The C walk,
    where built, runs first without a pause and answers for sound data within the caps
    (module doc: a few ms at most); only what it hands over is walked in slices.
    Raises ``ValueError`` for a ``slice_fields`` below 1, and whatever ``pause`` raises
    (a cancellation)."""
    if slice_fields < 1:
        raise ValueError(f"slice_fields must be positive, got {slice_fields}")
    data = octets(data)
    found = _measure_c(data, limits)
    if found is not None:
        return found
    walk = _walk(data, limits, slice_fields)
    while True:
        try:
            next(walk)
        except StopIteration as done:
            result: WireCounts = done.value
            return result
        await pause()


def _walk(
    data: bytes | memoryview, limits: RecordLimits, slice_fields: int
) -> Generator[None, None, WireCounts]:
    counts = [0, 0, 0, 0]
    caps = limits.caps()
    max_fields = limits.max_fields
    # The one per-field check: the field budget, or the next pause if that comes first.
    checkpoint = min(max_fields, slice_fields) if slice_fields else max_fields
    fields = 0
    kind_number = 0
    over = malformed = ""
    stack: list[tuple[int, _Table, int]] = []
    table = _ROOT
    group = 0  # field number of the group being walked (0: a message)
    pos = 0
    end = len(data)
    try:
        while True:
            while pos < end:
                tag = data[pos]
                pos += 1
                if tag >= 0x80:
                    tag, pos = read_varint(data, pos - 1, end)
                    if tag > 0xFFFFFFFF:
                        raise WireError(f"tag above 32 bits before byte {pos}")
                fields += 1
                if fields > checkpoint:
                    if fields > max_fields:
                        over = f"more than {max_fields:,} fields (the walk the caps allow)"
                        break
                    yield
                    checkpoint = min(max_fields, fields + slice_fields)
                wire_type = tag & 7
                if wire_type == LENGTH_DELIMITED:
                    length = data[pos]
                    pos += 1
                    if length >= 0x80:
                        length, pos = read_varint(data, pos - 1, end)
                    stop = pos + length
                    if stop > end:
                        raise WireError(
                            f"field {tag >> 3} at byte {pos} announces {length} bytes; "
                            f"{end - pos} remain"
                        )
                    action = table.get(tag)
                    if action is None:
                        pos = stop
                        continue
                    counted, child = action
                    if counted >= 0:
                        counts[counted] += 1
                        if counts[counted] > caps[counted]:
                            over = f"more than {caps[counted]:,} {_COUNTED[counted]}"
                            break
                    if child is None:
                        pos = stop
                        continue
                    if len(stack) >= MAX_DEPTH:
                        raise WireError(f"nested deeper than {MAX_DEPTH} levels")
                    if not stack:
                        kind_number = tag >> 3
                    stack.append((end, table, group))
                    table, end, group = child, stop, 0
                elif wire_type == VARINT:
                    if data[pos] < 0x80:
                        pos += 1
                    else:
                        _, pos = read_varint(data, pos, end)
                elif wire_type == FIXED32:
                    pos += 4
                elif wire_type == FIXED64:
                    pos += 8
                elif wire_type == START_GROUP:
                    if tag < 8:
                        raise WireError(f"group of field number 0 at byte {pos}")
                    if len(stack) >= MAX_DEPTH:
                        raise WireError(f"nested deeper than {MAX_DEPTH} levels")
                    # A group (proto2's, unknown here) runs to its END_GROUP tag.
                    stack.append((end, table, group))
                    table, group = _EMPTY, tag >> 3
                elif wire_type == END_GROUP:
                    if not group or group != tag >> 3:
                        raise WireError(f"unmatched end of group {tag >> 3} at byte {pos}")
                    end, table, group = stack.pop()
                else:
                    raise WireError(f"wire type {wire_type} at byte {pos}")
            if over:
                break
            if pos > end:
                raise WireError(f"a fixed-size field runs past its message at byte {end}")
            if group:
                raise WireError(f"group {group} is not closed")
            if not stack:
                break
            end, table, group = stack.pop()
    except WireError as exc:
        malformed = str(exc)
    except IndexError:  # a tag, length or varint cut off by the end of the bytes
        malformed = f"cut short: a field at byte {pos} runs past the end ({len(data)} bytes)"
    return WireCounts(
        PAYLOAD_KINDS.get(kind_number, ""),
        counts[_CONNECTIONS],
        counts[_STREAMS],
        counts[_STREAM_IDS],
        counts[_ENTRIES],
        fields,
        over,
        malformed,
    )
