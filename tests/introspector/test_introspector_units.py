"""Host-free units: instance patching, counters, bandwidth, event building."""

from __future__ import annotations

import gc

import pytest
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.stream_muxer.mplex.exceptions import MplexUnavailable

from libp2p_introspection.introspector import endings
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.traffic import (
    TrafficCounter,
    bandwidth,
    install_counters,
)
from libp2p_introspection.protocol import pb


class FakeConn:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.written: list[bytes] = []
        self.protocol_id: str | None = None

    async def read(self, n: int | None = None) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    async def write(self, data: bytes) -> None:
        self.written.append(data)


def test_patcher_restores_class_and_instance_attributes() -> None:
    patcher = InstancePatcher()
    conn = FakeConn([])
    own = lambda: "own"  # noqa: E731
    conn.own = own  # type: ignore[attr-defined]
    patcher.patch(conn, "read", lambda: "patched")
    patcher.patch(conn, "own", lambda: "patched")
    assert conn.read() == "patched"  # type: ignore[call-arg]
    patcher.unpatch(conn)
    assert "read" not in vars(conn)
    assert conn.own is own  # type: ignore[attr-defined]
    assert len(patcher) == 0


def test_patcher_forgets_dead_objects_and_restores_all() -> None:
    patcher = InstancePatcher()
    alive, dying = FakeConn([]), FakeConn([])
    patcher.patch(alive, "write", lambda d: None)
    patcher.patch(dying, "write", lambda d: None)
    del dying
    gc.collect()
    assert len(patcher) == 1
    patcher.restore_all()
    assert "write" not in vars(alive)


async def test_counting_wrappers_and_protocol_gate() -> None:
    patcher = InstancePatcher()
    conn = FakeConn([b"abc", b"", b"de"])
    counter = TrafficCounter()
    assert install_counters(patcher, conn, counter, negotiated=conn)
    assert not install_counters(patcher, conn, TrafficCounter())  # already wrapped
    assert await conn.read(3) == b"abc"  # before negotiation: not counted
    conn.protocol_id = "/p"
    assert await conn.read() == b""  # EOF: not a packet
    assert await conn.read(2) == b"de"
    await conn.write(b"12345")
    assert (counter.in_bytes, counter.in_packets) == (2, 1)
    assert (counter.out_bytes, counter.out_packets) == (5, 1)
    assert conn.written == [b"12345"]
    patcher.restore_all()
    await conn.write(b"x")
    assert counter.out_bytes == 5


def test_bandwidth_and_gauges() -> None:
    assert bandwidth(1_000, 2_000) == 500
    assert bandwidth(1, 3) == 333
    assert bandwidth(100, 0) == 0
    counter = TrafficCounter()
    counter.in_bytes, counter.in_packets = 3_000, 3
    out = pb.Traffic()
    counter.to_pb(out, 1_000)
    assert out.HasField("traffic_out") and out.traffic_out.cum_bytes == 0
    assert (out.traffic_in.cum_bytes, out.traffic_in.inst_bw) == (3_000, 3_000)
    counter.in_bytes += 500
    counter.to_pb(out, 500)
    assert out.traffic_in.inst_bw == 1_000


def test_target_string_is_base58_for_find_node_and_hex_otherwise() -> None:
    """``targetPeerId``: a FIND_NODE key is a peer id's bytes (base58), any other key hex."""
    from libp2p_introspection.introspector import dht

    assert dht.target_string("GET_PROVIDERS", b"\x12\x20key") == "12206b6579"
    assert dht.target_string("FIND_NODE", b"\x00\x01") == "12"  # base58 of the key's bytes
    assert dht.target_string("GET_VALUE", None) == ""


def test_unknown_objects_have_no_wire_ending() -> None:
    """A muxer the module does not know (QUIC, a stand-in) is left to the notifee."""
    assert endings.wire_end(object()) == (False, False)
    assert endings.wire_end(None) == (False, False)
    assert not endings.stream_failed(FakeConn([]))


def test_failure_of_tells_a_clean_eof_from_a_failure() -> None:
    clean = IncompleteReadError("eof", expected_bytes=12, received_bytes=0)
    assert endings.failure_of(clean) is None
    try:
        try:
            raise clean
        except IncompleteReadError as error:
            raise MplexUnavailable("failed to read the header") from error
    except MplexUnavailable as wrapped:
        assert endings.failure_of(wrapped) is None
    partial = IncompleteReadError("eof inside a frame", expected_bytes=12, received_bytes=5)
    assert endings.failure_of(partial) == "IncompleteReadError: eof inside a frame"
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as error:
            raise ConnectionClosedError("TCP connection reset by remote peer") from error
    except ConnectionClosedError as wrapped:
        assert endings.failure_of(wrapped) == (
            "ConnectionResetError: [Errno 104] Connection reset by peer"
        )
    assert len(endings.failure_of(ValueError("x" * 1_000)) or "") == endings.MAX_REASON_CHARS


