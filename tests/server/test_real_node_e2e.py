"""The §4 rules end to end over a real WebSocket against a real py-libp2p node.

Two py-libp2p hosts on loopback; introspection attached to the first; the
second dials it and opens streams so the node produces real events.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import multiaddr
import trio
from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr

from libp2p_introspection.attach import attach_introspection
from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.protocol import pb

LOOPBACK = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
ECHO = "/test/echo/1.0.0"
OK = pb.CommandResponse.OK
ERR = pb.CommandResponse.ERR


async def _echo(stream) -> None:
    data = await stream.read(1024)
    await stream.write(data)
    await stream.close()


class Pair:
    """Host ``a`` (introspected) and host ``b`` (its peer)."""

    def __init__(self, a, b) -> None:
        self.a, self.b = a, b

    async def dial(self) -> None:
        await self.b.connect(info_from_p2p_addr(self.a.get_addrs()[0]))

    async def hang_up(self) -> None:
        await self.b.disconnect(self.a.get_id())

    async def echo(self, payload: bytes = b"hi") -> bytes:
        stream = await self.b.new_stream(self.a.get_id(), [ECHO])
        await stream.write(payload)
        reply = await stream.read(1024)
        await stream.close()
        return reply


async def _pair(stack: AsyncExitStack) -> Pair:
    a, b = new_host(), new_host()
    for host in (a, b):
        await stack.enter_async_context(host.run([LOOPBACK]))
    a.set_stream_handler(ECHO, _echo)
    return Pair(a, b)


async def _events_until(client, names: set[str], limit: int = 500) -> list[pb.Event]:
    seen: list[pb.Event] = []
    for _ in range(limit):
        received = await client.receive()
        if received.kind == "event":
            seen.append(received.message.event)
            if names <= {e.type.name for e in seen}:
                return seen
    raise AssertionError(f"events {names} not seen; got {[e.type.name for e in seen]}")


async def test_real_node_pull_push_pause_resume_and_errors():
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            pair = await _pair(stack)
            server = await stack.enter_async_context(
                attach_introspection(pair.a, port=0, interval_ms=100)
            )
            client = await stack.enter_async_context(connect(server.url))

            # §4.2: runtime, then the latest snapshot.
            runtime = (await client.receive()).message
            assert runtime.WhichOneof("payload") == "runtime"
            assert runtime.runtime.implementation == "py-libp2p"
            assert runtime.runtime.peer_id == pair.a.get_id().to_base58()
            declared = {t.name: t for t in runtime.runtime.event_types}
            assert {"ConnectionOpened", "ConnectionClosed", "StreamOpened", "StreamClosed"} <= set(
                declared
            )
            first = await client.receive()
            assert first.kind == "state"

            # §4.7 handshake as the observer-toolkit does it, then §4.4 events.
            await client.send(Command.HELLO, command_id=1)
            response = (await client.receive()).message.response
            assert (response.id, response.result) == (1, OK)
            await client.send(Command.PUSH_ENABLE, Source.EVENTS, command_id=2)
            assert (await client.receive()).message.response.id == 2

            await pair.dial()
            assert await pair.echo(b"ping!") == b"ping!"
            events = await _events_until(client, {"ConnectionOpened", "StreamOpened"})
            opened = next(e for e in events if e.type.name == "ConnectionOpened")
            content = json.loads(opened.content)
            assert set(content) == {p.name for p in declared["ConnectionOpened"].property_types}
            assert pair.b.get_id().to_base58() in opened.content

            # §4.3 pull: the next snapshot shows the connection to b.
            peer_b = pair.b.get_id().to_base58()
            for _ in range(50):
                await client.ready()
                received = await client.receive_kind("state")
                connections = received.message.state.subsystems.connections
                if any(c.peer_id == peer_b for c in connections):
                    break
            else:
                raise AssertionError("connection to b never appeared in a snapshot")

            # §4.5 pause: events are held, not sent; resume sends OK then them, in order.
            await client.send(Command.PUSH_PAUSE, command_id=3)
            assert (await client.receive_kind("response")).message.response.id == 3
            for n in range(3):
                assert await pair.echo(f"held-{n}".encode()) == f"held-{n}".encode()
            await pair.hang_up()
            # A pull still works while paused, and no event slips through before it.
            await client.ready()
            assert (await client.receive()).kind == "state"
            await client.send(Command.PUSH_RESUME, command_id=4)
            resumed = await client.receive()
            assert resumed.kind == "response" and resumed.message.response.id == 4
            held = await _events_until(client, {"ConnectionClosed"})
            names = [e.type.name for e in held]
            assert names.count("StreamOpened") >= 3
            assert names.index("ConnectionClosed") > names.index("StreamOpened")

            # §4.8 errors on a live node: the session goes on.
            await client.send(Command.REQUEST, Source.EVENTS, command_id=5)
            await client.ws.send_message("text")
            errors = [(await client.receive_kind("response")).message.response for _ in range(2)]
            assert [(r.id, r.result) for r in errors] == [(5, ERR), (0, ERR)]
            await client.ready()
            assert (await client.receive_kind("state")).kind == "state"


async def test_real_node_two_clients_pull_and_push_state():
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            pair = await _pair(stack)
            server = await stack.enter_async_context(
                attach_introspection(pair.a, port=0, interval_ms=50)
            )
            puller = await stack.enter_async_context(connect(server.url))
            pusher = await stack.enter_async_context(connect(server.url))
            await pair.dial()
            config = pb.Configuration(state_snapshot_interval_ms=100)  # every 2nd snapshot
            await pusher.send(Command.UPDATE_CONFIG, config=config)
            await pusher.send(Command.PUSH_ENABLE, Source.STATE)
            pushed: list[int] = []
            pulled: list[int] = []

            async def pull() -> None:
                await puller.receive_kind("state")
                for _ in range(5):
                    await puller.ready()
                    pulled.append((await puller.receive_kind("state")).message.state.instant_ts)

            async def push() -> None:
                await pusher.receive_kind("state")
                response = (await pusher.receive_kind("response")).message.response
                assert response.effective_config.state_snapshot_interval_ms == 100
                while len(pushed) < 5:
                    received = await pusher.receive()
                    if received.kind == "state":
                        pushed.append(received.message.state.instant_ts)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pull)
                nursery.start_soon(push)
            for series in (pulled, pushed):
                assert series == sorted(set(series))


async def test_node_stopping_closes_sessions_with_a_reason_and_loses_nothing(tmp_path):
    from libp2p_introspection.client.recorder import Outcome, Recorder
    from libp2p_introspection.protocol.recording import RecordingReader

    path = tmp_path / "until-stop.mock"
    with trio.fail_after(60):
        async with trio.open_nursery() as outer:
            recorder: Recorder | None = None
            async with AsyncExitStack() as stack:  # the node and its introspection
                pair = await _pair(stack)
                server = await stack.enter_async_context(
                    attach_introspection(pair.a, port=0, interval_ms=50)
                )
                await pair.dial()
                recorder = Recorder(server.url, path, mode="pull", events=True)
                outer.start_soon(recorder.run)
                while recorder.stats.snapshots < 5:
                    await trio.sleep(0.02)
            # The node stopped (its host.run() and attach block ended).
    assert recorder is not None
    result = recorder.result()
    assert result.outcome is Outcome.SERVER_CLOSED
    assert "1001" in result.detail and "stopping" in result.detail
    with RecordingReader(path) as reader:
        records = sum(1 for _ in reader)
        assert reader.checksum_failures == 0 and not reader.truncated
    assert records == recorder.stats.records >= 6
