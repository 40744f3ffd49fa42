"""Framing of live server messages (PROTOCOL.md §2).

Every WebSocket binary message from server to client is one record::

    offset 0   4 bytes  protocol version, uint32 little-endian (1)
    offset 4   4 bytes  FNV-1a 32 of the message bytes, little-endian
    offset 8   4 bytes  message length in bytes, little-endian
    offset 12  n bytes  a serialized ServerMessage

Client-to-server commands are bare serialized ``ClientCommand`` bytes, at
most :data:`MAX_COMMAND_SIZE` bytes. This module is pure: bytes in, bytes or
errors out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from fnv_hash_fast import fnv1a_32 as _fnv1a_32

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.errors import DataError
from libp2p_introspection.protocol.protowire import (
    LENGTH_DELIMITED,
    PAYLOAD_KINDS,
    WireError,
    iter_fields,
    read_varint,
)

#: The protocol version this implementation speaks (frame header, ``Version``).
PROTOCOL_VERSION = 1
#: Largest server-to-client message or recording record, bytes (64 MiB).
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
#: Largest client-to-server command, bytes (64 KiB).
MAX_COMMAND_SIZE = 64 * 1024
#: Size of the live frame header, bytes.
HEADER_SIZE = 12

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_HEADER = struct.Struct("<III")


class FrameError(DataError):
    """A server frame could not be accepted. Subclasses say why."""


class ShortFrameError(FrameError):
    """Fewer bytes than the header, or than the header's length field, announce."""


class FrameVersionError(FrameError):
    """The frame's protocol version is not one this implementation speaks."""


class ChecksumError(FrameError):
    """The FNV-1a 32 hash in the header does not match the message bytes."""


class FrameTooLargeError(FrameError):
    """The length field is above the size limit (nothing was allocated for it)."""


class TrailingBytesError(FrameError):
    """More bytes follow the message than the length field announces."""


def fnv1a32_reference(data: bytes | bytearray | memoryview) -> int:
    """FNV-1a 32-bit hash of ``data`` in pure Python (basis 0x811C9DC5, prime 0x01000193).

    The reference the tests check the fast implementation against; about
    10 MB/s, too slow for multi-megabyte snapshots.
    """
    h = _FNV_OFFSET
    for byte in bytes(data):
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def fnv1a32(data: bytes | bytearray | memoryview) -> int:
    """FNV-1a 32-bit hash of ``data``, computed in C by ``fnv-hash-fast`` (about 1 GB/s)."""
    return _fnv1a_32(bytes(data) if not isinstance(data, bytes) else data)


def encode_frame(message: bytes) -> bytes:
    """Wrap serialized ``ServerMessage`` bytes in a live frame (header + message).

    Raises :class:`FrameTooLargeError` if ``message`` exceeds :data:`MAX_MESSAGE_SIZE`.
    """
    if len(message) > MAX_MESSAGE_SIZE:
        raise FrameTooLargeError(
            f"message of {len(message)} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit"
        )
    return _HEADER.pack(PROTOCOL_VERSION, fnv1a32(message), len(message)) + message


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative ``value``."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: ``ServerMessage.version`` (field 1) = ``Version{version: 1}``, serialized.
_VERSION_FIELD = b"\x0a\x02\x08" + bytes((PROTOCOL_VERSION,))
#: Tag of ``ServerMessage.state`` (field 2, length-delimited).
_STATE_TAG = b"\x12"


def encode_state_frame(state: bytes) -> bytes:
    """Frame ``ServerMessage{version: 1, state: S}`` from the serialized ``State`` ``S``.

    Byte for byte what :func:`encode_server_message` makes of that message
    (fields in number order: the version, then the state), without building
    the ``ServerMessage`` or copying the ``State`` into it.
    """
    return encode_frame(state_message(state))


def state_message(state: bytes) -> bytes:
    """The serialized ``ServerMessage{version: 1, state: S}`` for the serialized ``State`` ``S``
    (what :func:`encode_state_frame` frames)."""
    return b"".join((_VERSION_FIELD, _STATE_TAG, encode_varint(len(state)), state))


def frame_with_checksum(message: bytes, checksum: int) -> bytes:
    """:func:`encode_frame` of ``message`` whose FNV-1a 32 (``checksum``) was computed
    already (:func:`fnv1a32`): the three steps can then run apart (a caller on an event
    loop yields between them). Raises :class:`FrameTooLargeError` as :func:`encode_frame`."""
    if len(message) > MAX_MESSAGE_SIZE:
        raise FrameTooLargeError(
            f"message of {len(message)} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit"
        )
    return _HEADER.pack(PROTOCOL_VERSION, checksum, len(message)) + message


#: Tags of ``State.subsystems`` and ``Subsystems.connections`` (field 1, length-delimited).
_SUBSYSTEMS_TAG = _CONNECTION_TAG = b"\x0a"


