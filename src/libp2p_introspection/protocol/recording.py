"""Recording files: the data-dump format of PROTOCOL.md §2.

Layout: a 4-byte little-endian file version (1) at offset 0, then records back
to back, each ``[fnv1a32 (4, LE)][length (4, LE)][ServerMessage bytes]``.

Files are read and written as streams, one record at a time, in constant
memory. A record whose hash does not match is skipped and counted (or raised,
if the reader is strict); a truncated last record is reported and everything
before it kept; a length field above the size limit is an error, raised before
anything is allocated for it.

A record's size does not bound what parsing it costs (two bytes make an empty
``Connection``), so the reader also walks every record's wire format
(:func:`~libp2p_introspection.protocol.wire.measure`) before handing it out:
a record that holds more than its :class:`~.wire.RecordLimits` allow (by
default 40,000 connections, 100,000 streams, 100,000 other list entries) is
skipped and counted like a damaged one, with the reason for the first kept
in :attr:`RecordingReader.over_limit_reason`. Parsing a record the reader
yields therefore costs at most what those limits allow.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from google.protobuf.message import DecodeError

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.errors import DataError
from libp2p_introspection.protocol.framing import MAX_MESSAGE_SIZE, fnv1a32
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits, WireCounts, measure

#: The file version this implementation reads and writes.
FILE_VERSION = 1
#: Size of a record's header (hash + length), bytes.
RECORD_HEADER_SIZE = 8
_U32 = struct.Struct("<I")
_RECORD_HEADER = struct.Struct("<II")
# File versions that are plausibly a later revision of this format rather than
# some other kind of file; anything else is "not a recording".
_PLAUSIBLE_VERSIONS = range(2, 256)


class RecordingError(DataError):
    """A recording file could not be read as one. Subclasses say why.

    Not a :class:`~.framing.FrameError`: a recording's records are framed
    by the file format (§5), not by the frame header of a live session."""


class NotARecordingError(RecordingError):
    """The file is empty, too short, or does not start with a recording header."""


class UnsupportedFileVersionError(RecordingError):
    """The file is a recording of a version this implementation does not read."""


class RecordChecksumError(RecordingError):
    """A record's FNV-1a 32 hash does not match its bytes."""


class TruncatedRecordError(RecordingError):
    """The file ends inside a record (a writer stopped mid-write)."""


class RecordTooLargeError(RecordingError):
    """A record's length field is above the reader's size limit."""


class RecordOverLimitError(RecordingError):
    """A record holds more than the reader's :class:`~.wire.RecordLimits` allow."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record: its byte ``offset`` in the file, its ``ServerMessage`` bytes, and
    what the reader's wire walk counted in them (``None`` if it did not walk)."""

    offset: int
    data: bytes
    counts: WireCounts | None = None

    @property
    def kind(self) -> str:
        """The payload kind (``state``, ``event``, ...; ``""`` if none), from the wire walk
        (parsed if the reader did not walk)."""
        if self.counts is not None:
            return self.counts.kind
        try:
            return self.message().WhichOneof("payload") or ""
        except DecodeError:
            return ""

    def message(self) -> pb.ServerMessage:
        """Parse the record; raises ``google.protobuf.message.DecodeError`` if it does not
        (at once, without parsing, when the wire walk found it malformed)."""
        if self.counts is not None and self.counts.malformed:
            raise DecodeError(f"record at offset {self.offset}: {self.counts.malformed}")
        message = pb.ServerMessage()
        message.ParseFromString(self.data)
        return message


