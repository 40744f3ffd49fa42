"""The §4 rules end to end over a real WebSocket on loopback, against a stub source.

Assertions are on what arrives, never on how long it took; every wait is
bounded by trio.fail_after.
"""

from __future__ import annotations

import json
import socket

import pytest
import trio
from stub_source import StubSource
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol import pb
from libp2p_introspection.server import ServerConfig, open_introspection_server

ERR = pb.CommandResponse.ERR
OK = pb.CommandResponse.OK
LIMIT = 30  # seconds: a safety net, not an assertion


def config(**kw) -> ServerConfig:
    return ServerConfig(port=kw.pop("port", 0), interval_ms=kw.pop("interval_ms", 20), **kw)


def state_number(received) -> int:
    return int(received.message.state.subsystems.connections[0].peer_id.split("-")[1])


async def test_connect_then_pull_loop():
    source = StubSource()
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config()) as server:
            assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/introspect")
            async with connect(server.url) as client:
                first = await client.receive()
                second = await client.receive()
                assert (first.kind, second.kind) == ("runtime", "state")
                assert first.message.version.version == 1
                assert first.message.runtime.peer_id == "QmStub"
                seen = [state_number(second)]
                for _ in range(10):
                    await client.ready()
                    received = await client.receive()
                    assert received.kind == "state"  # never an OK response to a pull
                    seen.append(state_number(received))
                assert seen == sorted(set(seen))  # each at most once, rising
                instants = []
                for _ in range(3):
                    await client.ready()
                    instants.append((await client.receive()).message.state.instant_ts)
                assert instants == sorted(instants)


async def test_nothing_is_sent_unasked():
    source = StubSource()
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config()) as server:
            async with connect(server.url) as client:
                await client.receive()
                await client.receive()
                # Wait until the server produced several more snapshots.
                start = source.states
                while source.states < start + 5:
                    await trio.sleep(0.01)
                with trio.move_on_after(0.2):
                    received = await client.receive()
                    pytest.fail(f"unasked message: {received.kind}")
                await client.send(Command.REQUEST, Source.RUNTIME)
                assert (await client.receive()).kind == "runtime"


async def test_observer_toolkit_handshake_and_events():
    source = StubSource()
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config()) as server:
            async with connect(server.url) as client:
                assert (await client.receive()).kind == "runtime"
                assert (await client.receive()).kind == "state"
                hello = await client.send(Command.HELLO)
                response = (await client.receive()).message.response
                assert (response.id, response.result, response.error) == (hello, OK, "")
                assert response.effective_config.retention_period_ms == 120_000
                await client.send(Command.REQUEST, Source.RUNTIME)
                await client.send(Command.PUSH_ENABLE, Source.EVENTS)
                await client.send(Command.PUSH_ENABLE, Source.STATE)
                kinds = [(await client.receive()).kind for _ in range(3)]
                assert kinds == ["runtime", "response", "response"]
                source.emit(1)
                source.emit(2)
                events = []
                states = 0
                while len(events) < 2 or states < 2:
                    received = await client.receive()
                    if received.kind == "event":
                        events.append(json.loads(received.message.event.content)["n"])
                        assert received.message.event.type.name == "Tick"
                    elif received.kind == "state":
                        states += 1
                assert events == [1, 2]


async def test_bad_input_gets_errors_and_the_server_goes_on():
    source = StubSource()
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config(max_command_size=1024)) as server:
            async with connect(server.url) as client:
                await client.receive()
                await client.receive()
                await client.ws.send_message("hello?")  # text frame
                await client.ws.send_message(b"\xff\xff\xff\xff")  # not a ClientCommand
                await client.send(42, command_id=7)  # unknown command
                await client.send(Command.HELLO, command_id=8)
                await client.send(Command.HELLO, command_id=9)  # second HELLO
                await client.send(Command.REQUEST, Source.EVENTS, command_id=10)
                responses = [(await client.receive()).message.response for _ in range(6)]
                assert [(r.id, r.result) for r in responses] == [
                    (0, ERR), (0, ERR), (7, ERR), (8, OK), (9, ERR), (10, ERR),
                ]  # fmt: skip
                # The session goes on after every one of them.
                await client.ready()
                assert (await client.receive()).kind == "state"
                # A command over the size limit closes with 1009...
                await client.ws.send_message(b"\x00" * 2048)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await client.receive()
                assert closed.value.reason.code == 1009
            # ...and the server still serves others.
            async with connect(server.url) as other:
                assert (await other.receive()).kind == "runtime"


async def test_wrong_path_is_404():
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), config()) as server:
            url = server.url.replace("/introspect", "/nope")
            with pytest.raises(HandshakeError) as rejected:
                async with open_websocket_url(url):
                    pass
            assert getattr(rejected.value, "status_code", 404) == 404


