"""Counting a raw connection, and watching a security session's writes for failures, in
py-libp2p's own frames: exact counts and failures, py-libp2p's behaviour, no extra
coroutine frame, and the wrappers wherever the checked bodies are not there.

A py-libp2p ``RawConnection``'s ``read``/``write`` run on every read and write of every
connection (py-libp2p's Noise reads the length and the body of each message through
them). The introspector used to wrap them (one more coroutine frame per call, the
biggest share of its cost in a bulk transfer); where the connection's class still has
the bodies it was checked against, it now runs those bodies itself with the count added.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import pytest
import trio
from introspector_harness import connect, connections_to, running_hosts
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.io.exceptions import ConnectionClosedError, IOException
from libp2p.network.connection.exceptions import RawConnError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.security.secure_session import SecureSession

from libp2p_introspection.introspector import HostIntrospector, endings, traffic
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.patching import InstancePatcher

#: Both builds of the counter: the C one where built, and the pure-Python fallback.
COUNTERS = [
    pytest.param(traffic.TrafficCounter, id="built"),
    pytest.param(traffic._CounterFields, id="pure-python"),
]


class Transport:
    """The stream under a RawConnection (py-libp2p's ``ReadWriteCloser``), in memory:
    ``read(n)`` returns the next queued chunk (at most ``n`` bytes) or raises the next
    queued exception; ``write`` keeps the data (or raises ``fail_write``). Each call
    records how many frames stand between it and :func:`_drive`."""

    def __init__(self, chunks: list[bytes | BaseException] | None = None) -> None:
        self.chunks = list(chunks or [])
        self.written: list[bytes] = []
        self.fail_write: BaseException | None = None
        self.depths: list[int] = []

    async def read(self, n: int | None = None) -> bytes:
        self.depths.append(_depth())
        await trio.lowlevel.checkpoint()
        chunk = self.chunks.pop(0) if self.chunks else b""
        if isinstance(chunk, BaseException):
            raise chunk
        return chunk if n is None else chunk[:n]

    async def write(self, data: bytes) -> None:
        self.depths.append(_depth())
        await trio.lowlevel.checkpoint()
        if self.fail_write is not None:
            raise self.fail_write
        self.written.append(bytes(data))

    async def close(self) -> None:
        pass


async def _drive(call: Any) -> Any:
    """Await ``call()``: the frame :func:`_depth` counts from."""
    return await call()


def _depth() -> int:
    """Frames between the caller of Transport.read/write and :func:`_drive` (-1: not
    under it)."""
    frame = sys._getframe(2)
    depth = 0
    while frame is not None and frame.f_code is not _drive.__code__:
        depth += 1
        frame = frame.f_back
    return depth if frame is not None else -1


@pytest.mark.parametrize("make_counter", COUNTERS)
async def test_counting_a_raw_connection_adds_no_coroutine_frame(make_counter: Any) -> None:
    # What the node pays per read and write: as many frames as without introspection.
    transport = Transport([b"abc", b"defg"])
    raw = RawConnection(transport, initiator=True)
    await _drive(lambda: raw.read(3))
    await _drive(lambda: raw.write(b"xy"))
    plain_read, plain_write = transport.depths

    counter = make_counter()
    assert traffic.install_counters(InstancePatcher(), raw, counter)
    transport.depths.clear()
    assert await _drive(lambda: raw.read(10)) == b"defg"
    await _drive(lambda: raw.write(b"hello"))
    assert transport.depths == [plain_read, plain_write]
    assert transport.written == [b"xy", b"hello"]
    assert (counter.in_bytes, counter.in_packets, counter.out_bytes, counter.out_packets) == (
        4, 1, 5, 1,
    )  # fmt: skip


def _failing(kind: str) -> Transport:
    error: BaseException = {
        "closed": ConnectionClosedError("closed by the peer"),
        "io": IOException("socket gone"),
        "reset": ConnectionResetError("reset"),
        "cancelled-like": KeyboardInterrupt(),
    }[kind]
    transport = Transport([error])
    transport.fail_write = error
    return transport


async def _outcome(call: Any) -> tuple[type, type | None]:
    try:
        await call()
    except BaseException as exc:  # what the node's caller would see
        cause = exc.__cause__
        return type(exc), None if cause is None else type(cause)
    return type(None), None


@pytest.mark.parametrize("kind", ["closed", "io", "reset", "cancelled-like"])
@pytest.mark.parametrize("make_counter", COUNTERS)
async def test_a_failing_transport_raises_what_py_libp2p_raises_and_counts_nothing(
    kind: str, make_counter: Any
) -> None:
    plain = RawConnection(_failing(kind), initiator=False)
    expected = [await _outcome(lambda: plain.read(5)), await _outcome(lambda: plain.write(b"z"))]

    counted = RawConnection(_failing(kind), initiator=False)
    counter = make_counter()
    assert traffic.install_counters(InstancePatcher(), counted, counter)
    seen = [await _outcome(lambda: counted.read(5)), await _outcome(lambda: counted.write(b"z"))]
    assert seen == expected
    if kind in ("io", "reset"):
        assert expected[0] == (RawConnError, IOException if kind == "io" else ConnectionResetError)
    assert (counter.in_bytes, counter.in_packets, counter.out_bytes, counter.out_packets) == (
        0, 0, 0, 0,
    )  # fmt: skip


async def test_eof_is_not_a_packet_and_detach_restores_the_class_methods() -> None:
    raw = RawConnection(Transport([b"", b"12345"]), initiator=True)
    counter = traffic.TrafficCounter()
    patcher = InstancePatcher()
    assert traffic.install_counters(patcher, raw, counter)
    assert not traffic.install_counters(patcher, raw, counter)  # installed once
    assert await raw.read(8) == b""
    assert await raw.read() == b"12345"
    assert (counter.in_bytes, counter.in_packets) == (5, 1)
    patcher.restore_all()
    assert "read" not in vars(raw) and "write" not in vars(raw)
    assert raw.read.__func__ is RawConnection.read
    assert raw.write.__func__ is RawConnection.write


class OtherRawConnection(RawConnection):
    """A raw connection whose read is not the body the introspector checked (another
    py-libp2p version, a subclass): it must be wrapped, and its own read must run."""

    async def read(self, n: int | None = None) -> bytes:
        data = await super().read(n)
        return data.upper()


async def _counts_through_a_wrapper(raw: Any, counter: Any) -> None:
    transport = raw.stream
    await _drive(lambda: raw.read(4))
    await _drive(lambda: raw.write(b"ab"))
    plain = list(transport.depths)
    assert traffic.install_counters(InstancePatcher(), raw, counter)
    transport.depths.clear()
    await _drive(lambda: raw.read(4))
    await _drive(lambda: raw.write(b"abc"))
    assert transport.depths == [depth + 1 for depth in plain]  # one wrapper frame each
    assert (counter.in_bytes, counter.in_packets, counter.out_bytes, counter.out_packets) == (
        4, 1, 3, 1,
    )  # fmt: skip


async def test_a_raw_connection_of_another_body_is_wrapped_and_still_counted() -> None:
    raw = OtherRawConnection(Transport([b"wxyz", b"data"]), initiator=True)
    counter = traffic.TrafficCounter()
    await _counts_through_a_wrapper(raw, counter)
    assert await raw.read(10) == b""  # its own read ran (and EOF is no packet)
    assert counter.in_packets == 1


async def test_a_method_replaced_on_the_instance_is_wrapped_not_skipped() -> None:
    raw = RawConnection(Transport([b"wxyz", b"data"]), initiator=True)
    calls: list[int | None] = []
    original = raw.read

    async def read(n: int | None = None) -> bytes:
        calls.append(n)
        return await original(n)

    raw.read = read  # type: ignore[method-assign]  # someone else's hook, installed first
    await _counts_through_a_wrapper(raw, traffic.TrafficCounter())
    assert calls == [4, 4]


async def test_a_changed_py_libp2p_body_falls_back_to_the_wrappers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What another py-libp2p version looks like to the check: RawConnection.read's
    # source no longer has the digest the introspector was checked against.
    monkeypatch.setattr(tp, "RAW_READ", dataclasses.replace(tp.RAW_READ, body="0" * 16))
    raw = RawConnection(Transport([b"wxyz", b"data"]), initiator=True)
    await _counts_through_a_wrapper(raw, traffic.TrafficCounter())


def test_the_checked_bodies_are_the_installed_ones_and_a_change_is_reported() -> None:
    assert tp.RAW_READ.present() == [] and tp.RAW_WRITE.present() == []
    raw = RawConnection(Transport(), initiator=True)
    assert tp.RAW_READ.runs_checked_body(raw) and tp.RAW_WRITE.runs_checked_body(raw)
    assert not tp.RAW_READ.runs_checked_body(OtherRawConnection(Transport(), initiator=True))
    assert tp.RAW_WRITE.runs_checked_body(OtherRawConnection(Transport(), initiator=True))
    assert not tp.SECURED_READ.runs_checked_body(raw)  # no body checked for that entry
    changed = dataclasses.replace(tp.RAW_WRITE, body="0" * 16)
    assert changed.present() == ["RawConnection"]
    assert not changed.runs_checked_body(raw)
    assert tp.body_digest(len) is None  # no source: never taken for the checked body


async def test_a_live_connection_counts_exactly_the_bytes_that_crossed_its_socket() -> None:
    # The counted connection of a real transfer (Noise over TCP, yamux), against what
    # passed through the TrioTCPStream under its RawConnection.
    with trio.fail_after(30):
        async with running_hosts(2) as (sender, receiver):
            intro = HostIntrospector(sender)
            seen = {"in": 0, "out": 0, "reads": 0, "writes": 0}
            done = trio.Event()

            async def sink(stream: Any) -> None:
                total = 0
                while total < 300_000:
                    total += len(await stream.read(65_536))
                await stream.write(b"k")
                done.set()

            receiver.set_stream_handler("/test/inline/1.0.0", sink)

            class Tap:
                """Under the RawConnection, from its first byte: what crossed the socket."""

                def __init__(self, socket_stream: Any) -> None:
                    self.socket_stream = socket_stream

                async def read(self, n: int | None = None) -> bytes:
                    data = await self.socket_stream.read(n)
                    if data:
                        seen["in"] += len(data)
                        seen["reads"] += 1
                    return data

                async def write(self, data: bytes) -> None:
                    await self.socket_stream.write(data)
                    seen["out"] += len(data)
                    seen["writes"] += 1

                def __getattr__(self, name: str) -> Any:
                    return getattr(self.socket_stream, name)

            upgrader = sender.get_network().upgrader
            secure = upgrader.upgrade_security  # the introspector's hook

            async def tapped(raw_conn: Any, *args: Any, **kwargs: Any) -> Any:
                raw_conn.stream = Tap(raw_conn.stream)
                return await secure(raw_conn, *args, **kwargs)

            upgrader.upgrade_security = tapped
            await connect(sender, receiver)
            (conn,) = sender.get_network().get_connections(receiver.get_id())
            raw = tp.find_in_graph(conn.muxed_conn, lambda o: isinstance(o, RawConnection))
            assert raw is not None and isinstance(raw.stream, Tap) and "read" in vars(raw)
            stream = await sender.new_stream(receiver.get_id(), ["/test/inline/1.0.0"])
            for _ in range(30):
                await stream.write(b"q" * 10_000)
            assert await stream.read(1) == b"k"
            await done.wait()
            (counted,) = connections_to(intro.state(), receiver.get_id().to_base58())
            inbound, outbound = counted.traffic.traffic_in, counted.traffic.traffic_out
            assert (inbound.cum_bytes, inbound.cum_packets) == (seen["in"], seen["reads"])
            assert (outbound.cum_bytes, outbound.cum_packets) == (seen["out"], seen["writes"])
            assert seen["out"] > 300_000
            upgrader.upgrade_security = secure
            intro.detach()
            assert "read" not in vars(raw) and "write" not in vars(raw)


class Messages:
    """The Noise reader/writer under a SecureSession, in memory: keeps what is written
    (or raises ``fail``), recording the frames between each write and :func:`_drive`."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.fail: BaseException | None = None
        self.depths: list[int] = []

    async def write_msg(self, msg: bytes) -> None:
        self.depths.append(_depth())
        await trio.lowlevel.checkpoint()
        if self.fail is not None:
            raise self.fail
        self.sent.append(bytes(msg))

    async def read_msg(self) -> bytes:
        await trio.lowlevel.checkpoint()
        return b""

    async def close(self) -> None:
        pass


class OtherSecureSession(SecureSession):
    """A session whose write is not the checked body: it is wrapped, and still runs."""

    async def write(self, data: bytes) -> None:
        await super().write(data + b"!")


def _session(conn: Messages, cls: type = SecureSession) -> Any:
    ours, theirs = create_new_key_pair(), create_new_key_pair()
    return cls(
        local_peer=ID.from_pubkey(ours.public_key),
        local_private_key=ours.private_key,
        remote_peer=ID.from_pubkey(theirs.public_key),
        remote_permanent_pubkey=theirs.public_key,
        is_initiator=True,
        conn=conn,
    )


@pytest.mark.parametrize("cls", [SecureSession, OtherSecureSession])
async def test_a_secure_session_write_failure_is_seen_and_raised(cls: type) -> None:
    # The failure hook on a security session's write sees what py-libp2p raises and
    # raises it on unchanged; on py-libp2p's own SecureSession it adds no frame.
    conn = Messages()
    session = _session(conn, cls)
    await _drive(lambda: session.write(b"a"))
    (plain,) = conn.depths
    seen: list[BaseException] = []
    patcher = InstancePatcher()
    endings.hook_failures(patcher, session, seen.append)
    await _drive(lambda: session.write(b"b"))
    assert conn.depths[-1] == (plain if cls is SecureSession else plain + 1)
    failure = ConnectionClosedError("broken pipe")
    conn.fail = failure
    with pytest.raises(ConnectionClosedError) as raised:
        await session.write(b"c")
    assert raised.value is failure and seen == [failure]
    suffix = b"" if cls is SecureSession else b"!"
    assert conn.sent == [b"a" + suffix, b"b" + suffix]
    patcher.restore_all()
    assert "write" not in vars(session) and "read" not in vars(session)
