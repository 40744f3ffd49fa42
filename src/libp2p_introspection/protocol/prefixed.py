"""Varint-length-prefixed messages in a byte stream, read as the bytes arrive (sans-I/O).

libp2p protocols over a stream (identify, Kademlia) send each protobuf message
behind its length as a base-128 varint. :func:`read_length_prefix` reads that
prefix (over :func:`~libp2p_introspection.protocol.protowire.read_varint`), and
:class:`PrefixedReader` follows a stream of such messages fed in chunks of any
size, in order: each message's start and end, its declared length, and up to
``keep`` bytes of its body. The introspector's readers of identify and of
inbound Kademlia requests both read through these.
"""

from __future__ import annotations

from dataclasses import dataclass

from libp2p_introspection.protocol.errors import DataError
from libp2p_introspection.protocol.protowire import WireError, read_varint

#: A varint of 64 bits takes at most this many bytes.
MAX_PREFIX_BYTES = 10


class PrefixError(DataError):
    """A length prefix that is refused: no varint within 10 bytes, or a length over the limit."""


def read_length_prefix(
    data: bytes | bytearray | memoryview, max_size: int, start: int = 0
) -> tuple[int, int] | None:
    """The length prefix at ``data[start:]``: ``(length, position after it)``, bytes;
    ``None`` while it is incomplete (fewer than 10 bytes, all continuing).

    Raises :class:`PrefixError` if 10 bytes hold no whole varint or the length is over
    ``max_size`` bytes."""
    available = len(data) - start
    try:
        length, after = read_varint(data, start, len(data))
    except WireError:
        if available < MAX_PREFIX_BYTES:
            return None
        raise PrefixError("has no varint length prefix") from None
    if length > max_size:
        raise PrefixError(f"declares {length} bytes")
    return length, after


@dataclass(frozen=True, slots=True)
class Started:
    """The first byte of a message (of its prefix) was read."""


@dataclass(frozen=True, slots=True)
class PrefixedMessage:
    """A whole message was read: its ``declared_length`` (bytes) and its body's first
    ``keep`` bytes (``body``; the whole body if it is not longer)."""

    declared_length: int
    body: bytes


STARTED = Started()


class PrefixedReader:
    """Follows the varint-length-prefixed messages of one stream, fed in order.

    :meth:`feed` returns what each chunk completed, in stream order:
    :data:`STARTED` when a message's first byte is read, a :class:`PrefixedMessage` when its
    last is. A refused prefix (see :func:`read_length_prefix`) stops the reading:
    :attr:`refused` says why, and further chunks are ignored. At most ``keep``
    bytes of a body are held (default: ``max_size``, every body whole).
    """

    __slots__ = ("_body", "_keep", "_length", "_max_size", "_prefix", "_read", "refused")

    def __init__(self, max_size: int, keep: int | None = None) -> None:
        self._max_size = max_size
        self._keep = max_size if keep is None else keep
        self._prefix = bytearray()
        self._length: int | None = None
        self._body = bytearray()
        self._read = 0
        #: Why the reading stopped (``None``: it goes on).
        self.refused: str | None = None

    @property
    def in_message(self) -> bool:
        """A message has begun and is not whole yet."""
        return bool(self._prefix) or self._length is not None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Started | PrefixedMessage]:
        """Read one chunk; what it started and completed, in order."""
        found: list[Started | PrefixedMessage] = []
        view = memoryview(data)
        pos = 0
        while pos < len(view) and self.refused is None:
            if self._length is None:
                if not self._prefix:
                    found.append(STARTED)
                before = len(self._prefix)
                self._prefix += view[pos : pos + MAX_PREFIX_BYTES - before]
                try:
                    prefix = read_length_prefix(self._prefix, self._max_size)
                except PrefixError as exc:
                    self.refused = str(exc)
                    break
                if prefix is None:
                    pos = len(view)
                    break
                self._length, used = prefix
                pos += used - before
            else:
                take = min(len(view) - pos, self._length - self._read)
                room = self._keep - len(self._body)
                if room > 0:
                    self._body += view[pos : pos + min(take, room)]
                self._read += take
                pos += take
            if self._read == self._length:
                found.append(PrefixedMessage(self._length, bytes(self._body)))
                self._prefix.clear()
                self._length = None
                self._body.clear()
                self._read = 0
        return found