async def test_source_failure_keeps_the_server_serving():
    source = StubSource()
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config()) as server:
            async with connect(server.url) as client:
                await client.receive()
                await client.receive()
                source.fail_next_state = True
                while source.snapshot_errors == 0:
                    await trio.sleep(0.01)
                await client.ready()
                assert (await client.receive()).kind == "state"


async def test_two_concurrent_clients_with_different_modes():
    source = StubSource()
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, config()) as server:
            async with connect(server.url) as puller, connect(server.url) as pusher:
                for client in (puller, pusher):
                    await client.receive()
                    await client.receive()
                await pusher.send(Command.PUSH_ENABLE, Source.STATE)
                await pusher.send(Command.PUSH_ENABLE, Source.EVENTS)
                assert (await pusher.receive_kind("response")).message.response.result == OK
                assert (await pusher.receive_kind("response")).message.response.result == OK
                source.emit(1)
                pulled, pushed, events = [], [], []

                async def pull() -> None:
                    for _ in range(5):
                        await puller.ready()
                        received = await puller.receive()
                        assert received.kind == "state"  # the puller never sees events
                        pulled.append(state_number(received))

                async def push() -> None:
                    while len(pushed) < 5 or not events:
                        received = await pusher.receive()
                        if received.kind == "state":
                            pushed.append(state_number(received))
                        elif received.kind == "event":
                            events.append(received)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pull)
                    nursery.start_soon(push)
                assert pulled == sorted(set(pulled))
                assert pushed == sorted(set(pushed))
                assert pushed == list(range(pushed[0], pushed[0] + len(pushed)))  # every one
                assert len(events) == 1


async def test_client_that_stops_reading_does_not_starve_another():
    source = StubSource()
    cfg = config(queue_bound=8, write_timeout_s=60)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, cfg) as server:
            async with connect(server.url) as stuck, connect(server.url) as reader:
                await stuck.receive()
                await stuck.receive()
                await stuck.send(Command.PUSH_ENABLE, Source.EVENTS)
                await stuck.send(Command.PUSH_ENABLE, Source.STATE)
                # `stuck` reads nothing from here on.
                await reader.receive()
                last = state_number(await reader.receive())
                for round_ in range(20):
                    for n in range(200):  # ~1.2 MB of events per round for the stuck client
                        source.emit(round_ * 1000 + n, padding=6_000)
                    await reader.ready()
                    received = await reader.receive()
                    assert received.kind == "state"
                    assert state_number(received) > last
                    last = state_number(received)
                stuck_session = next(
                    h.session for h in server.hub.sessions if h.session.stats.events_sent
                )
                assert stuck_session.stats.dropped > 0
                assert stuck_session.queued <= cfg.queue_bound + 8  # bounded, notices aside


async def test_a_client_that_reads_nothing_is_closed_with_1008():
    """A raw client with a tiny receive buffer that never reads: the write timeout fires."""
    source = StubSource()
    cfg = config(write_timeout_s=0.5, queue_bound=4)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, cfg) as server:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", server.port))
            stream = trio.SocketStream(sock)
            await stream.send_all(
                b"GET /introspect HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            # Like a real client, wait for the 101 before sending frames.
            assert b" 101 " in await stream.receive_some(1024)
            # Subscribe to events (masked client frame), then never read again.
            command = pb.ClientCommand(id=1, command=Command.PUSH_ENABLE, source=Source.EVENTS)
            payload = command.SerializeToString()
            mask = b"\x01\x02\x03\x04"
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            await stream.send_all(bytes([0x82, 0x80 | len(payload)]) + mask + masked)
            while not server.hub.sessions or not any(
                h.session.stats.commands for h in server.hub.sessions
            ):
                await trio.sleep(0.01)
            handle = next(iter(server.hub.sessions))
            while handle.session.close is None:
                source.emit(0, padding=50_000)
                await trio.sleep(0.005)
            assert handle.session.close.code == 1008
            assert "read nothing" in handle.session.close.reason
            while server.hub.sessions:  # the session is gone; the server lives on
                await trio.sleep(0.01)
            await stream.aclose()
            async with connect(server.url) as client:
                assert (await client.receive()).kind == "runtime"


async def test_a_taken_port_is_a_plain_oserror():
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), config()) as server:
            with pytest.raises(OSError):
                async with open_introspection_server(StubSource(), config(port=server.port)):
                    pass


async def test_an_oversized_command_is_closed_by_the_session_with_its_1009():
    # The transport stops buffering past the session's limit; the session decides the
    # close (§4.8), so the client reads the session's reason and the session counts it.
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), config(max_command_size=1024)) as server:
            async with connect(server.url) as client:
                await client.receive()
                await client.receive()
                await client.ws.send_message(b"\x00" * 5000)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await client.receive()
            assert closed.value.reason.code == 1009
            assert "exceeds the 1024-byte limit" in closed.value.reason.reason
            while not server.closed_sessions:
                await trio.sleep(0.01)
            (ended,) = server.closed_sessions
            assert ended.close is not None and ended.close.code == 1009
            assert ended.stats.commands == 1
