"""Admission (origin, token, session limit, loopback), liveness and shutdown, end to end."""

from __future__ import annotations

import contextlib
import logging

import pytest
import trio
from stub_source import StubSource
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from libp2p_introspection.client import connect
from libp2p_introspection.protocol.admission import origin_allowed, presented_token, token_ok
from libp2p_introspection.server import ServerConfig, open_introspection_server

LIMIT = 30


def config(**kw) -> ServerConfig:
    return ServerConfig(port=0, interval_ms=50, **kw)


async def _status(url: str, headers=None) -> int | None:
    """HTTP status of a refused upgrade, or None if it was accepted."""
    try:
        async with open_websocket_url(url, extra_headers=headers):
            return None
    except HandshakeError as exc:
        return getattr(exc, "status_code", -1)


def test_non_loopback_bind_needs_an_explicit_option():
    with pytest.raises(ValueError, match="not a loopback address"):
        ServerConfig(host="0.0.0.0")
    assert ServerConfig(host="0.0.0.0", allow_remote=True).host == "0.0.0.0"
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        ServerConfig(host=host)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://localhost:3000", True),
        ("http://127.0.0.1:8846", True),
        ("http://[::1]:9000", True),
        ("https://localhost", True),
        ("http://evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),
        ("file://", False),
        ("https://observer.example.org", False),
        # Not an origin at all, though a URL parser may read a loopback host in them.
        ("http://evil.com\\@127.0.0.1", False),
        ("http://evil.com\\@127.0.0.1:3000", False),
        ("http://127.0.0.1@evil.com", False),
        ("http://evil.com#@127.0.0.1", False),
        ("http://evil.com?@127.0.0.1", False),
        ("http://localhost/path", False),
        ("http://user@localhost", False),
        ("http://localhost:3000 http://evil.com", False),
        ("http://localhost:99999", False),
        ("http://[127.0.0.1]", False),
        ("http://127.0.0.1.evil.com", False),
        ("HTTP://LOCALHOST:3000", True),
    ],
)
def test_origin_rules(origin, allowed):
    assert origin_allowed(origin) is allowed


async def test_an_origin_that_only_parses_as_loopback_and_two_origins_are_refused():
    from raw_ws import handshake, request

    cases = [
        [("Origin", "http://evil.com\\@127.0.0.1")],
        [("Origin", "http://localhost:1"), ("Origin", "http://evil.com")],
        [("Origin", "http://localhost:1"), ("Origin", "http://localhost:1")],
    ]
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), config()) as server:
            for headers in cases:
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                head = await handshake(stream, request(headers=headers))
                assert head.startswith(b"HTTP/1.1 403 "), (headers, head)
                await stream.aclose()
            assert not server.sessions_served
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            head = await handshake(stream, request(headers=[("Origin", "http://localhost:1")]))
            assert head.startswith(b"HTTP/1.1 101 ")
            await stream.aclose()


def test_allowlisted_origin():
    assert origin_allowed("https://Observer.example.org/", ["https://observer.example.org"])


def test_token_sources_and_comparison():
    assert presented_token("/introspect", [(b"X-Introspection-Token", b"s3cret")]) == "s3cret"
    assert presented_token("/introspect", [(b"authorization", b"Bearer s3cret")]) == "s3cret"
    assert presented_token("/introspect?token=s3cret", []) == "s3cret"
    assert (
        presented_token("/introspect", [(b"X-Introspection-Token", "pässwörd".encode())])
        == "pässwörd"
    )
    assert presented_token("/introspect?token=p%C3%A4ss", []) == "päss"
    assert presented_token("/introspect", []) is None
    assert token_ok(None, None) and token_ok("", "anything")
    assert token_ok("s3cret", "s3cret")
    assert not token_ok("s3cret", "s3cre") and not token_ok("s3cret", None)


async def test_foreign_origin_is_refused_with_403_and_a_log_line(caplog):
    caplog.set_level(logging.WARNING, logger="libp2p_introspection")
    with trio.fail_after(LIMIT):
        cfg = config(allowed_origins=("https://observer.example.org",))
        async with open_introspection_server(StubSource(), cfg) as server:
            assert await _status(server.url, [(b"Origin", b"http://evil.example")]) == 403
            assert await _status(server.url, [(b"Origin", b"http://localhost:1234")]) is None
            assert await _status(server.url, [(b"Origin", b"https://observer.example.org")]) is None
            assert await _status(server.url) is None  # command-line tools send no Origin
            assert server.refused == 1
    assert any("evil.example" in r.getMessage() and "403" in r.getMessage() for r in caplog.records)


