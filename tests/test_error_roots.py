"""One error root per layer: protocol (DataError), client (ClientError), server
(ServerError), dashboard (DashboardError), demo (DemoError); a fault of one kind is not dressed as another (a recording without
a Runtime is a source that cannot be served, not a framing fault)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import libp2p_introspection
from libp2p_introspection.client.connection import ProtocolError
from libp2p_introspection.client.errors import ClientError
from libp2p_introspection.dashboard.errors import DashboardError
from libp2p_introspection.demo.errors import DemoError
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


#: Each layer (the package's first-level module) and the root its errors derive from.
ROOTS: dict[str, type[Exception]] = {
    "protocol": DataError,
    "client": ClientError,
    "server": ServerError,
    "dashboard": DashboardError,
    "demo": DemoError,
}
#: Errors that are a caller's bad argument, not bad data: plain ``ValueError`` by the
#: rule of protocol/errors.py ("Bad arguments ... are plain ValueError/TypeError").
CALLERS_ARGUMENTS = {
    "libp2p_introspection.protocol.limits.OptionError",  # an option value refused
    "libp2p_introspection.protocol.application.ApplicationDataError",  # an API argument
}


def _every_error_class() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    prefix = libp2p_introspection.__name__ + "."
    for info in pkgutil.walk_packages(libp2p_introspection.__path__, prefix):
        if info.name.endswith(("__main__", "_pb2")):
            continue
        found += _errors(importlib.import_module(info.name))
    return found


def test_every_exception_class_of_the_package_has_its_layers_root() -> None:
    """Walk every module: an exception class defined in layer L derives from L's root
    (a layer without a root gets one with its first error)."""
    errors = _every_error_class()
    assert len(errors) > 30
    strays = []
    for kind in errors:
        name = f"{kind.__module__}.{kind.__qualname__}"
        layer = kind.__module__.split(".")[1]
        if name in CALLERS_ARGUMENTS:
            assert issubclass(kind, ValueError) and not issubclass(kind, DataError), name
            continue
        root = ROOTS.get(layer)
        if root is None or not issubclass(kind, root):
            strays.append(f"{name} ({root.__name__ if root else 'no root'})")
    assert strays == []
