"""A plain HTTP GET of the endpoint is told what it reached; errors of a block come out whole.

Real sockets on loopback, every wait bounded.
"""

from __future__ import annotations

import pytest
import trio
from stub_source import StubSource

from libp2p_introspection.client import connect
from libp2p_introspection.server import ServerConfig
from libp2p_introspection.server.background import background
from libp2p_introspection.server.handshake import PlainRequest
from libp2p_introspection.server.server import open_introspection_server
from libp2p_introspection.server.wire import ServerWire

LIMIT = 20


async def http_get(port: int, path: str, version: str = "1.1") -> tuple[int, bytes, str]:
    """Status, head and body of ``GET path`` (read until the server closes)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request = f"GET {path} HTTP/{version}\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n"
    await stream.send_all(request.encode())
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
        assert len(data) < 65536
    await stream.aclose()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.lower(), body.decode()


async def test_a_plain_get_says_what_the_endpoint_is_and_where_a_dashboard_is():
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            status, head, body = await http_get(server.port, "/introspect")
            assert status == 426
            assert b"content-type: text/plain" in head and b"nosniff" in head
            assert f"libp2p introspection endpoint, {server.url}" in body
            assert "a WebSocket for protocol clients" in body and "not a web page" in body
            # No dashboard in this program: how to start one, and where it will be.
            assert f"`libp2p-introspect dashboard {server.url}`" in body
            assert "http://127.0.0.1:8846/ by default" in body
            assert len(body) < 500

            server.dashboard_url = "http://127.0.0.1:9/"  # a program that runs one (demo)
            status, _, body = await http_get(server.port, "/introspect?x=1", version="1.0")
            assert status == 426 and "Open its dashboard at http://127.0.0.1:9/." in body
            assert "libp2p-introspect dashboard" not in body

            status, _, body = await http_get(server.port, "/")  # a browser at the bare port
            assert status == 404 and body.startswith("Nothing is served at /.\n")
            assert f"libp2p introspection endpoint, {server.url}" in body

            async with connect(server.url) as client:  # and it goes on serving
                assert (await client.receive_kind("runtime")).message.runtime.peer_id
            assert server.connection_faults == 0 and server.refused == 0


def test_the_wire_reports_a_plain_get_and_never_upgrades_it():
    wire = ServerWire(max_message_size=1024)
    events = wire.receive_data(b"GET /introspect?a=b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert events == [PlainRequest("/introspect?a=b")]
    with pytest.raises(RuntimeError):
        wire.accept()
    wire.reject(426, "text")
    answer = bytes(wire.data_to_send())
    assert answer.startswith(b"HTTP/1.1 426 ") and answer.endswith(b"\r\n\r\ntext")
    # With a body it is no plain GET to answer kindly: a 400, as before.
    with pytest.raises(Exception, match="no body"):
        ServerWire(max_message_size=1024).receive_data(
            b"GET /introspect HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        )


async def test_what_the_block_raises_comes_out_as_itself():
    with trio.fail_after(LIMIT), pytest.raises(ValueError, match=r"^mine$"):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)):
            raise ValueError("mine")


async def test_ctrl_c_in_the_block_is_one_keyboard_interrupt():
    caught: BaseException | None = None
    with trio.fail_after(LIMIT):
        try:
            async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
                port = server.port
                raise KeyboardInterrupt
        except BaseException as exc:  # a group here is what the user would see
            caught = exc
        with pytest.raises(OSError):  # and the server has stopped
            await trio.open_tcp_stream("127.0.0.1", port)
    assert type(caught) is KeyboardInterrupt


async def test_a_cancelled_block_is_cancelled_and_the_server_stops():
    with trio.fail_after(LIMIT):
        with trio.CancelScope() as scope:
            async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
                port = server.port
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_a_task_that_fails_while_stopping_is_raised_with_the_blocks_error():
    async def task(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started("up")
        try:
            await trio.sleep_forever()
        finally:
            raise RuntimeError("cleanup failed")

    with trio.fail_after(LIMIT), pytest.raises(BaseExceptionGroup) as info:
        async with background(task) as started:
            assert started == "up"
            raise ValueError("the block's")
    leaves = {type(e) for e in info.value.exceptions}
    assert leaves == {ValueError, RuntimeError}