async def test_token_is_required_and_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    secret = "tok-9f8e7d6c5b4a"
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), config(token=secret)) as server:
            assert await _status(server.url) == 401
            assert await _status(server.url, [(b"X-Introspection-Token", b"wrong")]) == 401
            assert await _status(server.url + f"?token={secret}") is None
            assert (
                await _status(server.url, [(b"Authorization", f"Bearer {secret}".encode())]) is None
            )
            async with connect(server.url, token=secret) as client:
                assert (await client.receive()).kind == "runtime"
            assert secret not in repr(server.config)
    # The test's own client (trio-websocket) logs the URL it dials, query included;
    # nothing on the server side may mention the token.
    server_side = [r.getMessage() for r in caplog.records if "Connecting to" not in r.getMessage()]
    assert not [m for m in server_side if secret in m]


async def test_session_limit_refuses_with_503():
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), config(max_sessions=2)) as server:
            async with connect(server.url) as a, connect(server.url) as b:
                await a.receive()
                await b.receive()
                assert await _status(server.url) == 503
            while server.hub.sessions:
                await trio.sleep(0.01)
            assert await _status(server.url) is None


async def test_command_flood_gets_errors_then_a_close():
    with trio.fail_after(LIMIT):
        cfg = config(commands_per_second=5, command_burst=10)
        async with open_introspection_server(StubSource(), cfg) as server:
            async with connect(server.url) as client:
                await client.receive()
                await client.receive()
                errors = 0
                for _ in range(200):
                    try:
                        await client.send(1, 1)  # REQUEST RUNTIME, as fast as possible
                    except ConnectionClosed:
                        break  # closed while we were still sending: read what came first
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        received = await client.receive()
                        if (
                            received.kind == "response"
                            and "too many" in received.message.response.error
                        ):
                            errors += 1
                assert errors >= 1
                assert closed.value.reason.code == 1008
                assert "flood" in closed.value.reason.reason
            async with connect(server.url) as other:  # the server goes on
                assert (await other.receive()).kind == "runtime"


async def test_a_peer_that_stops_answering_pings_is_closed():
    with trio.fail_after(LIMIT):
        cfg = config(ping_interval_s=0.05, pong_timeout_s=0.3)
        async with open_introspection_server(StubSource(), cfg) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(
                b"GET /introspect HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            while not server.closed_sessions:  # never reads, never answers a ping
                await trio.sleep(0.02)
            (closed,) = server.closed_sessions
            assert closed.close.code == 1008
            assert "no pong" in closed.close.reason
            await stream.aclose()


async def test_a_paused_client_that_answers_pings_stays():
    with trio.fail_after(LIMIT):
        # Pings every 20 ms; a pong may be up to 2 s late (generous for a loaded machine).
        cfg = config(ping_interval_s=0.02, pong_timeout_s=2.0)
        async with open_introspection_server(StubSource(), cfg) as server:
            async with connect(server.url) as client:
                await client.receive()
                await client.receive()
                await client.send(4)  # PUSH_PAUSE, then read nothing for a while
                await trio.sleep(3.0)  # longer than the pong timeout: pings kept it alive
                assert len(server.hub.sessions) == 1 and not server.closed_sessions
                await client.send(1, 1)
                assert (await client.receive_kind("runtime")).kind == "runtime"


async def test_half_open_connection_is_dropped_after_the_handshake_timeout():
    with trio.fail_after(LIMIT):
        cfg = config(handshake_timeout_s=0.2)
        async with open_introspection_server(StubSource(), cfg) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            with trio.fail_after(5):
                assert await stream.receive_some(100) == b""  # the server hung up
            await stream.aclose()


async def test_stopping_the_server_closes_sessions_with_1001_and_a_reason():
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            from libp2p_introspection.server import IntrospectionServer

            server = IntrospectionServer(StubSource(), config())
            server_scope = trio.CancelScope()

            async def run_server(task_status=trio.TASK_STATUS_IGNORED):
                with server_scope:
                    await server.run(task_status=task_status)

            await nursery.start(run_server)
            async with connect(server.url) as client:
                await client.receive()
                server_scope.cancel()
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await client.receive()
                assert closed.value.reason.code == 1001
                assert "stopping" in closed.value.reason.reason


async def test_session_limit_holds_for_simultaneous_handshakes():
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), config(max_sessions=3)) as server:
            outcomes: list[int | None] = []

            async def one() -> None:
                try:
                    async with open_websocket_url(server.url) as ws:
                        outcomes.append(None)
                        await ws.get_message()
                        await trio.sleep(1.0)  # hold the session while the others try
                except HandshakeError as exc:
                    outcomes.append(getattr(exc, "status_code", -1))

            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(one)
            assert outcomes.count(None) == 3
            assert outcomes.count(503) == 37


