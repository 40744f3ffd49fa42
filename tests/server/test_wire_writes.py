"""What the wire hands the socket for a message: one write for a small frame.

An event fanned out to many clients is one small frame per client; each write
to the socket is a system call and a wake-up of the client, so a small frame
goes out as one buffer (header and payload together), while a large one (a
snapshot) is queued behind its header without being copied.
"""

from __future__ import annotations

from raw_ws import parse_frames, request

from libp2p_introspection.server.wire import COALESCE_BELOW, ServerWire


def _open() -> ServerWire:
    wire = ServerWire(max_message_size=1024)
    assert wire.receive_data(request())
    wire.accept()
    wire.sent(len(wire.data_to_send()))  # the 101
    return wire


def _write_all(wire: ServerWire) -> list[bytes]:
    """Every buffer the socket is handed, each taken whole."""
    writes = []
    while wire.has_data_to_send:
        view = wire.data_to_send()
        writes.append(bytes(view))
        wire.sent(len(view))
    return writes


def test_a_small_frame_is_one_write_and_every_session_gets_the_same_bytes():
    payload = b"e" * 242  # an event frame's size
    wires = [_open() for _ in range(3)]
    for wire in wires:
        assert wire.send_binary(payload)
    writes = [_write_all(wire) for wire in wires]
    assert all(len(w) == 1 for w in writes)  # header and payload in one buffer
    (frame,), rest = parse_frames(writes[0][0])
    assert frame.opcode == 0x2 and frame.payload == payload and rest == b""
    assert writes[0] == writes[1] == writes[2]


def test_frames_just_under_and_over_the_threshold():
    for size in (0, 1, 125, 126, 4_096, COALESCE_BELOW - 1):
        wire = _open()
        wire.send_binary(b"s" * size)
        (write,) = _write_all(wire)
        (frame,), rest = parse_frames(write)
        assert frame.payload == b"s" * size and rest == b""
    big = b"b" * COALESCE_BELOW
    wire = _open()
    wire.send_binary(big)
    header, body = _write_all(wire)
    assert body == big  # the payload itself, not a copy with the header
    (frame,), _ = parse_frames(header + body)
    assert frame.payload == big


def test_a_frame_cut_short_by_the_socket_is_finished_before_the_next():
    wire = _open()
    wire.send_binary(b"first" * 10)
    wire.send_binary(b"second")
    out = bytearray()
    while wire.has_data_to_send:
        view = wire.data_to_send()[:7]  # the socket takes 7 bytes at a time
        out.extend(view)
        wire.sent(len(view))
    frames, rest = parse_frames(bytes(out))
    assert [f.payload for f in frames] == [b"first" * 10, b"second"] and rest == b""
