"""What the CLI prints of a hostile file or server: never a terminal escape, never a
traceback (adversarial review of issue 9, findings F6 and F8)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from libp2p_introspection.config import RedactTokens, printable
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingWriter

CLI = [sys.executable, "-m", "libp2p_introspection"]

#: Set the window title, clear the screen, write the clipboard (OSC 52), return to
#: the start of the line, and reverse the text that follows.
ESCAPES = "\x1b]0;PWNED\x07\x1b[2J\x1b[H\x1b]52;c;cHduZWQ=\x07\r\u202e\x9b"
#: What may never reach a terminal from data: ESC, BEL, CR, the CSI and RLO characters.
FORBIDDEN = ("\x1b", "\x07", "\r", "\u202e", "\x9b")


def _hostile_recording(path) -> None:
    runtime = pb.ServerMessage()
    runtime.runtime.implementation = "impl" + ESCAPES
    runtime.runtime.peer_id = "12D3KooW" + ESCAPES
    runtime.runtime.platform = ESCAPES
    runtime.runtime.event_types.add(name="Declared" + ESCAPES)
    state = pb.ServerMessage()
    state.state.instant_ts = 1_700_000_000_000
    event = pb.ServerMessage()
    event.event.type.name = "Type" + ESCAPES
    event.event.ts = 1_700_000_000_001
    event.event.content = '{"k": "v"}'
    with open(path, "wb") as file:
        writer = RecordingWriter(file)
        for message in (runtime, state, event):
            writer.write(message.SerializeToString())


def test_printable_shows_controls_as_escapes_and_keeps_newlines_and_tabs():
    assert printable("a\x1b[2Jb\rc\nd\te\u202ef\x85g\x7f") == (
        "a\\x1b[2Jb\\rc\nd\te\\u202ef\\x85g\\x7f"
    )
    assert printable("12D3KooWplain /ip4/127.0.0.1/tcp/1 é ✓") == (
        "12D3KooWplain /ip4/127.0.0.1/tcp/1 é ✓"
    )


def test_printable_escapes_the_backslash_so_text_cannot_pass_for_an_escape():
    # The literal text \x1b[2J must not print like a sanitised ESC, nor ESC \ ESC be
    # ambiguous.
    assert printable("\\x1b[2J") == "\\\\x1b[2J"
    assert printable("\x1b\\\x1b[2J") == "\\x1b\\\\\\x1b[2J"
    assert printable("\x1b") != printable("\\x1b")


def test_inspect_prints_a_hostile_files_strings_as_escapes(tmp_path):
    path = tmp_path / "escapes.mock"
    _hostile_recording(path)
    result = subprocess.run([*CLI, "inspect", str(path)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for char in FORBIDDEN:
        assert char not in result.stdout and char not in result.stderr
    # The strings are still there, as text a person can read.
    assert "impl\\x1b]0;PWNED\\x07" in result.stdout
    assert "Type\\x1b]0;PWNED" in result.stdout


def test_log_lines_show_a_peers_strings_as_escapes():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "close reason %s", (ESCAPES,), None)
    assert RedactTokens().filter(record)
    for char in FORBIDDEN:
        assert char not in record.getMessage()


@contextmanager
def _raw_server(answer: bytes) -> Iterator[str]:
    """A TCP server that answers every request with ``answer`` and closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(answer)
                    conn.recv(65536)  # until the client gives up
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}/introspect"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


_ANSWERS = {
    "wrong accept key": (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: AAAA\r\n\r\n"
    ),
    "malformed chunked 401": (
        b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n"
    ),
    "extension never offered": (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: AAAA\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    ),
    "garbage": b"\x00\xffnot http at all\r\n\r\n",
    "401 with escapes in its body": (
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 23\r\n\r\n\x1b]0;PWNED\x07\x1b[2Jgo away\r\n"
    ),
}


@pytest.mark.parametrize("command", ["watch", "record"])
@pytest.mark.parametrize("answer", sorted(_ANSWERS))
def test_a_malformed_handshake_answer_is_a_one_line_error(tmp_path, command, answer):
    with _raw_server(_ANSWERS[answer]) as url:
        args = [url, "-o", str(tmp_path / "out.mock")] if command == "record" else [url]
        result = subprocess.run([*CLI, command, *args], capture_output=True, text=True,
                                timeout=60)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception Group" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: cannot "), result.stderr
    for char in FORBIDDEN:
        assert char not in result.stderr


def test_watch_prints_a_hostile_servers_event_as_escapes(capsys):
    from libp2p_introspection.client.watch import printer

    emit = printer(as_json=False)
    emit({"kind": "event", "ts": 1, "type": "Type" + ESCAPES, "content": ESCAPES})
    out = capsys.readouterr().out
    assert out.startswith("event  1  Type\\x1b]0;PWNED")
    for char in FORBIDDEN:
        assert char not in out
