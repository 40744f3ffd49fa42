"""Clients that reset, vanish or send junk at every point of a connection's life.

The rule (SECURITY.md): no exception raised by or about one connection, before,
during or after the handshake, while refusing it or while closing it, leaves that
connection's own task. So the server, and the node it is attached to, go on
serving; a reset is logged at DEBUG at most; a refusal at WARNING with the
client's address (or 'unknown peer' once the socket is gone).

The storms are deterministic in what each client does (seeded) and bounded in
size; the kernel decides only when each RST lands.
"""

from __future__ import annotations

import logging
import random
from contextlib import AsyncExitStack
from dataclasses import dataclass

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr
from raw_ws import command, frame, handshake, open_raw, request, reset
from stub_source import StubSource

from libp2p_introspection.attach import attach_introspection
from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.server import ServerConfig, open_introspection_server

LIMIT = 60
TOKEN = "storm-token-1234"
POINTS = (
    "connect",  # before the request line
    "request-line",  # part of the request line
    "headers",  # mid-headers
    "request",  # the whole request, then at once
    "after-101",  # the 101 read, nothing else
    "mid-frame",  # half a frame sent
    "subscribed",  # pushes on, a little read
    "close-race",  # a close frame sent, reset before the answer
)
VARIANTS = ("plain", "bad-origin", "good-origin", "no-token", "wrong-token", "not-found")


@dataclass(frozen=True)
class Plan:
    point: str
    variant: str
    cut: int  # where "request-line"/"headers"/"mid-frame" stop, bytes


def plans(seed: int, count: int) -> list[Plan]:
    rng = random.Random(seed)
    return [
        Plan(rng.choice(POINTS), rng.choice(VARIANTS), rng.randrange(1, 1 << 16))
        for _ in range(count)
    ]


def _request(variant: str, token: str | None) -> bytes:
    headers: list[tuple[str, str]] = []
    path = "/introspect"
    if variant == "bad-origin":
        headers.append(("Origin", "http://evil.example"))
    elif variant == "good-origin":
        headers.append(("Origin", "http://localhost:3000"))
    elif variant == "wrong-token":
        headers.append(("X-Introspection-Token", "wrong"))
    elif variant == "not-found":
        path = "/nope"
    if token and variant not in ("no-token", "wrong-token"):
        path += f"?token={token}"
    return request(path, headers)


async def _client(port: int, plan: Plan, token: str | None) -> None:
    """One hostile client: it follows ``plan`` and then resets (or hangs up)."""
    data = _request(plan.variant, token)
    stream = await open_raw(port)
    try:
        if plan.point == "request-line":
            await stream.send_all(data[: 1 + plan.cut % 20])
        elif plan.point == "headers":
            await stream.send_all(data[: 20 + plan.cut % (len(data) - 24)])
        elif plan.point == "request":
            await stream.send_all(data)
        elif plan.point != "connect":
            head = await handshake(stream, data)
            if b" 101 " in head.split(b"\r\n")[0]:
                if plan.point == "mid-frame":
                    whole = command(Command.PUSH_ENABLE, Source.EVENTS)
                    await stream.send_all(whole[: 2 + plan.cut % (len(whole) - 2)])
                elif plan.point == "subscribed":
                    await stream.send_all(command(Command.PUSH_ENABLE, Source.EVENTS, cid=1))
                    await stream.send_all(command(Command.PUSH_ENABLE, Source.STATE, cid=2))
                    await stream.receive_some(plan.cut % 4096 + 1)
                elif plan.point == "close-race":
                    await stream.send_all(frame(0x8, b"\x03\xe8bye"))
    except (trio.BrokenResourceError, OSError, AssertionError):
        pass  # the server hung up first (a refusal, a 503): the reset below still happens
    reset(stream)


async def _storm(port: int, seed: int, count: int, token: str | None = None) -> None:
    limiter = trio.CapacityLimiter(24)

    async def one(plan: Plan) -> None:
        async with limiter:
            await _client(port, plan, token)

    async with trio.open_nursery() as nursery:
        for plan in plans(seed, count):
            nursery.start_soon(one, plan)


async def _wait_until_idle(server) -> None:
    while server.hub.sessions:  # bounded by the caller's fail_after
        await trio.sleep(0.01)


async def _serves_a_normal_client(server, token: str | None = None) -> None:
    async with connect(server.url, token=token) as client:
        assert (await client.receive()).kind == "runtime"
        assert (await client.receive()).kind == "state"
        await client.ready()
        assert (await client.receive()).kind == "state"


def _check_logs(records: list[logging.LogRecord]) -> None:
    ours = [r for r in records if r.name.startswith("libp2p_introspection")]
    loud = [r for r in ours if r.levelno >= logging.WARNING]
    for record in loud:
        message = record.getMessage()
        assert record.levelno == logging.WARNING and message.startswith("refused "), message
        assert message.startswith(("refused 127.0.0.1:", "refused unknown peer:")), message
    assert not [r for r in ours if r.exc_info], "a traceback was logged"


