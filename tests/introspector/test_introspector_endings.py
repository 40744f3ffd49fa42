"""How streams and connections end, through real py-libp2p hosts on yamux and on mplex.

py-libp2p 0.8.1 does not notify every ending (a stream reset by the remote
stays "open" for py-libp2p until local code touches it): these tests check
that the introspector's view follows what happened on the wire.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import struct
from typing import Any

import pytest
import trio
from event_checks import check_events
from introspector_harness import (
    EventLog,
    FakeClock,
    connect,
    connections_to,
    running_hosts,
    streams_with,
    wait_until,
)
from libp2p.host.exceptions import StreamFailure
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.utils import encode_uvarint
from libp2p.utils.varint import encode_delim

from libp2p_introspection.introspector import HostIntrospector, conninfo, endings, touchpoints
from libp2p_introspection.protocol import pb

PROTOCOL = "/test/endings/1.0.0"
LIFETIME_MS = 5_000

MUXERS = [
    pytest.param({}, id="yamux"),
    pytest.param({"muxer_preference": "MPLEX"}, id="mplex"),
]


def closed_events(log: EventLog, protocol: str = PROTOCOL) -> list[dict[str, Any]]:
    return [e for e in log.named("StreamClosed") if e["protocol"] == protocol]


def introspect(host: Any, clock: FakeClock) -> tuple[HostIntrospector, EventLog]:
    intro = HostIntrospector(host, closed_connection_lifetime_ms=LIFETIME_MS, clock_ms=clock)
    log = EventLog()
    intro.set_event_sink(log)
    return intro, log


class HeldStreams:
    """A handler that takes each stream and does nothing with it until released."""

    def __init__(self) -> None:
        self.streams: list[Any] = []
        self.arrived = trio.Event()
        self.release = trio.Event()
        self.done = trio.Event()

    async def __call__(self, stream: Any) -> None:
        self.streams.append(stream)
        self.arrived.set()
        await self.release.wait()
        with contextlib.suppress(Exception):
            await stream.read(1)
        self.done.set()


async def read_to_eof(stream: Any) -> bytes:
    data = b""
    for _ in range(1_000):
        try:
            chunk = await stream.read(1_024)
        except StreamEOF:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError("no EOF after 1,000 reads")


def socket_of(conn: Any) -> Any:
    """The trio socket under a ``SwarmConn``."""
    raw = conninfo.raw_connection_of(conn)
    sock_stream = touchpoints.find_in_graph(raw, lambda o: isinstance(o, trio.SocketStream), 3)
    assert sock_stream is not None
    return sock_stream.socket


# ------------------------------------------------------------------ streams


@pytest.mark.parametrize("muxer", MUXERS)
async def test_stream_reset_by_remote_is_error_once_then_gone(muxer: dict[str, Any]) -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2, **muxer) as (h1, h2):
            i1, log1 = introspect(h1, clock)
            i2, log2 = introspect(h2, clock)
            held = HeldStreams()
            h1.set_stream_handler(PROTOCOL, held)
            await connect(h2, h1)
            stream = await h2.new_stream(h1.get_id(), [PROTOCOL])
            await stream.write(b"x")
            await held.arrived.wait()
            reset_at = clock.advance(10)
            await stream.reset()

            # The handler never touches its stream: the event still comes, at once.
            await wait_until(lambda: bool(closed_events(log1)))
            (event,) = closed_events(log1)
            assert (event["status"], event["reason"]) == ("ERROR", "reset by remote")
            assert event["closeTs"] == reset_at and event["bytesIn"] == 0  # never read
            # py-libp2p itself has not noticed: the stream is open and listed.
            (net_stream,) = held.streams
            assert not net_stream.is_closed
            assert net_stream in net_stream.swarm_conn.get_streams()
            (s,) = streams_with(i1.state(), PROTOCOL)
            assert s.status == pb.ERROR and s.timeline.close_ts == reset_at
            # Shown once more, then gone, though py-libp2p still lists it.
            assert streams_with(i1.state(), PROTOCOL) == []
            assert net_stream in net_stream.swarm_conn.get_streams()

            (ours,) = closed_events(log2)
            assert (ours["status"], ours["reason"]) == ("ERROR", "reset locally")
            assert ours["bytesOut"] == 1
            (s2,) = streams_with(i2.state(), PROTOCOL)
            assert s2.status == pb.ERROR
            assert streams_with(i2.state(), PROTOCOL) == []

            # When the handler finally reads (StreamReset) and returns: no second event.
            held.release.set()
            await held.done.wait()
            await wait_until(lambda: net_stream not in net_stream.swarm_conn.get_streams())
            assert len(closed_events(log1)) == 1
            assert streams_with(i1.state(), PROTOCOL) == []
            for intro, log in ((i1, log1), (i2, log2)):
                check_events(intro.runtime(), log.events)
                intro.state()  # snapshots still build
            i1.detach()
            i2.detach()


@pytest.mark.parametrize("muxer", MUXERS)
async def test_half_closes_on_both_sides_are_closed(muxer: dict[str, Any]) -> None:
    """Remote FIN, local EOF, then the other way: CLOSED, also for the side that
    never calls ``close()`` (py-libp2p keeps listing that stream)."""
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2, **muxer) as (h1, h2):
            i1, log1 = introspect(h1, clock)
            i2, log2 = introspect(h2, clock)
            eof_seen, go = trio.Event(), trio.Event()

            async def reverse(stream: Any) -> None:
                request = await read_to_eof(stream)
                eof_seen.set()
                await go.wait()
                await stream.write(request[::-1])
                await stream.close_write()

            h1.set_stream_handler(PROTOCOL, reverse)
            await connect(h2, h1)
            stream = await h2.new_stream(h1.get_id(), [PROTOCOL])
            await stream.write(b"abc")
            await stream.close_write()
            await eof_seen.wait()
            # Half-closed is not ended: the reply can still flow.
            for intro in (i1, i2):
                (s,) = streams_with(intro.state(), PROTOCOL)
                assert s.status == pb.ACTIVE
            assert closed_events(log1) == closed_events(log2) == []

            go.set()
            assert await read_to_eof(stream) == b"cba"
            await wait_until(lambda: bool(closed_events(log1) and closed_events(log2)))
            for log in (log1, log2):
                (event,) = closed_events(log)
                assert (event["status"], event["reason"]) == ("CLOSED", "closed")
            # h2 never called close(): py-libp2p still lists the stream, never notified.
            assert stream in stream.swarm_conn.get_streams()
            for intro in (i1, i2):
                (s,) = streams_with(intro.state(), PROTOCOL)
                assert s.status == pb.CLOSED and s.timeline.close_ts == clock.now
                assert streams_with(intro.state(), PROTOCOL) == []
            assert len(closed_events(log2)) == 1
            i1.detach()
            i2.detach()


@pytest.mark.parametrize("muxer", MUXERS)
async def test_stream_that_never_negotiated_a_protocol(muxer: dict[str, Any]) -> None:
    """The remote has no handler: py-libp2p resets the stream on both sides; it is
    shown with protocol "" and ends ERROR, without a StreamOpened."""
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2, **muxer) as (h1, h2):
            i1, log1 = introspect(h1, clock)
            i2, log2 = introspect(h2, clock)
            await connect(h2, h1)
            with pytest.raises(StreamFailure):
                await h2.new_stream(h1.get_id(), [PROTOCOL])
            await wait_until(lambda: bool(closed_events(log1, "") and closed_events(log2, "")))
            for log, reason in ((log1, "reset by remote"), (log2, "reset locally")):
                (event,) = closed_events(log, "")
                assert (event["status"], event["reason"]) == ("ERROR", reason)
                opened = {e["streamId"] for e in log.named("StreamOpened")}
                assert event["streamId"] not in opened
            for intro in (i1, i2):
                (s,) = streams_with(intro.state(), "")
                assert s.status == pb.ERROR
                assert streams_with(intro.state(), "") == []
                check_events(intro.runtime(), (log1 if intro is i1 else log2).events)
            i1.detach()
            i2.detach()


# -------------------------------------------------------------- connections


@pytest.mark.parametrize("muxer", MUXERS)
async def test_connection_closed_by_remote_with_a_stream_open(muxer: dict[str, Any]) -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2, **muxer) as (h1, h2):
            i1, log1 = introspect(h1, clock)
            i2, log2 = introspect(h2, clock)
            held = HeldStreams()
            h1.set_stream_handler(PROTOCOL, held)
            await connect(h2, h1)
            stream = await h2.new_stream(h1.get_id(), [PROTOCOL])
            await stream.write(b"x")
            await held.arrived.wait()
            await h2.disconnect(h1.get_id())
            await wait_until(
                lambda: bool(log1.named("ConnectionClosed") and log2.named("ConnectionClosed"))
            )
            for log, reason in ((log1, "closed by remote"), (log2, "closed locally")):
                (closed,) = log.named("ConnectionClosed")
                assert (closed["status"], closed["reason"]) == ("CLOSED", reason)
                (cut,) = closed_events(log)
                assert (cut["status"], cut["reason"]) == ("ERROR", "connection closed")
            for intro, peer in ((i1, h2), (i2, h1)):
                (c,) = connections_to(intro.state(), peer.get_id().to_base58())
                assert c.status == pb.CLOSED
                assert [s.status for s in c.streams.streams if s.protocol == PROTOCOL] == [pb.ERROR]
            held.release.set()
            check_events(i1.runtime(), log1.events)
            i1.detach()
            i2.detach()


@pytest.mark.parametrize("muxer", MUXERS)
async def test_tcp_reset_is_error_retained_like_closed(muxer: dict[str, Any]) -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2, **muxer) as (h1, h2):
            i1, log1 = introspect(h1, clock)
            held = HeldStreams()
            h1.set_stream_handler(PROTOCOL, held)
            await connect(h2, h1)
            stream = await h2.new_stream(h1.get_id(), [PROTOCOL])
            await stream.write(b"x")
            await held.arrived.wait()
            closed_at = clock.advance(10)
            # The remote aborts: its kernel answers with a TCP RST.
            sock = socket_of(h2.get_network().get_connections()[0])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

            await wait_until(lambda: bool(log1.named("ConnectionClosed")))
            (closed,) = log1.named("ConnectionClosed")
            assert closed["status"] == "ERROR"
            assert "reset" in closed["reason"].lower() or "pipe" in closed["reason"].lower()
            (cut,) = closed_events(log1)
            assert (cut["status"], cut["reason"]) == ("ERROR", "connection error")
            peer = h2.get_id().to_base58()
            (c,) = connections_to(i1.state(), peer)
            assert c.status == pb.ERROR and c.timeline.close_ts == closed_at
            # Retained like a CLOSED connection: for the lifetime, then gone.
            clock.advance(LIFETIME_MS - 1)
            (c,) = connections_to(i1.state(), peer)
            assert c.status == pb.ERROR and list(c.streams.streams) == []
            clock.advance(1)
            assert connections_to(i1.state(), peer) == []
            held.release.set()
            check_events(i1.runtime(), log1.events)
            i1.detach()


async def test_security_failure_is_error() -> None:
    """Bytes that are not a Noise frame of this session: the secured read fails.

    yamux only: py-libp2p 0.8.1's mplex lets the decryption error escape its
    read loop, which takes the whole host down (with or without introspection).
    """
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            i1, log1 = introspect(h1, FakeClock())
            await connect(h2, h1)
            raw = conninfo.raw_connection_of(h2.get_network().get_connections()[0])
            await raw.write(b"\x00\x20" + b"\xa5" * 32)  # a 32-byte "ciphertext"
            await wait_until(lambda: bool(log1.named("ConnectionClosed")))
            (closed,) = log1.named("ConnectionClosed")
            assert closed["status"] == "ERROR" and closed["reason"]
            (c,) = connections_to(i1.state(), h2.get_id().to_base58())
            assert c.status == pb.ERROR
            i1.detach()


async def test_mplex_framing_error_is_error() -> None:
    with trio.fail_after(30):
        async with running_hosts(2, muxer_preference="MPLEX") as (h1, h2):
            i1, log1 = introspect(h1, FakeClock())
            await connect(h2, h1)
            secured = h2.get_network().get_connections()[0].muxed_conn.secured_conn
            # A message header (channel 0, MessageInitiator) announcing 2 MiB: over mplex's 1 MiB.
            await secured.write(encode_uvarint(2) + encode_uvarint(2 << 20))
            await wait_until(lambda: bool(log1.named("ConnectionClosed")))
            (closed,) = log1.named("ConnectionClosed")
            assert closed["status"] == "ERROR"
            assert closed["reason"].startswith("MessageTooLarge")
            i1.detach()


# ------------------------------------------------- a hostile remote, and faults


def _negotiation_bytes() -> bytes:
    return encode_delim(b"/multistream/1.0.0") + encode_delim(PROTOCOL.encode())


async def _echo(stream: Any) -> None:
    with contextlib.suppress(Exception):
        data = await stream.read(64)
        await stream.write(data)
        await stream.close()


async def _hostile_resets(h1: Any, h2: Any) -> int:
    """h2 opens streams to h1 and resets each after a longer prefix of the
    multistream negotiation (every cut point, then once after the reply).
    Returns how many streams it opened."""
    full = _negotiation_bytes()
    opened = 0
    for cut in range(len(full) + 2):
        stream = await h2.get_network().new_stream(h1.get_id())
        opened += 1
        if cut:
            await stream.write(full[:cut])
        if cut == len(full) + 1:
            await stream.read(len(full))  # the reply: negotiated, then reset
        for _ in range(cut % 3):
            await trio.sleep(0)  # vary where h1 is when the reset lands
        await stream.reset()
    return opened


async def _still_serves(h1: Any, h2: Any) -> None:
    stream = await h2.new_stream(h1.get_id(), [PROTOCOL])
    await stream.write(b"ping")
    assert await stream.read(4) == b"ping"
    await stream.close()


@pytest.mark.parametrize("muxer", MUXERS)
async def test_hostile_resets_during_negotiation(
    muxer: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    caplog.set_level(logging.WARNING, logger="libp2p_introspection")
    with trio.fail_after(60):
        async with running_hosts(2, **muxer) as (h1, h2):
            i1, log1 = introspect(h1, clock)
            h1.set_stream_handler(PROTOCOL, _echo)
            await connect(h2, h1)
            (conn,) = connections_to(i1.state(), h2.get_id().to_base58())
            opened = await _hostile_resets(h1, h2)

            def hostile_ended() -> list[dict[str, Any]]:
                return [
                    e
                    for e in log1.named("StreamClosed")
                    if e["protocol"] in ("", PROTOCOL) and e["reason"] == "reset by remote"
                ]

            def none_left() -> bool:
                state = i1.state()
                return not [s for s in streams_with(state, "") if s.status == pb.ACTIVE] + [
                    s for s in streams_with(state, PROTOCOL) if s.status == pb.ACTIVE
                ]

            await wait_until(lambda: len(hostile_ended()) == opened and none_left())
            assert all(e["status"] == "ERROR" for e in hostile_ended())
            # Every one was shown at most once as ERROR: now only the connection remains.
            state = i1.state()
            assert streams_with(state, "") == streams_with(state, PROTOCOL) == []
            (same,) = connections_to(state, h2.get_id().to_base58())
            assert same.id == conn.id and same.status == pb.ACTIVE
            await _still_serves(h1, h2)
            check_events(i1.runtime(), log1.events)
            assert [
                (r.name, r.getMessage())
                for r in caplog.records
                if r.name.startswith("libp2p_introspection")
            ] == []
            i1.detach()


@pytest.mark.parametrize("muxer", MUXERS)
async def test_introspector_faults_never_reach_the_node(
    muxer: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every ending hook fails: py-libp2p sees none of it, the node keeps serving."""

    def broken(*args: Any) -> Any:
        raise RuntimeError("introspector bug")

    caplog.set_level(logging.ERROR, logger="libp2p_introspection")
    with trio.fail_after(60):
        async with running_hosts(2, **muxer) as (h1, h2):
            i1, _ = introspect(h1, FakeClock())
            for host in (h1, h2):
                host.set_stream_handler(PROTOCOL, _echo)
            await connect(h2, h1)
            (conn,) = h1.get_network().get_connections()
            monkeypatch.setattr(endings, "wire_end", broken)
            monkeypatch.setattr(endings, "failure_of", broken)
            monkeypatch.setattr(endings, "muxer_shutting_down", broken)
            await _hostile_resets(h1, h2)
            await _still_serves(h1, h2)
            await _still_serves(h2, h1)
            assert h1.get_network().get_connections() == [conn] and not conn.is_closed
            i1.state()  # snapshots survive too
            assert any("hook failed" in r.getMessage() for r in caplog.records)
            i1.detach()


