"""A peer gone mid-burst never kills a host process whose SIGPIPE is at its default.

CPython ignores SIGPIPE at start-up, but an application that embeds the server
may not (``signal(SIGPIPE, SIG_DFL)`` is common in command-line tools, and an
embedding C program keeps the default): then a write(2) or send(2) to a
connection the peer has reset kills the whole process, node included. Linux
raises it when a reset arrives on a connection whose peer had already sent its
FIN (CLOSE_WAIT): the next write fails with EPIPE, and the signal comes with it
unless the write says MSG_NOSIGNAL. A hostile client gets there on purpose: it
fills the socket, sends a ping (the server reads nothing more while the pong is
owed, so it does not see the FIN), half-closes, then resets.

The scenario runs in a child process (the signal would kill pytest); the child
waits for each step on the server's own state, never on time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

CHILD = r"""
import signal, socket, struct, sys
sys.path.insert(0, sys.argv[1])
import trio
import raw_ws
from stub_source import StubSource
from libp2p_introspection.server import ServerConfig, open_introspection_server

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as an embedding application may have it
CLOSE_WAIT = 8  # tcpi_state, linux/tcp_states.h
ROUNDS = 3


def tcp_state(sock) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


async def until(predicate) -> None:
    for _ in range(2000):  # bounded: 20 s at most
        if predicate():
            return
        await trio.sleep(0.01)
    raise AssertionError("the server never got there")


async def one_round(server, source, close) -> None:
    stream = await raw_ws.open_raw(server.port, receive_buffer=4096)
    await raw_ws.handshake(stream)
    await stream.send_all(raw_ws.command(2, 2))  # PUSH_ENABLE EVENTS
    await until(lambda: server.hub.sessions)
    (handle,) = server.hub.sessions
    (transport,) = [t for t in server.connections if t.wire.bytes_sent]
    await until(lambda: handle.session.stats.commands == 1)
    for n in range(3000):  # ~3 MB, never read: the socket fills
        source.emit(n, padding=1000)
    await until(lambda: transport.write_pending)
    await stream.send_all(raw_ws.frame(0x9, b"owed"))  # the reader stops: a pong is owed
    await until(lambda: transport.wire.pings_received == 1)
    stream.socket.shutdown(socket.SHUT_WR)
    await until(lambda: tcp_state(transport._socket) == CLOSE_WAIT)
    if close == "reset":
        raw_ws.reset(stream)
    else:
        stream.socket.close()  # unread data: the kernel resets too
    await until(lambda: not server.hub.sessions)
    print("round", close, server.closed_sessions[-1].ended, flush=True)


async def write_now_after_reset() -> None:
    # The writer's synchronous path (WebSocketTransport.write_now): a frame queued after
    # the peer's FIN and reset is sent by write_now itself, with room in the socket.
    from libp2p_introspection.server.websocket import WebSocketTransport

    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = await raw_ws.open_raw(listener.getsockname()[1])
    accepted, _ = await listener.accept()
    transport = WebSocketTransport(trio.SocketStream(accepted), peer="test", max_message_size=1024)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(raw_ws.handshake, client)
        await transport.read_upgrade()
        assert await transport.accept()
    client.socket.shutdown(socket.SHUT_WR)
    await until(lambda: tcp_state(accepted) == CLOSE_WAIT)
    raw_ws.reset(client)
    await until(lambda: tcp_state(accepted) == 7)  # TCP_CLOSE: the reset arrived
    mark = transport.queue_binary(b"x" * 100)
    assert mark is not None
    assert not transport.write_now(mark)
    assert transport.lost, "EPIPE is a lost connection"
    print("round write_now", transport.ended, flush=True)
    transport.abort()
    listener.close()


async def metrics_after_reset() -> None:
    # The metrics endpoint's answer (MetricsEndpoint._send) to a scraper that sent its
    # FIN and then reset: the write is a lost connection (OSError, which the endpoint's
    # connection handler logs), not a signal.
    from prometheus_client import CollectorRegistry
    from libp2p_introspection.server.metrics.endpoint import MetricsEndpoint

    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = await raw_ws.open_raw(listener.getsockname()[1])
    accepted, _ = await listener.accept()
    client.socket.shutdown(socket.SHUT_WR)
    await until(lambda: tcp_state(accepted) == CLOSE_WAIT)
    raw_ws.reset(client)
    await until(lambda: tcp_state(accepted) == 7)  # TCP_CLOSE: the reset arrived
    endpoint = MetricsEndpoint(CollectorRegistry(), host="127.0.0.1", ports=[0])
    try:
        await endpoint._send(trio.SocketStream(accepted), 200, "x" * 100)
    except OSError as exc:
        print("round metrics", exc.errno, flush=True)
    listener.close()


async def main() -> None:
    if sys.argv[2] == "metrics":
        await metrics_after_reset()
        print("alive", flush=True)
        return
    if sys.argv[2] == "write_now":
        await write_now_after_reset()
        print("alive", flush=True)
        return
    source = StubSource()
    config = ServerConfig(port=0, interval_ms=60_000)
    async with open_introspection_server(source, config) as server:
        for close in ["reset", "close"] * ROUNDS:
            await one_round(server, source, close)
        print("alive", flush=True)


trio.run(main)
"""


def _run_child(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(HERE), mode],
        capture_output=True,
        text=True,
        timeout=120,  # a safety net: the child bounds its own waits
    )


def test_a_peer_reset_after_its_fin_does_not_kill_a_process_with_default_sigpipe():
    done = _run_child("session")
    # -13: killed by SIGPIPE (the node with it).
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stdout.splitlines()[-1] == "alive"


def test_write_now_to_a_peer_reset_after_its_fin_is_a_lost_connection_not_a_signal():
    done = _run_child("write_now")
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stdout.splitlines()[-1] == "alive"
    assert "connection lost (EPIPE)" in done.stdout


def test_a_scraper_reset_after_its_fin_does_not_kill_a_process_with_default_sigpipe():
    done = _run_child("metrics")
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stdout.splitlines()[-1] == "alive"
    assert "round metrics" in done.stdout  # the write failed, as a lost connection
