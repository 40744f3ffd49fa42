"""Attacks on counting inside py-libp2p's own method frames (real hosts on loopback).

Where a class's ``read``/``write`` has the source digest the introspector was checked
against, it runs its own copy of that body instead of the class's method. Each test
here is something a node does to those methods, or to its streams, that must behave
exactly as without introspection and be counted exactly as it crossed the wire.
Written by an outside attacker: every test failed on main (47a38ed) when written, but
the mplex case of the zero-length write (which holds); the NetStream one passes since
NetStream's inline body was reverted (a715c0b) and guards against its return. Fixed
since: a wrapped method (``functools.wraps``) is wrapped, not skipped; a second
introspector on a host is refused. The ``xfail(strict=True)`` tests are findings that
were already there before counting moved into py-libp2p's frames (they fail on
b5ee1dc too) and are left for later: each one's reason says what is missed; each
fails the suite the day it starts passing, so that its mark is taken off.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from introspector_harness import connect, running_hosts, wait_until
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.stream.exceptions import StreamError
from libp2p.network.stream.net_stream import NetStream
from libp2p.security.secure_session import SecureSession

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.protocol import pb

PROTOCOL = "/attack/inline/1.0.0"


def traced(calls: list[Any], function: Callable[..., Any]) -> Callable[..., Any]:
    """An instrumentation decorator as tracing and metrics libraries write them
    (``functools.wraps``): it records ``(qualname, id(self))`` for every call, then
    runs the method."""

    @functools.wraps(function)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((function.__qualname__, id(self)))
        return await function(self, *args, **kwargs)

    return wrapper


class ProxyWrapper:
    """A decorator object as wrapt (OpenTelemetry's instrumentations) makes them: a
    descriptor that runs ``before`` then the wrapped method, and stands in for the
    wrapped function for every other attribute (``__wrapped__``, ``__globals__``,
    ``__name__``, ...)."""

    def __init__(self, wrapped: Callable[..., Any], before: Callable[[Any], None]) -> None:
        object.__setattr__(self, "_wrapped", wrapped)
        object.__setattr__(self, "_before", before)

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self._wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self

        async def bound(*args: Any, **kwargs: Any) -> Any:
            self._before(obj)
            return await self._wrapped(obj, *args, **kwargs)

        return bound


async def _sink(stream: Any) -> None:
    """Read until EOF, then close."""
    try:
        while await stream.read(65_536):
            pass
    except Exception:
        pass
    await stream.close()


def _layers(host: Any, peer: Any) -> tuple[Any, Any, Any]:
    """``(SwarmConn, its SecureSession, its RawConnection)`` of ``host``'s one
    connection to ``peer``."""
    (conn,) = host.get_network().get_connections(peer.get_id())
    secured = tp.MUXER_SECURED_CONN.get(conn.muxed_conn)
    raw = tp.find_in_graph(conn.muxed_conn, lambda o: isinstance(o, RawConnection))
    assert isinstance(secured, SecureSession) and isinstance(raw, RawConnection)
    return conn, secured, raw


@pytest.mark.parametrize(
    ("cls", "layer"),
    [(RawConnection, 2), (SecureSession, 1)],
    ids=["RawConnection", "SecureSession"],
)
async def test_a_traced_py_libp2p_method_still_runs_under_introspection(
    monkeypatch: pytest.MonkeyPatch, cls: type, layer: int
) -> None:
    # The node instruments py-libp2p's class (a tracer's functools.wraps decorator on
    # read/write). inspect.getsource follows __wrapped__, so the decorated method has
    # the checked body's digest, and the introspector runs its own copy of the body
    # instead of the class's method: the node's instrumentation silently stops seeing
    # the connection's reads and writes. Without introspection (and with the wrappers
    # of before) every call goes through it.
    calls: list[Any] = []
    for name in ("read", "write"):
        monkeypatch.setattr(cls, name, traced(calls, getattr(cls, name)))
    with trio.fail_after(30):
        async with running_hosts(2) as (us, peer):
            peer.set_stream_handler(PROTOCOL, _sink)
            intro = HostIntrospector(us)
            await connect(us, peer)
            target = _layers(us, peer)[layer]
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            before = [c for c in calls if c[1] == id(target)]
            await stream.write(b"x" * 1_000)
            await stream.close()
            seen = [c for c in calls if c[1] == id(target)]
            intro.detach()
    assert f"{cls.__name__}.write" in {name for name, _ in seen[len(before) :]}, (
        f"the node's decorator on {cls.__name__}.write never ran for its connection"
    )


async def test_a_wrapt_style_instrumented_net_stream_still_runs_its_instrumentation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (Fails at 47a38ed; passes since a715c0b reverted NetStream's inline body.)
    # The same for NetStream, whose inline body also takes its exception classes from
    # the method's __globals__: a wrapt-style wrapper hands over the wrapped function's
    # (it proxies every attribute), so its digest and its names both pass the check,
    # and the node's instrumentation of NetStream.write never runs on its streams.
    calls: list[Any] = []
    for name in ("read", "write"):
        original = getattr(NetStream, name)
        monkeypatch.setattr(
            NetStream,
            name,
            ProxyWrapper(original, lambda obj, name=name: calls.append((name, id(obj)))),
        )
    with trio.fail_after(30):
        async with running_hosts(2) as (us, peer):
            peer.set_stream_handler(PROTOCOL, _sink)
            intro = HostIntrospector(us)
            await connect(us, peer)
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            calls.clear()
            await stream.write(b"traced")
            await stream.close()
            intro.detach()
    assert ("write", id(stream)) in calls, "the node's wrapper of NetStream.write never ran"


@pytest.mark.xfail(strict=True, reason="known: hooks are set on each object, so a class method patched after attach is hidden on hooked objects")
async def test_a_class_method_patched_after_attach_runs_on_existing_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # py-libp2p's NetStream.write replaced on the class once the introspector is
    # attached (a fault injector, a test double, a hot fix): without introspection
    # every stream runs the new method at once; with it, a stream that was open when
    # the introspector hooked it keeps running the old body (the introspector's copy).
    with trio.fail_after(30):
        async with running_hosts(2) as (us, peer):
            peer.set_stream_handler(PROTOCOL, _sink)
            intro = HostIntrospector(us)
            await connect(us, peer)
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            await stream.write(b"before")
            calls: list[Any] = []
            monkeypatch.setattr(NetStream, "write", traced(calls, NetStream.write))
            await stream.write(b"after")
            await stream.close()
            intro.detach()
    assert ("NetStream.write", id(stream)) in calls, "the patched NetStream.write never ran"


async def test_a_second_introspector_is_refused_and_one_after_another_leave_nothing() -> None:
    # Two introspectors at once on one host wrapped each other's hooks: the upgrader ran
    # its hooks newest first, the notifees oldest first, and whichever detached first
    # left the other's hook in place, which the other then restored as "the original"
    # (the first one's hooks stayed on the upgrader, counting every new connection).
    # So a second one is refused while the first is attached; one after the other works,
    # and after both detached nothing of either touches the host's objects.
    with trio.fail_after(30):
        async with running_hosts(2) as (us, peer):
            peer.set_stream_handler(PROTOCOL, _sink)
            first = HostIntrospector(us)
            with pytest.raises(RuntimeError, match="already has an introspector"):
                HostIntrospector(us)
            await connect(us, peer)
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            await stream.write(b"y" * 100)
            first.detach()
            second = HostIntrospector(us)
            await stream.write(b"y" * 100)
            second.detach()
            _conn, secured, raw = _layers(us, peer)
            upgrader = us.get_network().upgrader
            left = [
                f"{type(obj).__name__}.{name}"
                for obj, names in (
                    (upgrader, ("upgrade_security", "upgrade_connection")),
                    (raw, ("read", "write")),
                    (secured, ("read", "write")),
                    (stream, ("read", "write")),
                )
                for name in names
                if name in vars(obj)
            ]
            # A connection made after both detached: nothing of either may touch it.
            await us.get_network().close_peer(peer.get_id())
            await wait_until(lambda: not us.get_network().get_connections(peer.get_id()))
            await connect(us, peer)
            _conn, secured, raw = _layers(us, peer)
            new = [
                f"{type(obj).__name__}.{name}"
                for obj in (raw, secured)
                for name in ("read", "write")
                if name in vars(obj)
            ]
            await stream.close()
    assert (left, new) == ([], [])


#: One write far larger than yamux's send window (256 KiB at first, grown as the peer
#: reads) and its 64 KiB frames: it cannot complete before the peer has read TAKEN.
HUGE = 4 * 1_048_576
#: What the peer reads of it before it resets (or stops reading).
TAKEN = 100_000


@pytest.mark.xfail(strict=True, reason="known: a write is counted when it returns; one cut by a reset counts nothing")
async def test_a_huge_write_cut_by_a_reset_counts_the_payload_that_went_out() -> None:
    # One write(1 MiB) on a stream: yamux sends it in 64 KiB DATA frames as the
    # window allows; the peer reads 100,000 bytes of them and resets. The write fails
    # (StreamReset/StreamClosed) after several frames of payload crossed the wire, and
    # the peer read at least 100,000 bytes of it: the stream counts 0 bytes and 0
    # packets out, since a write is counted only when it returns.
    taken = {"bytes": 0}

    async def take_then_reset(stream: Any) -> None:
        try:
            while taken["bytes"] < TAKEN:
                taken["bytes"] += len(await stream.read(65_536))
        finally:
            await stream.reset()

    with trio.fail_after(30):
        async with running_hosts(2) as (us, peer):
            peer.set_stream_handler(PROTOCOL, take_then_reset)
            intro = HostIntrospector(us)
            await connect(us, peer)
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            record = intro._registry.stream_record(stream)
            assert record is not None
            with pytest.raises(StreamError):  # StreamReset or StreamClosed, as py-libp2p maps it
                await stream.write(b"z" * HUGE)
            out_bytes = record.traffic.out_bytes
            intro.detach()
    assert taken["bytes"] >= TAKEN
    assert out_bytes >= taken["bytes"], (
        f"the peer read {taken['bytes']} bytes of the stream; it counts {out_bytes} out"
    )


@pytest.mark.xfail(strict=True, reason="known: a write is counted when it returns; one cancelled midway counts nothing")
async def test_a_huge_write_cancelled_midway_counts_the_payload_that_went_out() -> None:
    # The node gives up on a write (a cancel scope: trio.move_on_after, a nursery
    # cancelled) once the peer has read 100,000 bytes of it and stopped: those bytes
    # crossed the wire on this stream, and none is counted.
    taken = {"bytes": 0}
    release = trio.Event()
    writer = trio.CancelScope()

    async def take_then_stall(stream: Any) -> None:
        while taken["bytes"] < TAKEN:
            taken["bytes"] += len(await stream.read(65_536))
        writer.cancel()  # the node gives up at once: no poll lets the write run on
        await release.wait()
        await stream.reset()

    with trio.fail_after(30):
        async with running_hosts(2) as (us, peer):
            peer.set_stream_handler(PROTOCOL, take_then_stall)
            intro = HostIntrospector(us)
            await connect(us, peer)
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            record = intro._registry.stream_record(stream)
            assert record is not None
            with writer:
                await stream.write(b"w" * HUGE)
            assert writer.cancelled_caught  # cut midway, not finished
            out_bytes = record.traffic.out_bytes
            release.set()
            intro.detach()
    assert out_bytes >= taken["bytes"], (
        f"the peer read {taken['bytes']} bytes of the stream; it counts {out_bytes} out"
    )


@pytest.mark.parametrize(
    "host_kwargs",
    [
        # A packet is one NetStream.write() (HostIntrospector's doc): yamux sends no
        # frame for b"" but the call is still a packet, by that definition.
        pytest.param(
            {}, id="yamux",
            marks=pytest.mark.xfail(strict=True, reason="a packet is one write() call"),
        ),
        pytest.param({"muxer_preference": "MPLEX"}, id="mplex"),
    ],
)
async def test_a_zero_length_write_that_sends_nothing_is_no_packet(
    host_kwargs: dict[str, Any],
) -> None:
    # stream.write(b"") over yamux sends no frame at all (its loop over the data never
    # runs): nothing crosses the connection, whose exact counts do not move, yet the
    # stream counts one more packet out. (Over mplex an empty message frame does go
    # out, and the packet is real.) A read that returns nothing is no packet; a write
    # that sends nothing should not be one either.
    with trio.fail_after(30):
        async with running_hosts(2, **host_kwargs) as (us, peer):
            peer.set_stream_handler(PROTOCOL, _sink)
            intro = HostIntrospector(us)
            await connect(us, peer)
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            record = intro._registry.stream_record(stream)
            assert record is not None
            await stream.write(b"one")
            conn_before = record.conn.traffic.out_packets
            stream_before = record.traffic.out_packets
            await stream.write(b"")
            conn_sent = record.conn.traffic.out_packets - conn_before
            stream_counted = record.traffic.out_packets - stream_before
            await stream.close()
            intro.detach()
    assert stream_counted <= conn_sent, (
        f"write(b'') put {conn_sent} packets on the connection; the stream counts {stream_counted}"
    )


@pytest.mark.xfail(strict=True, reason="known: a stream's hooks go once its end is reported; data read after that is not counted")
async def test_payload_that_arrived_before_the_stream_ended_is_counted_when_read() -> None:
    # Both sides half-close (a request, then a 5,000-byte answer and the peer's FIN):
    # on the wire the stream is over, and the introspector ends it at once, while the
    # answer still waits, whole, in yamux's buffer. A snapshot is taken (the server's
    # clock takes one every interval), and the node then reads its 5,000 bytes. They
    # crossed the wire on that stream before it ended, and the node read them: yet the
    # stream was last reported with 0 bytes in, and its protocol's totals (the sum of
    # each stream's last reported value) never see them.
    answer = 5_000

    async def answer_after_request(stream: Any) -> None:
        with contextlib.suppress(StreamError):
            while await stream.read(65_536):
                pass  # the request, up to our FIN
        await stream.write(b"a" * answer)
        await stream.close()

    with trio.fail_after(30):
        async with running_hosts(2) as (us, peer):
            peer.set_stream_handler(PROTOCOL, answer_after_request)
            intro = HostIntrospector(us)
            await connect(us, peer)
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            record = intro._registry.stream_record(stream)
            assert record is not None
            await stream.write(b"request")
            await stream.close_write()
            await wait_until(lambda: record.status != pb.ACTIVE)  # ended on the wire
            intro.state()  # a snapshot in between
            read = 0
            with contextlib.suppress(StreamError):
                while chunk := await stream.read(65_536):
                    read += len(chunk)
            state = intro.state()
            intro.detach()
    assert read == answer
    (stats,) = [p for p in state.protocols if p.protocol == PROTOCOL]
    assert stats.traffic.traffic_in.cum_bytes == answer, (
        f"the node read {read} bytes of the stream's payload; its protocol counts "
        f"{stats.traffic.traffic_in.cum_bytes} in"
    )


class Tap:
    """Under a RawConnection, from its first byte: what crossed its socket (bytes,
    and the calls that moved them: ``[in_bytes, in_calls, out_bytes, out_calls]``)."""

    def __init__(self, socket_stream: Any) -> None:
        self.socket_stream = socket_stream
        self.seen = [0, 0, 0, 0]

    async def read(self, n: int | None = None) -> bytes:
        data = await self.socket_stream.read(n)
        if data:
            self.seen[0] += len(data)
            self.seen[1] += 1
        return data

    async def write(self, data: bytes) -> None:
        await self.socket_stream.write(data)
        self.seen[2] += len(data)
        self.seen[3] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.socket_stream, name)


@pytest.mark.xfail(strict=True, reason="known: the read py-libp2p's reader had already begun at attach is not counted")
async def test_a_connection_adopted_at_attach_counts_every_byte_after_attach() -> None:
    # A connection made before the introspector attached: py-libp2p's reader is
    # already parked in RawConnection.read (the next Noise length prefix) when the
    # introspector hooks the connection, and that call, in the class's frame, is
    # never counted although its bytes arrive after attach. Every connection adopted
    # at attach (or at a re-attach) misses its first read: 2 bytes, 1 packet in.
    with trio.fail_after(30):
        async with running_hosts(2) as (us, peer):

            async def echo(stream: Any) -> None:
                with contextlib.suppress(StreamError):
                    while data := await stream.read(65_536):
                        await stream.write(data)

            peer.set_stream_handler(PROTOCOL, echo)
            upgrader = us.get_network().upgrader
            secure = upgrader.upgrade_security
            taps: list[Tap] = []

            async def tapped(raw_conn: Any, *args: Any, **kwargs: Any) -> Any:
                taps.append(Tap(raw_conn.stream))
                raw_conn.stream = taps[-1]
                return await secure(raw_conn, *args, **kwargs)

            upgrader.upgrade_security = tapped
            await connect(us, peer)
            upgrader.upgrade_security = secure
            (tap,) = taps
            await trio.testing.wait_all_tasks_blocked()  # the reader parked in read()
            at_attach = list(tap.seen)
            intro = HostIntrospector(us)
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            for _ in range(5):
                await stream.write(b"e" * 1_000)
                got = 0
                while got < 1_000:
                    got += len(await stream.read(65_536))
            await stream.close()
            state = intro.state()
            wire = [now - then for now, then in zip(tap.seen, at_attach, strict=True)]
            intro.detach()
    (counted,) = [c for c in state.subsystems.connections if c.peer_id == peer.get_id().to_base58()]
    inbound, outbound = counted.traffic.traffic_in, counted.traffic.traffic_out
    assert [
        inbound.cum_bytes,
        inbound.cum_packets,
        outbound.cum_bytes,
        outbound.cum_packets,
    ] == wire


PSK = "ab" * 32


@pytest.mark.xfail(strict=True, reason="known: a PskConn is counted at its own read/write, not at the socket (its 8-byte nonce is missed)")
async def test_a_private_network_connection_counts_every_byte_of_its_socket() -> None:
    # py-libp2p's own RawConnection subclass: with new_host(psk=...), the swarm hands
    # the upgrader a PskConn (pnet) around the TCP RawConnection. Its read/write are
    # not the checked bodies, so the introspector wraps them, counting len(data) of
    # each call: the 8-byte Salsa20 nonce PskConn writes (and reads) first, in its own
    # socket write, is never counted, nor its packet; the connection's counts are not
    # what crossed its socket.
    with trio.fail_after(30):
        async with running_hosts(2, psk=PSK) as (us, peer):
            peer.set_stream_handler(PROTOCOL, _sink)
            intro = HostIntrospector(us)
            upgrader = us.get_network().upgrader
            secure = upgrader.upgrade_security  # the introspector's hook
            taps: list[Tap] = []

            async def tapped(raw_conn: Any, *args: Any, **kwargs: Any) -> Any:
                inner = raw_conn._conn  # PskConn's RawConnection, over the TCP stream
                taps.append(Tap(inner.stream))
                inner.stream = taps[-1]
                return await secure(raw_conn, *args, **kwargs)

            upgrader.upgrade_security = tapped
            await connect(us, peer)
            upgrader.upgrade_security = secure
            (tap,) = taps
            stream = await us.new_stream(peer.get_id(), [PROTOCOL])
            await stream.write(b"p" * 1_000)
            await stream.close()
            state = intro.state()
            wire = list(tap.seen)
            intro.detach()
    (counted,) = [c for c in state.subsystems.connections if c.peer_id == peer.get_id().to_base58()]
    inbound, outbound = counted.traffic.traffic_in, counted.traffic.traffic_out
    assert [
        inbound.cum_bytes,
        inbound.cum_packets,
        outbound.cum_bytes,
        outbound.cum_packets,
    ] == wire