def assemble_state(
    head: bytes, connections: Iterable[bytes], subsystems_rest: bytes = b""
) -> bytes:
    """A serialized ``State`` from pieces serialized separately.

    ``head`` is a serialized ``State`` without ``subsystems`` (fields 2 to 5),
    ``connections`` each ``Connection`` serialized on its own, in order, and
    ``subsystems_rest`` a serialized ``Subsystems`` without connections (its
    ``dht``, if any). The result is byte for byte the serialization of the
    whole message (fields in number order), with ``subsystems`` present, so a
    source can keep per-connection messages (or their bytes) and never build
    or copy one big ``State``.
    """
    parts: list[bytes] = []
    append = parts.append
    for data in connections:
        append(_CONNECTION_TAG)
        append(encode_varint(len(data)))
        append(data)
    append(subsystems_rest)
    subsystems = b"".join(parts)
    return b"".join((_SUBSYSTEMS_TAG, encode_varint(len(subsystems)), subsystems, head))


def encode_server_message(message: pb.ServerMessage) -> bytes:
    """Serialize ``message`` (setting ``version`` to 1, as clients expect) and frame it."""
    message.version.version = PROTOCOL_VERSION
    return encode_frame(message.SerializeToString())


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The 12-byte header of a live frame."""

    version: int
    checksum: int
    length: int


def decode_header(data: bytes | memoryview, max_size: int = MAX_MESSAGE_SIZE) -> FrameHeader:
    """Parse and check the header at the start of ``data``.

    Raises :class:`ShortFrameError` (under 12 bytes), :class:`FrameVersionError`
    (version other than 1), :class:`FrameTooLargeError` (length above ``max_size``).
    """
    if len(data) < HEADER_SIZE:
        raise ShortFrameError(f"frame of {len(data)} bytes is shorter than the 12-byte header")
    version, checksum, length = _HEADER.unpack_from(data)
    if version != PROTOCOL_VERSION:
        raise FrameVersionError(
            f"frame has protocol version {version}; this implementation speaks "
            f"version {PROTOCOL_VERSION}"
        )
    if length > max_size:
        raise FrameTooLargeError(f"frame announces {length} bytes, above the {max_size}-byte limit")
    return FrameHeader(version, checksum, length)


def decode_frame(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """Check one whole live frame and return its message bytes.

    Raises the :class:`FrameError` subclass naming the fault: short, wrong
    version, too large, checksum mismatch, or trailing bytes.
    """
    header = decode_header(data, max_size)
    end = HEADER_SIZE + header.length
    if len(data) < end:
        raise ShortFrameError(
            f"frame announces {header.length} message bytes but carries {len(data) - HEADER_SIZE}"
        )
    if len(data) > end:
        raise TrailingBytesError(
            f"frame carries {len(data) - end} bytes after its {header.length}-byte message"
        )
    message = data[HEADER_SIZE:end]
    actual = fnv1a32(message)
    if actual != header.checksum:
        raise ChecksumError(
            f"checksum mismatch: header says {header.checksum:#010x}, "
            f"message hashes to {actual:#010x}"
        )
    return message


def parse_server_message(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> pb.ServerMessage:
    """Decode a live frame into a ``ServerMessage``.

    Raises :class:`FrameError` subclasses for framing faults and
    :class:`google.protobuf.message.DecodeError` when the message bytes do not parse.
    """
    message = pb.ServerMessage()
    message.ParseFromString(decode_frame(data, max_size))
    return message


def payload_kind(data: bytes | memoryview) -> str:
    """Which payload serialized ``ServerMessage`` bytes carry: ``state``, ``runtime``,
    ``event``, ``response``, ``notice``, or ``""`` if none can be read.

    Reads only the leading fields (with :func:`~.protowire.iter_fields`, which jumps over
    a field's bytes), so counting multi-megabyte snapshots costs nothing: fields
    2..6 are the payload oneof; field 1 (the version) is skipped.
    (:func:`~.wire.measure` tells the kind as a parser decides it, the last
    payload field, at the cost of a walk.)
    """
    end = len(data)
    # What encode_server_message writes: a short version field, then the payload's tag;
    # read here directly (every frame a session writes is counted), the same answer.
    if end > 2 and data[0] == 0x0A and data[1] < 0x80:
        pos = 2 + data[1]
        if pos < end:
            tag = data[pos]
            if tag < 0x80 and tag & 7 == LENGTH_DELIMITED and tag >> 3 > 1:
                try:
                    length, begin = read_varint(data, pos + 1, end)
                except WireError:
                    return ""
                return PAYLOAD_KINDS.get(tag >> 3, "") if begin + length <= end else ""
    try:
        for number, wire_type, _, _, _ in iter_fields(data):
            if wire_type != LENGTH_DELIMITED:
                return ""
            if number != 1:
                return PAYLOAD_KINDS.get(number, "")
    except WireError:
        return ""
    return ""