# --------------------------------------------------------- degraded reading


async def test_missing_hook_degrades_to_snapshot_reading(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without yamux's hook (another py-libp2p), a remote reset is found by the
    next snapshot, from the muxer's state, with a warning logged once."""
    renamed = dataclasses.replace(touchpoints.YAMUX_FINALIZE, name="_gone_in_this_version")
    monkeypatch.setattr(touchpoints, "YAMUX_FINALIZE", renamed)
    caplog.set_level(logging.WARNING, logger="libp2p_introspection")
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            i1, log1 = introspect(h1, clock)
            held = HeldStreams()
            h1.set_stream_handler(PROTOCOL, held)
            await connect(h2, h1)
            stream = await h2.new_stream(h1.get_id(), [PROTOCOL])
            await stream.write(b"x")
            await held.arrived.wait()
            muxed = held.streams[0].muxed_stream
            await stream.reset()
            await wait_until(lambda: muxed.reset_received)
            assert closed_events(log1) == []  # no hook: nothing until a snapshot
            (s,) = streams_with(i1.state(), PROTOCOL)
            assert s.status == pb.ERROR
            (event,) = closed_events(log1)
            assert event["reason"] == "reset by remote"
            warnings = [
                r.getMessage() for r in caplog.records if "_gone_in_this_version" in r.getMessage()
            ]
            assert len(warnings) == 1
            held.release.set()
            i1.detach()
