"""Fuzz target (atheris) for everything that decodes untrusted bytes.

Run: ``python fuzz/fuzz_decoders.py -runs=100000`` (libFuzzer flags). Inputs go
through the live frame decoder, the wire walker, the recording reader, a
recording into the dashboard (reader, walker, convert, store), the session's
command path and the server's WebSocket wire (the upgrade request, then frames,
fed in pieces the input chooses); anything but the documented errors is a
crash, and so is a walk that calls malformed what protobuf parses, or counts
fewer connections or streams than protobuf built.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import atheris

with atheris.instrument_imports(include=["libp2p_introspection"]):
    from google.protobuf.message import DecodeError

    from libp2p_introspection.dashboard.recording import RecordingLoadError, load_recording
    from libp2p_introspection.protocol import pb
    from libp2p_introspection.protocol.framing import FrameError, decode_frame, payload_kind
    from libp2p_introspection.protocol.recording import (
        RecordingError,
        RecordingReader,
        RecordingWriter,
    )
    from libp2p_introspection.protocol.session import Session, SessionLimits, Snapshot
    from libp2p_introspection.protocol.wire import RecordLimits, measure, measure_python
    from libp2p_introspection.server.handshake import (
        HandshakeRefused,
        PlainRequest,
        UpgradeRequested,
    )
    from libp2p_introspection.server.wire import ServerWire, WireState
    from libp2p_introspection.server.wire_events import (
        ClosedByPeer,
        MessageReceived,
        PongReceived,
        ProtocolViolation,
    )

_LIMITS = SessionLimits(commands_per_second=1e9, command_burst=10**9)
# Small, so that inputs of a few KB reach the limits too.
_RECORD_LIMITS = RecordLimits(max_connections=40, max_streams=200, max_entries=200)


def _check_walk(data: bytes) -> None:
    """The walker against protobuf's parser, on the same bytes."""
    counts = measure(data, _RECORD_LIMITS)
    if counts != measure_python(data, _RECORD_LIMITS):  # the C walk against the reference
        raise AssertionError(f"C walk {counts} but Python {measure_python(data, _RECORD_LIMITS)}")
    try:
        message = pb.ServerMessage.FromString(data)
    except (DecodeError, RecursionError):
        return
    if counts.malformed:
        raise AssertionError(f"protobuf parses what the walk calls malformed: {counts}")
    if counts.over_limit:
        return  # the walk stopped: its counts are lower bounds
    connections = message.state.subsystems.connections
    if len(connections) > counts.connections:
        raise AssertionError(f"{len(connections)} connections built, {counts} counted")
    if sum(len(c.streams.streams) for c in connections) > counts.streams:
        raise AssertionError(f"more streams built than {counts} counted")
    kind = message.WhichOneof("payload") or ""
    if counts.kind != kind:
        raise AssertionError(f"kind {counts.kind!r} but protobuf says {kind!r}")


def _recording_of(data: bytes) -> bytes:
    """A well-formed recording whose records are pieces of ``data``: each piece is
    prefixed by one length byte, so the fuzzer controls how the input is split."""
    out = io.BytesIO()
    writer = RecordingWriter(out, flush=False)
    pos = 0
    while pos < len(data):
        size = data[pos]
        writer.write(data[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return out.getvalue()


_UPGRADE = (
    b"GET /introspect HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
_WIRE_EVENTS = (
    UpgradeRequested,
    PlainRequest,
    MessageReceived,
    PongReceived,
    ClosedByPeer,
    ProtocolViolation,
)
_MAX_MESSAGE = 1024


def _wire(data: bytes) -> None:
    """The server's WebSocket wire: the first byte picks a valid upgrade prefix or not
    and the piece size; the rest is fed in those pieces, then EOF."""
    if not data:
        return
    choice, data = data[0], data[1:]
    if choice & 1:
        data = _UPGRADE + data
    piece = 1 + (choice >> 1) * 8
    wire = ServerWire(max_message_size=_MAX_MESSAGE)
    queued = 0
    for start in range(0, len(data) + 1, piece):
        chunk = data[start : start + piece]  # the last one is b"": EOF
        try:
            events = wire.receive_data(chunk)
        except HandshakeRefused as refused:
            assert wire.state is WireState.HANDSHAKE and 400 <= refused.status < 600
            wire.reject(refused.status, refused.reason)
            return
        for event in events:
            assert isinstance(event, _WIRE_EVENTS), event
            if isinstance(event, PlainRequest):  # answered as the server does, then closed
                assert wire.state is WireState.HANDSHAKE
                wire.reject(426, "this is an introspection endpoint")
                assert wire.state is WireState.DONE
            elif isinstance(event, UpgradeRequested):
                wire.accept()
                events.extend(wire.pending_events())
            elif isinstance(event, MessageReceived):
                body = event.data
                assert len(body if isinstance(body, bytes) else body.encode()) <= _MAX_MESSAGE
                wire.send_binary(b"answer")
            elif isinstance(event, ProtocolViolation):
                assert event.code in (1002, 1007, 1009), event
                wire.close(event.code, event.reason)
        while wire.has_data_to_send:  # what is queued can always be written out
            view = wire.data_to_send()
            queued += len(view)
            wire.sent(len(view))
        if wire.state is WireState.DONE:
            return
    assert queued == wire.bytes_sent + wire.pong_bytes_sent  # pongs are not marks


def test_one_input(data: bytes) -> None:
    # Live frames (client side of §2).
    try:
        message = pb.ServerMessage()
        message.ParseFromString(decode_frame(data, max_size=1 << 20))
    except (FrameError, DecodeError):
        pass
    payload_kind(data)
    # The wire walker, on the raw bytes as a ServerMessage.
    _check_walk(data)
    # Recording files, as they come.
    try:
        for record in RecordingReader(io.BytesIO(data), max_record_size=1 << 20):
            with contextlib.suppress(DecodeError):
                record.message()
    except RecordingError:
        pass
    # A recording into the dashboard: reader, walker, convert, store.
    with contextlib.suppress(RecordingLoadError):
        store, info = load_recording(io.BytesIO(_recording_of(data)), name="fuzz.mock",
                                     limits=_RECORD_LIMITS)  # fmt: skip
        # What the page is sent must be JSON whatever the record held.
        json.loads(store.latest.text)  # type: ignore[union-attr] - a snapshot was loaded
        json.dumps(info.to_json())
    # Commands into a session (server side of §4.8): never raises.
    session = Session(_LIMITS, b"runtime", frozenset(), Snapshot(1, b"state"), 0.0)
    session.receive_command(data, 0.0)
    while session.next_frame() is not None:
        session.frame_sent(0.0)
    # The server's WebSocket wire (handshake and frames): never raises but HandshakeRefused.
    _wire(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
