"""Recording files (§2): round trip, and every file fault on small hand-made files."""

from __future__ import annotations

import io
import struct

import pytest
from google.protobuf.message import DecodeError
from hostile_records import empty_connections_state
from hypothesis import given
from hypothesis import strategies as st

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import fnv1a32
from libp2p_introspection.protocol.recording import (
    NotARecordingError,
    RecordChecksumError,
    RecordingError,
    RecordingReader,
    RecordingWriter,
    RecordOverLimitError,
    RecordTooLargeError,
    TruncatedRecordError,
    UnsupportedFileVersionError,
)
from libp2p_introspection.protocol.wire import RecordLimits


def _message(n: int) -> bytes:
    message = pb.ServerMessage()
    message.version.version = 1
    message.event.type.name = "E"
    message.event.ts = n
    message.event.content = f'{{"n": {n}}}'
    return message.SerializeToString()


def _file(messages: list[bytes]) -> bytes:
    out = io.BytesIO()
    writer = RecordingWriter(out)
    for data in messages:
        writer.write(data)
    return out.getvalue()


def _read(data: bytes, **kw) -> tuple[list[bytes], RecordingReader]:
    reader = RecordingReader(io.BytesIO(data), **kw)
    return [r.data for r in reader], reader


def test_layout_and_round_trip(tmp_path):
    messages = [_message(n) for n in range(5)]
    data = _file(messages)
    assert data[:4] == b"\x01\x00\x00\x00"
    checksum, length = struct.unpack_from("<II", data, 4)
    assert (checksum, length) == (fnv1a32(messages[0]), len(messages[0]))
    read, reader = _read(data)
    assert read == messages
    assert (reader.records, reader.checksum_failures, reader.truncated) == (5, 0, False)
    path = tmp_path / "x.mock"
    path.write_bytes(data)
    with RecordingReader(path) as on_disk:
        assert [m.event.ts for m in on_disk.messages()] == list(range(5))


def test_bad_checksum_is_skipped_and_counted():
    messages = [_message(n) for n in range(3)]
    data = bytearray(_file(messages))
    second = 4 + 8 + len(messages[0])
    data[second + 8] ^= 0xFF  # corrupt the second record's first message byte
    read, reader = _read(bytes(data))
    assert read == [messages[0], messages[2]]
    assert reader.checksum_failures == 1
    with pytest.raises(RecordChecksumError):
        _read(bytes(data), errors="raise")


@pytest.mark.parametrize("cut", [1, 7, 9, 20])
def test_truncated_tail_is_reported_and_the_rest_kept(cut):
    messages = [_message(n) for n in range(3)]
    data = _file(messages)[:-cut]
    read, reader = _read(data)
    assert read == messages[:2]
    assert reader.truncated
    assert reader.truncated_at == 4 + 2 * 8 + len(messages[0]) + len(messages[1])
    with pytest.raises(TruncatedRecordError, match="truncated at offset"):
        _read(data, errors="raise")


def test_wrong_file_version():
    data = struct.pack("<I", 2) + _file([_message(1)])[4:]
    with pytest.raises(UnsupportedFileVersionError, match="version 2"):
        _read(data)


@pytest.mark.parametrize(
    "data", [b"PK\x03\x04 this is a zip", b"\x89PNG\r\n\x1a\n", b"hello world, not a recording"]
)
def test_not_a_recording(data):
    with pytest.raises(NotARecordingError, match="does not start with a recording header"):
        _read(data)


@pytest.mark.parametrize(("data", "what"), [(b"", "empty file"), (b"\x01\x00", "too short")])
def test_empty_or_tiny_file(data, what):
    with pytest.raises(NotARecordingError, match=what):
        _read(data)


def test_length_field_above_the_limit_is_an_error_not_an_allocation():
    data = struct.pack("<III", 1, 0, 0xFFFFFFF0)  # announces ~4 GiB
    with pytest.raises(RecordTooLargeError, match="above the"):
        _read(data)
    small_limit = _file([_message(1), b"x" * 1000])
    read = []
    with pytest.raises(RecordTooLargeError):
        for record in RecordingReader(io.BytesIO(small_limit), max_record_size=500):
            read.append(record.data)
    assert read == [_message(1)]  # what came before is still delivered


def test_errors_are_distinct_and_share_a_base():
    kinds = [NotARecordingError, UnsupportedFileVersionError, RecordChecksumError,
             TruncatedRecordError, RecordTooLargeError, RecordOverLimitError]  # fmt: skip
    assert len(set(kinds)) == 6
    assert all(issubclass(k, RecordingError) for k in kinds)


def test_writer_refuses_a_record_over_the_limit():
    writer = RecordingWriter(io.BytesIO(), max_record_size=10)
    with pytest.raises(RecordTooLargeError):
        writer.write(b"x" * 11)


@given(st.binary(max_size=300))
def test_random_bytes_give_only_documented_errors(data):
    try:
        for record in RecordingReader(io.BytesIO(data), max_record_size=1 << 20):
            assert len(record.data) <= 1 << 20
    except RecordingError:
        pass


def test_a_record_over_the_limits_is_skipped_counted_and_the_rest_kept():
    hostile = empty_connections_state(1_000_000)  # 2 MB that would parse into 1,000,000 objects
    data = _file([_message(1), hostile, _message(2), hostile])
    read, reader = _read(data)
    assert read == [_message(1), _message(2)]
    assert reader.over_limit == 2
    assert reader.records == 4  # whole records with a good checksum, skipped ones included
    assert reader.over_limit_reason == (
        f"record at offset {4 + 8 + len(_message(1))} (state, {len(hostile):,} bytes) holds "
        "more than 40,000 connections (the max_connections cap)"
    )


def test_the_limits_are_the_readers_to_set():
    data = _file([empty_connections_state(50_000)])
    assert _read(data)[1].over_limit == 1
    read, reader = _read(data, limits=RecordLimits(max_connections=50_000))
    assert len(read) == 1 and reader.over_limit == 0
    read, reader = _read(data, limits=None)  # no walk at all
    assert len(read) == 1 and reader.over_limit == 0
    with pytest.raises(RecordOverLimitError, match="more than 40,000 connections"):
        _read(data, errors="raise")


def test_a_record_the_walk_finds_malformed_raises_decodeerror_without_parsing():
    data = _file([b"\x12\x05\x0a", _message(3)])  # a state that announces more than it holds
    records = list(RecordingReader(io.BytesIO(data)))
    assert records[0].counts.malformed and records[0].kind == ""
    with pytest.raises(DecodeError, match="announces 5 bytes"):
        records[0].message()
    assert records[1].kind == "event" and records[1].message().event.ts == 3
