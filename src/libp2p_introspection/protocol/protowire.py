"""Protobuf wire bytes read one field at a time, without parsing.

For readers that need a timestamp, a name or a message type out of untrusted
bytes and not the whole message (a recording's index, ``inspect``, a command's
id, a Kademlia request's type): :func:`read_varint` reads one base-128 varint,
:func:`iter_fields` the fields of one message one level deep, :func:`values`
every occurrence of a field at a path, and :func:`last_varint` /
:func:`last_string` the value a parser keeps. None of them trusts a length
field for an allocation: a length only moves a position, after it is checked
against the bytes that hold it. The whole-message walk that bounds what parsing
costs is :mod:`libp2p_introspection.protocol.wire`.
"""

from __future__ import annotations

from collections.abc import Iterator

from libp2p_introspection.protocol.errors import DataError

VARINT, FIXED64, LENGTH_DELIMITED, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5

#: Payload fields of ``ServerMessage`` (its ``payload`` oneof), by number.
PAYLOAD_KINDS = {2: "state", 3: "runtime", 4: "event", 5: "response", 6: "notice"}


class WireError(DataError):
    """The bytes are not a well-formed protobuf message (the message says where)."""



def read_varint(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """The base-128 varint at ``data[pos:end]``: ``(value, position after it)``.

    Raises :class:`WireError` if it is cut short or longer than 10 bytes.
    """
    value = shift = 0
    stop = min(end, pos + 10)
    while pos < stop:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    if pos >= end:
        raise WireError(f"varint cut short at byte {pos}")
    raise WireError(f"varint longer than 10 bytes at byte {pos - 10}")


def octets(data: bytes | memoryview) -> bytes | memoryview:
    """``data`` as a sequence of single bytes, which every reader here (and the C walk
    of :mod:`~libp2p_introspection.protocol.wire`) reads alike: a ``memoryview`` whose
    items are not unsigned bytes (``cast("I")``, ``"b"``, ``"c"``) or that has more than
    one dimension is recast to format ``"B"`` (no copy) when it is C-contiguous, else
    copied with ``tobytes()``; anything else is returned as it is. (Indexing a view of
    4-byte items gives 4-byte integers, where a C reader of its buffer sees bytes.)"""
    if not isinstance(data, memoryview) or (data.format == "B" and data.ndim == 1):
        return data
    try:
        return data.cast("B") if data.c_contiguous else data.tobytes()
    except (TypeError, ValueError):  # a released or 0-d view: read as it is, as before
        return data


def iter_fields(
    data: bytes | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, int, int, int, int]]:
    """The fields of the message at ``data[start:end]``, one level deep.

    Yields ``(field number, wire type, value, value start, value end)``:
    ``value`` is the integer of a varint or fixed field, the length of a
    length-delimited one (whose bytes are ``data[value start:value end]``).
    Positions are in bytes, a ``memoryview`` read as its bytes (:func:`octets`).
    Raises :class:`WireError` at the first fault (groups are one).
    """
    data = octets(data)
    pos = start
    end = len(data) if end is None else end
    while pos < end:
        tag, pos = read_varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        begin = pos
        if wire_type == VARINT:
            value, pos = read_varint(data, pos, end)
        elif wire_type == LENGTH_DELIMITED:
            value, begin = read_varint(data, pos, end)
            pos = begin + value
        elif wire_type == FIXED32:
            pos += 4
            value = int.from_bytes(data[begin:pos], "little")
        elif wire_type == FIXED64:
            pos += 8
            value = int.from_bytes(data[begin:pos], "little")
        else:
            raise WireError(f"wire type {wire_type} at byte {pos}")
        if pos > end:
            raise WireError(f"field {number} at byte {begin} runs past its message")
        yield number, wire_type, value, begin, pos


def values(
    data: bytes | memoryview, path: tuple[int, ...], start: int = 0, end: int | None = None
) -> Iterator[tuple[int, int, int, int]]:
    """Every occurrence of the field at ``path`` (field numbers, outermost first).

    Yields ``(wire type, value, value start, value end)`` as
    :func:`iter_fields` does, in wire order, through every occurrence of each
    enclosing field (protobuf merges repeated occurrences of a singular
    message, so the last value yielded is the one a parser keeps). Raises
    :class:`WireError` for malformed bytes on the way.
    """
    return _values(octets(data), path, start, end)


def _values(
    data: bytes | memoryview, path: tuple[int, ...], start: int, end: int | None
) -> Iterator[tuple[int, int, int, int]]:
    first, rest = path[0], path[1:]
    for number, wire_type, value, begin, stop in iter_fields(data, start, end):
        if number != first:
            continue
        if not rest:
            yield wire_type, value, begin, stop
        elif wire_type == LENGTH_DELIMITED:
            yield from _values(data, rest, begin, stop)


def last_varint(data: bytes | memoryview, path: tuple[int, ...], default: int = 0) -> int:
    """The value a parser keeps for the varint field at ``path`` (``default`` if absent)."""
    found = default
    for wire_type, value, _, _ in values(data, path):
        if wire_type == VARINT:
            found = value & 0xFFFFFFFFFFFFFFFF
    return found


def last_string(data: bytes | memoryview, path: tuple[int, ...], default: str = "") -> str:
    """The string a parser keeps for the field at ``path`` (``default`` if absent).

    Raises :class:`WireError` if it is not valid UTF-8 (as a parser would refuse it).
    """
    data = octets(data)
    found: tuple[int, int] | None = None
    for wire_type, _, begin, stop in values(data, path):
        if wire_type == LENGTH_DELIMITED:
            found = (begin, stop)
    if found is None:
        return default
    try:
        return bytes(data[found[0] : found[1]]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"field {path} is not valid UTF-8") from exc