async def test_ending_hooks_raise_only_what_the_original_raised() -> None:
    """A failing callback is logged; the caller gets the original's own result or
    exception, and cancellation passes untouched (never seen as a failure)."""
    import trio

    class Conn:
        def __init__(self) -> None:
            self.error: BaseException | None = None
            self.closed = 0

        async def read(self, n: int | None = None) -> bytes:
            if self.error is not None:
                raise self.error
            return b"data"

        async def write(self, data: bytes) -> None:
            await trio.sleep_forever()

        async def close(self) -> str:
            self.closed += 1
            return "closed"

        async def reset(self) -> None:
            raise self.error or RuntimeError("no error set")

    def broken(*args: object) -> None:
        raise RuntimeError("introspector bug")

    seen: list[BaseException] = []
    patcher = InstancePatcher()
    conn = Conn()
    endings.hook_failures(patcher, conn, lambda exc: (seen.append(exc), broken())[1])
    endings.hook_close(patcher, conn, broken)
    endings.hook_stream(patcher, conn, before_reset=broken, after_reset=broken)
    assert await conn.read() == b"data" and seen == []
    assert await conn.close() == "closed" and conn.closed == 1
    original = ConnectionClosedError("reset by peer")
    conn.error = original
    with pytest.raises(ConnectionClosedError) as raised:
        await conn.read(5)
    assert raised.value is original and seen == [original]
    with pytest.raises(ConnectionClosedError) as raised:
        await conn.reset()
    assert raised.value is original
    with trio.CancelScope() as scope:
        scope.cancel()
        await conn.write(b"x")  # cancelled inside the original
    assert scope.cancelled_caught and seen == [original]
    patcher.restore_all()
    assert "read" not in vars(conn) and "reset" not in vars(conn)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0015, 1_500_000), (float("inf"), 0), (float("nan"), 0), (-1.0, 0), (1e30, (1 << 64) - 1)],
)
def test_a_latency_that_is_not_a_sane_number_never_breaks_the_snapshot(seconds, expected):
    """The peerstore's EWMA is py-libp2p's float: an inf or nan (``int()`` raised) or a
    value past uint64 (``latency_ns`` no longer encoded) must give a snapshot that parses."""
    from types import SimpleNamespace

    from libp2p_introspection.introspector.conninfo import latency_ns
    from libp2p_introspection.protocol import pb

    peerstore = SimpleNamespace(latency_EWMA=lambda peer_id: seconds)
    conn = SimpleNamespace(muxed_conn=SimpleNamespace(peer_id="p"))
    got = latency_ns(conn, peerstore)
    assert got == expected
    assert pb.Connection.FromString(pb.Connection(latency_ns=got).SerializeToString()).latency_ns == got


async def test_the_failure_hook_on_a_session_read_passes_n_and_sees_failures() -> None:
    """The security session's ``read(n)`` gets a one-argument failure wrapper: ``n``
    given, by keyword or left to its default reaches the read as it would unwrapped, and a
    failure is seen and raised unchanged; a ``read`` with another signature is wrapped
    generically and keeps its other arguments."""

    class Session:
        def __init__(self) -> None:
            self.asked: list[object] = []
            self.error: Exception | None = None

        async def read(self, n: int | None = 7) -> bytes:
            self.asked.append(n)
            if self.error is not None:
                raise self.error
            return b"d"

        async def write(self, data: bytes) -> None:
            pass

    class OtherSession(Session):
        async def read(self, n: int | None = 7, *, extra: str = "") -> bytes:  # type: ignore[override]
            self.asked.append((n, extra))
            return b"e"

    seen: list[BaseException] = []
    patcher = InstancePatcher()
    session, other = Session(), OtherSession()
    endings.hook_failures(patcher, session, seen.append)
    endings.hook_failures(patcher, other, seen.append)
    assert "read" in vars(session) and "read" in vars(other)
    assert [await session.read(), await session.read(3), await session.read(n=None)] == [b"d"] * 3
    assert session.asked == [7, 3, None] and seen == []
    assert await other.read(2, extra="x") == b"e" and other.asked == [(2, "x")]
    failure = ConnectionClosedError("reset by peer")
    session.error = failure
    with pytest.raises(ConnectionClosedError) as raised:
        await session.read(1)
    assert raised.value is failure and seen == [failure]
    patcher.restore_all()
    assert "read" not in vars(session) and "read" not in vars(other)