async def test_a_command_that_trips_an_internal_error_ends_only_that_session(monkeypatch):
    from libp2p_introspection.protocol.session import Session

    def broken(self, data, now):
        raise RuntimeError("simulated bug")

    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), config()) as server:
            async with connect(server.url) as victim, connect(server.url) as bystander:
                for client in (victim, bystander):
                    await client.receive()
                    await client.receive()
                monkeypatch.setattr(Session, "receive_command", broken)
                await victim.send(0)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await victim.receive()
                assert closed.value.reason.code == 1011
                monkeypatch.undo()
                await bystander.send(1, 1)
                assert (await bystander.receive_kind("runtime")).kind == "runtime"


async def test_past_the_handshake_limit_the_oldest_handshake_makes_room(caplog):
    # A local process holding idle sockets can neither take the node's file descriptors
    # nor lock clients out: at --max-handshakes a new connection closes the oldest one
    # still in its handshake, so a real client, which finishes in milliseconds, is served.
    from libp2p_introspection.server.door import SHED_LOG_INTERVAL_S

    caplog.set_level(logging.DEBUG, logger="libp2p_introspection.server")
    limit, extra = 20, 60
    cfg = config(max_handshakes=limit, handshake_timeout_s=LIMIT * 2)
    with trio.fail_after(LIMIT):
        async with open_introspection_server(StubSource(), cfg) as server:
            async with connect(server.url) as client:  # a session does not count
                await client.receive()
                half_open = []
                for _ in range(limit + extra):
                    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                    await stream.send_all(b"GET /introspect HTTP/1.1\r\n")  # and no more
                    half_open.append(stream)
                    while server.handshakes + server.shed < len(half_open):
                        await trio.sleep(0.01)  # accepted, in order
                    assert len(server.connections) <= limit + 1  # the session's, besides
                assert server.shed == extra and server.handshakes == limit
                # The oldest were closed (EOF, or a reset); the newest still wait.
                for stream in half_open[:extra]:
                    with trio.fail_after(5), contextlib.suppress(trio.BrokenResourceError):
                        assert await stream.receive_some(100) == b""
                # With every handshake place taken by idle sockets, a new client is served.
                async with connect(server.url) as newcomer:
                    assert (await newcomer.receive()).kind == "runtime"
                assert server.shed == extra + 1
                await client.ready()  # the session goes on
                assert (await client.receive_kind("state")).kind == "state"
                for stream in half_open:
                    await stream.aclose()
                while server.handshakes:
                    await trio.sleep(0.01)
            evicted = [r for r in caplog.records if "for a newer connection" in r.getMessage()]
            assert sum(r.levelno == logging.DEBUG for r in evicted) == extra + 1  # one each
            # One summary now, the rest in the next one (never one line per connection).
            summaries = [r for r in caplog.records if "to make room" in r.getMessage()]
            assert [r.levelno for r in summaries] == [logging.WARNING]
            server.door.log_shed(now=trio.current_time() + SHED_LOG_INTERVAL_S)
            summary = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert f"closed {extra} connections still in the handshake" in summary[-1]
            assert "--max-handshakes" in summary[-1]


def test_the_handshake_limit_must_be_positive():
    with pytest.raises(ValueError, match="max_handshakes"):
        ServerConfig(max_handshakes=0)
