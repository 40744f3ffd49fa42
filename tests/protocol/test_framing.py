"""Live framing (§2): FNV-1a 32 and the three-field header, with distinct errors."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import (
    ChecksumError,
    FrameError,
    FrameTooLargeError,
    FrameVersionError,
    ShortFrameError,
    TrailingBytesError,
    assemble_state,
    decode_frame,
    encode_frame,
    encode_server_message,
    encode_state_frame,
    encode_varint,
    fnv1a32,
    fnv1a32_reference,
    parse_server_message,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968), (b"hello", 0x4F9F2CAB)],
)
def test_fnv1a32_known_vectors(data, expected):
    assert fnv1a32(data) == expected
    assert fnv1a32_reference(data) == expected


@given(st.binary(max_size=2048))
def test_fast_fnv_matches_reference(data):
    assert fnv1a32(data) == fnv1a32_reference(data)


def test_frame_layout():
    frame = encode_frame(b"\x0a\x02\x08\x01")
    version, checksum, length = struct.unpack_from("<III", frame)
    assert (version, checksum, length) == (1, fnv1a32(b"\x0a\x02\x08\x01"), 4)
    assert frame[12:] == b"\x0a\x02\x08\x01"


@given(st.binary(max_size=4096))
def test_roundtrip(message):
    assert decode_frame(encode_frame(message)) == message


def test_server_message_always_carries_version_1():
    message = pb.ServerMessage()
    message.notice.kind = pb.ServerNotice.DISCARDING_EVENTS
    decoded = parse_server_message(encode_server_message(message))
    assert decoded.HasField("version") and decoded.version.version == 1


def test_short_frame():
    with pytest.raises(ShortFrameError, match="shorter than the 12-byte header"):
        decode_frame(b"\x01\x00\x00\x00")
    frame = encode_frame(b"abcdef")
    with pytest.raises(ShortFrameError, match="announces 6"):
        decode_frame(frame[:-1])


def test_corrupt_frame():
    frame = bytearray(encode_frame(b"abcdef"))
    frame[-1] ^= 0xFF
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        decode_frame(bytes(frame))


def test_wrong_version():
    frame = bytearray(encode_frame(b"abc"))
    frame[0] = 2
    with pytest.raises(FrameVersionError, match="version 2"):
        decode_frame(bytes(frame))


def test_length_above_limit_is_refused_without_allocating():
    header = struct.pack("<III", 1, 0, 0xFFFFFFFF)
    with pytest.raises(FrameTooLargeError):
        decode_frame(header)
    with pytest.raises(FrameTooLargeError):
        decode_frame(encode_frame(b"x" * 100), max_size=99)


def test_trailing_bytes():
    with pytest.raises(TrailingBytesError):
        decode_frame(encode_frame(b"abc") + b"!")


def test_errors_are_distinct_and_share_a_base():
    kinds = {ShortFrameError, ChecksumError, FrameVersionError, FrameTooLargeError}
    assert len(kinds) == 4
    assert all(issubclass(k, FrameError) and issubclass(k, ValueError) for k in kinds)


@given(st.binary(max_size=64))
def test_random_bytes_give_only_frame_errors(data):
    with contextlib.suppress(FrameError):
        decode_frame(data)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_matches_protobuf(value):
    encoded = pb.Configuration(retention_period_ms=value).SerializeToString()
    assert encode_varint(value) == (encoded[1:] if value else b"\x00")


@pytest.mark.parametrize("connections", [0, 1, 3, 400])
def test_state_frame_is_byte_identical_to_the_server_message_frame(connections):
    # Sizes either side of each varint length boundary (1, 2 and 3 length bytes).
    state = pb.State(instant_ts=1_700_000_001_000, start_ts=1_700_000_000_000)
    state.subsystems.SetInParent()
    for i in range(connections):
        conn = state.subsystems.connections.add(id=i.to_bytes(8, "big"), peer_id=f"peer-{i}")
        conn.streams.SetInParent()
    message = pb.ServerMessage()
    message.state.CopyFrom(state)
    assert encode_state_frame(state.SerializeToString()) == encode_server_message(message)
    assert encode_state_frame(b"") == encode_server_message(pb.ServerMessage(state=pb.State()))


@pytest.mark.parametrize("with_dht", [False, True])
@pytest.mark.parametrize("connections", [0, 1, 150])
def test_assembled_state_is_byte_identical_to_the_whole_message(connections, with_dht):
    state = pb.State(instant_ts=1_700_000_001_000, start_ts=1_700_000_000_000)
    state.snapshot_duration_ms = 1_000
    state.subsystems.SetInParent()
    state.traffic.traffic_in.cum_bytes = 12345
    state.traffic.traffic_out.SetInParent()
    for i in range(connections):
        conn = state.subsystems.connections.add(id=i.to_bytes(8, "big"), peer_id="p" * (i % 200))
        conn.streams.stream_ids.append(b"s")
        conn.streams.streams.add(id=b"s", protocol="/x/1.0.0")
    if with_dht:
        state.subsystems.dht.protocol = "/ipfs/kad/1.0.0"
        state.subsystems.dht.buckets.add(cpl=1).peers.add(peer_id="q")
    head = pb.State()
    head.CopyFrom(state)
    head.ClearField("subsystems")
    rest = pb.Subsystems()
    rest.CopyFrom(state.subsystems)
    del rest.connections[:]
    assembled = assemble_state(
        head.SerializeToString(),
        [c.SerializeToString() for c in state.subsystems.connections],
        rest.SerializeToString(),
    )
    assert assembled == state.SerializeToString()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (encode_server_message(pb.ServerMessage(state=pb.State(instant_ts=1)))[12:], "state"),
        (pb.ServerMessage(runtime=pb.Runtime(implementation="x")).SerializeToString(), "runtime"),
        (pb.ServerMessage(notice=pb.ServerNotice()).SerializeToString(), "notice"),
        (b"\x0a\x02\x08\x01\x22\x00", "event"),  # after the version, an empty event
        (b"\x08\x01", ""),  # a varint first: not a ServerMessage payload
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", ""),  # a length that never ends
        (b"", ""),
    ],
)
def test_payload_kind_reads_only_the_leading_tags(data, kind):
    from libp2p_introspection.protocol.framing import payload_kind

    assert payload_kind(data) == kind
    assert payload_kind(memoryview(data)) == kind


def _payload_kind_by_fields(data: bytes) -> str:
    """payload_kind as its docstring defines it, field by field (the reference)."""
    from libp2p_introspection.protocol.protowire import PAYLOAD_KINDS, WireError, iter_fields

    try:
        for number, wire_type, _, _, _ in iter_fields(data):
            if wire_type != 2:
                return ""
            if number != 1:
                return PAYLOAD_KINDS.get(number, "")
    except WireError:
        return ""
    return ""


@given(
    st.one_of(
        st.binary(max_size=40),
        # What encode_server_message writes, and damage close to it.
        st.tuples(
            st.binary(max_size=4),
            st.integers(0, 255),
            st.integers(0, 300),
            st.binary(max_size=300),
        ).map(lambda t: b"\x0a\x02\x08\x01" + t[0] + bytes([t[1]]) + encode_varint(t[2]) + t[3]),
    )
)
def test_payload_kind_is_the_leading_fields_reading_on_any_bytes(data):
    from libp2p_introspection.protocol.framing import payload_kind

    assert payload_kind(data) == _payload_kind_by_fields(data)