class RecordingReader:
    """Iterate the records of a recording lazily.

    ``source`` is a path or a binary stream (read sequentially; never sought).
    With ``errors="skip"`` (the default) records with a bad checksum are
    skipped and counted in :attr:`checksum_failures`, and a truncated tail
    sets :attr:`truncated` and ends the iteration; with ``errors="raise"``
    both raise (:class:`RecordChecksumError`, :class:`TruncatedRecordError`).
    Whatever the mode, a bad file header raises :class:`NotARecordingError`
    or :class:`UnsupportedFileVersionError`, and a length field above
    ``max_record_size`` raises :class:`RecordTooLargeError` (the rest of the
    file cannot be framed after it).

    ``limits``: every record is walked (:func:`~.wire.measure`) and one above
    these :class:`~.wire.RecordLimits` is skipped and counted in
    :attr:`over_limit` (the first one's offset, kind and reason in
    :attr:`over_limit_reason`), or raises :class:`RecordOverLimitError` with
    ``errors="raise"``; ``None`` yields every record unwalked (for readers
    that never parse). The walk's counts ride on each :class:`Record`.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        errors: Literal["skip", "raise"] = "skip",
        max_record_size: int = MAX_MESSAGE_SIZE,
        limits: RecordLimits | None = DEFAULT_LIMITS,
    ) -> None:
        if isinstance(source, str | os.PathLike):
            self._stream: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed in close()
            self._owned = True
            self.name = str(source)
        else:
            self._stream = source
            self._owned = False
            self.name = getattr(source, "name", "<stream>")
        self.errors = errors
        self.max_record_size = max_record_size
        self.limits = limits
        self.records = 0
        self.checksum_failures = 0
        #: Records skipped for holding more than :attr:`limits` allow.
        self.over_limit = 0
        #: Why the first of them was skipped (``""`` if none was).
        self.over_limit_reason = ""
        self.truncated = False
        self.truncated_at: int | None = None
        self.bytes_read = 0
        self._header_read = False

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file if this reader opened it."""
        if self._owned:
            self._stream.close()

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        self.bytes_read += len(data)
        return data

    def read_header(self) -> int:
        """Read and check the file version; returns it. Called by iteration if needed."""
        if self._header_read:
            return FILE_VERSION
        head = self._read(4)
        if not head:
            raise NotARecordingError(f"{self.name}: empty file, not a recording")
        if len(head) < 4:
            raise NotARecordingError(
                f"{self.name}: {len(head)} bytes, too short for a recording header"
            )
        (version,) = _U32.unpack(head)
        if version != FILE_VERSION:
            if version in _PLAUSIBLE_VERSIONS:
                raise UnsupportedFileVersionError(
                    f"{self.name}: recording file version {version}; this tool reads "
                    f"version {FILE_VERSION}"
                )
            raise NotARecordingError(
                f"{self.name}: not a recording: it does not start with a recording header "
                f"(first bytes {head.hex()})"
            )
        self._header_read = True
        return version

    def __iter__(self) -> Iterator[Record]:
        self.read_header()
        while True:
            offset = self.bytes_read
            header = self._read(RECORD_HEADER_SIZE)
            if not header:
                return
            if len(header) < RECORD_HEADER_SIZE:
                self._truncate(offset, f"record header cut short after {len(header)} bytes")
                return
            checksum, length = _RECORD_HEADER.unpack(header)
            if length > self.max_record_size:
                raise RecordTooLargeError(
                    f"{self.name}: record at offset {offset} announces {length} bytes, above "
                    f"the {self.max_record_size}-byte limit"
                )
            data = self._read(length)
            if len(data) < length:
                self._truncate(offset, f"record of {length} bytes cut short at {len(data)}")
                return
            if fnv1a32(data) != checksum:
                self.checksum_failures += 1
                if self.errors == "raise":
                    raise RecordChecksumError(
                        f"{self.name}: record at offset {offset} fails its checksum"
                    )
                continue
            self.records += 1
            counts = None
            if self.limits is not None:
                counts = measure(data, self.limits)
                if counts.over_limit:
                    self._skip_over_limit(offset, len(data), counts)
                    continue
            yield Record(offset, data, counts)

    def _skip_over_limit(self, offset: int, size: int, counts: WireCounts) -> None:
        reason = (
            f"record at offset {offset} ({counts.kind or 'no payload'}, {size:,} bytes) holds "
            f"{counts.over_limit}"
        )
        if self.errors == "raise":
            raise RecordOverLimitError(f"{self.name}: {reason}")
        self.over_limit += 1
        if not self.over_limit_reason:
            self.over_limit_reason = reason

    def _truncate(self, offset: int, what: str) -> None:
        self.truncated = True
        self.truncated_at = offset
        if self.errors == "raise":
            raise TruncatedRecordError(f"{self.name}: truncated at offset {offset}: {what}")

    def messages(self) -> Iterator[pb.ServerMessage]:
        """Iterate parsed ``ServerMessage``s (see :meth:`Record.message` for errors)."""
        for record in self:
            yield record.message()


class RecordingWriter:
    """Append records to a recording, one whole record per write, flushed.

    ``target`` is a path (created or truncated) or a binary stream (closed by
    :meth:`close` only if ``close_stream``). The file header is written at
    once. A process killed at any moment leaves a file readable up to its last
    whole record. Raises :class:`RecordTooLargeError`
    for a message above ``max_record_size``; ``OSError`` from the file system
    propagates (nothing already written is lost).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        max_record_size: int = MAX_MESSAGE_SIZE,
        flush: bool = True,
        close_stream: bool = False,
    ) -> None:
        if isinstance(target, str | os.PathLike):
            self._stream: BinaryIO = open(Path(target), "wb")  # noqa: SIM115 - closed in close()
            self._owned = True
        else:
            self._stream = target
            self._owned = close_stream
        self.max_record_size = max_record_size
        self._flush = flush
        self.records = 0
        self.bytes_written = 0
        self._write(_U32.pack(FILE_VERSION))

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        if self._flush:
            self._stream.flush()
        self.bytes_written += len(data)

    def write(self, message_bytes: bytes, checksum: int | None = None) -> None:
        """Append one serialized ``ServerMessage`` (``checksum`` if already known)."""
        if len(message_bytes) > self.max_record_size:
            raise RecordTooLargeError(
                f"message of {len(message_bytes)} bytes exceeds the "
                f"{self.max_record_size}-byte record limit"
            )
        if checksum is None:
            checksum = fnv1a32(message_bytes)
        self._write(_RECORD_HEADER.pack(checksum, len(message_bytes)) + message_bytes)
        self.records += 1

    def write_message(self, message: pb.ServerMessage) -> None:
        """Serialize and append ``message``."""
        self.write(message.SerializeToString())

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        try:
            self._stream.flush()
        finally:
            if self._owned:
                self._stream.close()
