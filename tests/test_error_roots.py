"""One error root per layer: protocol (DataError), client (ClientError), server
(ServerError); a fault of one kind is not dressed as another (a recording without
a Runtime is a source that cannot be served, not a framing fault)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from libp2p_introspection.client.connection import ProtocolError
from libp2p_introspection.client.errors import ClientError
from libp2p_introspection.protocol import framing, pb, protowire, recording
from libp2p_introspection.protocol.errors import DataError
from libp2p_introspection.protocol.recording import RecordingWriter
from libp2p_introspection.server.errors import ServerError, SourceError
from libp2p_introspection.server.sources.replay import ReplaySource
from libp2p_introspection.server.sources.replay_scan import ReplayError


def _errors(module: object) -> list[type[BaseException]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Exception)
        and value.__module__ == module.__name__  # type: ignore[attr-defined]
    ]


def test_every_protocol_error_has_the_protocol_root() -> None:
    for module in (framing, protowire, recording):
        kinds = _errors(module)
        assert kinds, module
        assert all(issubclass(kind, DataError) and issubclass(kind, ValueError) for kind in kinds)


def test_recording_faults_are_not_frame_faults() -> None:
    """A recording file is framed by its own format: its errors are RecordingErrors,
    never FrameErrors (a client catching FrameError for a live frame sees none)."""
    for kind in _errors(recording):
        assert issubclass(kind, recording.RecordingError)
        assert not issubclass(kind, framing.FrameError)
    assert not issubclass(protowire.WireError, framing.FrameError)


def test_a_recording_without_content_is_a_source_error(tmp_path) -> None:
    """No Runtime / no State: the server's source error, not a protocol data error."""
    assert issubclass(ReplayError, SourceError) and issubclass(SourceError, ServerError)
    assert not issubclass(ReplayError, DataError | ValueError)
    path = tmp_path / "no-runtime.rec"
    with RecordingWriter(path) as writer:
        message = pb.ServerMessage()
        message.state.instant_ts = 1_700_000_000_000
        writer.write_message(message)
    with pytest.raises(ReplayError, match="holds no Runtime") as caught:
        ReplaySource(path)
    assert not isinstance(caught.value, framing.FrameError | recording.RecordingError)


def test_client_errors_have_the_client_root() -> None:
    assert issubclass(ProtocolError, ClientError)
    assert not issubclass(ProtocolError, DataError)


@pytest.mark.parametrize(
    ("payload", "said"),
    [("state", "holds no Runtime"), ("runtime", "holds no State")],
)
def test_serve_refuses_a_recording_without_content_as_before(tmp_path, payload, said) -> None:
    """What the CLI user sees is unchanged: exit status 1, 'cannot replay FILE: ...'."""
    path = tmp_path / "thin.rec"
    with RecordingWriter(path) as writer:
        message = pb.ServerMessage()
        if payload == "state":
            message.state.instant_ts = 1_700_000_000_000
        else:
            message.runtime.implementation = "rec"
        writer.write_message(message)
    result = subprocess.run(
        [sys.executable, "-m", "libp2p_introspection", "serve", "--source", str(path),
         "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"Error: cannot replay {path}: {path}: the recording {said}" in result.stderr