def _config(**kw) -> ServerConfig:
    return ServerConfig(
        port=0,
        interval_ms=20,
        ping_interval_s=0.02,  # pings in flight while clients reset
        handshake_timeout_s=0.5,
        max_sessions=kw.pop("max_sessions", 8),  # some clients get the 503 path
        **kw,
    )


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
async def test_a_storm_of_resets_leaves_the_server_serving(caplog, token):
    caplog.set_level(logging.DEBUG, logger="libp2p_introspection")
    source = StubSource()
    with trio.fail_after(LIMIT):
        async with open_introspection_server(source, _config(token=token)) as server:
            async with trio.open_nursery() as nursery:
                # Events flow while the storm blows: writers are busy when the RSTs land.
                async def emit() -> None:
                    for n in range(10_000):
                        source.emit(n, padding=2_000)
                        await trio.sleep(0.002)

                nursery.start_soon(emit)
                await _storm(server.port, seed=9 if token else 6, count=300, token=token)
                nursery.cancel_scope.cancel()
            await _wait_until_idle(server)
            await _serves_a_normal_client(server, token)
            assert server.connection_faults == 0
            assert server.refused > 0 and server.sessions_served > 0  # both paths were hit
    _check_logs(caplog.records)


async def test_a_storm_does_not_take_down_the_py_libp2p_node(caplog):
    caplog.set_level(logging.DEBUG, logger="libp2p_introspection")
    echo_protocol = "/test/echo/1.0.0"

    async def echo(stream) -> None:
        await stream.write(await stream.read(1024))
        await stream.close()

    async def ask(a, b, payload: bytes) -> bytes:
        stream = await b.new_stream(a.get_id(), [echo_protocol])
        await stream.write(payload)
        reply = await stream.read(1024)
        await stream.close()
        return reply

    with trio.fail_after(LIMIT):
        async with AsyncExitStack() as stack:
            loopback = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
            a, b = new_host(), new_host()
            for host in (a, b):
                await stack.enter_async_context(host.run([loopback]))
            a.set_stream_handler(echo_protocol, echo)
            server = await stack.enter_async_context(
                attach_introspection(a, config=_config(token=TOKEN))
            )
            await b.connect(info_from_p2p_addr(a.get_addrs()[0]))
            stop = trio.Event()
            exchanges = 0

            async def traffic() -> None:  # the node serves streams during the storm
                nonlocal exchanges
                while not stop.is_set():  # never cancelled mid-stream: py-libp2p minds that
                    payload = f"during-{exchanges}".encode()
                    assert await ask(a, b, payload) == payload
                    exchanges += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(traffic)
                await _storm(server.port, seed=17, count=200, token=TOKEN)
                stop.set()
            assert exchanges > 0
            await _wait_until_idle(server)
            assert await ask(a, b, b"after the storm") == b"after the storm"
            await _serves_a_normal_client(server, TOKEN)
            assert server.connection_faults == 0
    _check_logs(caplog.records)


async def test_the_serve_command_survives_a_storm():
    from cli_process import running

    args = ["-m", "libp2p_introspection", "serve", "--source", "mock", "--connections", "3",
            "--port", "0", "--interval-ms", "50", "--token", TOKEN,
            "--handshake-timeout", "0.5", "--ping-interval", "0.05"]  # fmt: skip
    with running(args) as (process, url):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with trio.fail_after(LIMIT):
            await _storm(port, seed=3, count=150, token=TOKEN)
            async with connect(url, token=TOKEN) as client:
                assert (await client.receive()).kind == "runtime"
                assert (await client.receive()).kind == "state"
        assert process.poll() is None, "serve exited during the storm"


def test_storm_plans_cover_every_point_and_variant():
    chosen = plans(6, 300) + plans(9, 300) + plans(17, 200) + plans(3, 150)
    assert {p.point for p in chosen} == set(POINTS)
    assert {p.variant for p in chosen} == set(VARIANTS)


async def test_a_bug_in_one_connection_is_logged_and_the_server_goes_on(caplog, monkeypatch):
    from libp2p_introspection.server.hub import Hub

    real_open = Hub.open_session
    calls = []

    def open_session_once_broken(self):
        calls.append(self)
        if len(calls) == 1:
            raise RuntimeError("simulated bug while opening a session")
        return real_open(self)

    monkeypatch.setattr(Hub, "open_session", open_session_once_broken)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), _config()) as server:
            stream = await open_raw(server.port)
            await handshake(stream)
            assert await stream.receive_some(1024) == b""  # that connection ends...
            await stream.aclose()
            await _serves_a_normal_client(server)  # ...the server does not
            assert server.connection_faults == 1
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "internal error on the connection of 127.0.0.1:" in error.getMessage()
    assert error.exc_info is not None
