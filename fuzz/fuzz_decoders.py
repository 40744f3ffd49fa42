"""Fuzz target (atheris) for everything that decodes untrusted bytes.

Run: ``python fuzz/fuzz_decoders.py -runs=100000`` (libFuzzer flags). Inputs go
through the live frame decoder, the recording reader and the session's
command path; anything but the documented errors is a crash.
"""

from __future__ import annotations

import contextlib
import io
import sys

import atheris

with atheris.instrument_imports():
    from google.protobuf.message import DecodeError

    from libp2p_introspection.protocol import pb
    from libp2p_introspection.protocol.framing import FrameError, decode_frame, payload_kind
    from libp2p_introspection.protocol.recording import RecordingError, RecordingReader
    from libp2p_introspection.protocol.session import Session, SessionLimits, Snapshot

_LIMITS = SessionLimits(commands_per_second=1e9, command_burst=10**9)


def test_one_input(data: bytes) -> None:
    # Live frames (client side of §2).
    try:
        message = pb.ServerMessage()
        message.ParseFromString(decode_frame(data, max_size=1 << 20))
    except (FrameError, DecodeError):
        pass
    payload_kind(data)
    # Recording files.
    try:
        for record in RecordingReader(io.BytesIO(data), max_record_size=1 << 20):
            with contextlib.suppress(DecodeError):
                record.message()
    except RecordingError:
        pass
    # Commands into a session (server side of §4.8): never raises.
    session = Session(_LIMITS, b"runtime", frozenset(), Snapshot(1, b"state"), 0.0)
    session.receive_command(data, 0.0)
    while session.next_frame() is not None:
        session.frame_sent(0.0)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
