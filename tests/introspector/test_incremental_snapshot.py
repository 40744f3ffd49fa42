"""The incremental snapshot (the server's path) against a from-scratch build.

Two introspectors watch two identical stand-in hosts that go through the same
activity: connections and streams opening, negotiating, carrying payload (through the
introspector's own counting wrappers), being tagged, identified, ending, being
purged; clocks moving by whole windows, by odd amounts and not at all. After each
step the incremental introspector's ``encoded_state()`` must be, byte for byte, the
serialization of what the other one builds from scratch (``incremental=False``, the
message-building path) and parse to the same ``State``.

Every test runs twice: with the encoder's loops in C (``_snapcode.c``, where it is
built) and in Python (the fallback), which must give the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p.identity.identify.pb.identify_pb2 import Identify

from libp2p_introspection.introspector import encoder as encoder_module
from libp2p_introspection.introspector import host as host_module
from libp2p_introspection.introspector.host import HostIntrospector
from libp2p_introspection.introspector.traffic import TrafficCounter, install_counters
from libp2p_introspection.protocol import pb

START_MS = 1_700_000_000_000
PROTOCOLS = ("/meshsub/1.1.0", "/ipfs/kad/1.0.0", "/ipfs/ping/1.0.0")


@pytest.fixture(autouse=True, params=["c", "python"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The encoder's loops in C or in Python, for every test of this module."""
    if request.param == "python":
        monkeypatch.setattr(encoder_module, "_snapcode", None)
    elif not encoder_module.ACCELERATED:
        pytest.skip("the C encoder loops are not built here")
    return str(request.param)


class Clock:
    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


class PeerId:
    def to_base58(self) -> str:
        return "12D3KooWIncrementalIncrementalIncrementalIncremental"


class Mux:
    def get_protocols(self) -> list[str]:
        return list(PROTOCOLS)


class Swarm:
    def __init__(self) -> None:
        self.conns: list[Conn] = []

    def register_notifee(self, notifee: object) -> None:
        pass

    def get_connections(self) -> list[Conn]:
        return [c for c in self.conns if not c.is_closed]


class Host:
    def __init__(self) -> None:
        self.swarm = Swarm()

    def get_network(self) -> Swarm:
        return self.swarm

    def get_peerstore(self) -> object:
        raise RuntimeError("no peerstore")

    def get_id(self) -> PeerId:
        return PeerId()

    def get_transport_addrs(self) -> list[str]:
        return ["/ip4/127.0.0.1/tcp/4001"]

    def get_mux(self) -> Mux:
        return Mux()


class Wire:
    """A stream's or a raw connection's read/write, answering at once."""

    def __init__(self) -> None:
        self.protocol_id: str | None = None

    async def read(self, n: int | None = None) -> bytes:
        return b"r" * (n or 1)

    async def write(self, data: bytes) -> None:
        return None

    def set_protocol(self, protocol: str) -> None:
        self.protocol_id = protocol


class Conn:
    """A ``SwarmConn`` stand-in: its streams, whether it is closed."""

    def __init__(self, peer: int) -> None:
        self.muxed_conn = None
        self.is_closed = False
        self.streams: list[Wire] = []
        self.raw = Wire()
        self.peer = peer

    def get_streams(self) -> list[Wire]:
        return list(self.streams)

    async def close(self) -> None:
        self.is_closed = True


def drive(coroutine: Any) -> Any:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("a stand-in read/write suspended")


class World:
    """One host, its introspector, and the activity applied to both worlds alike."""

    def __init__(self, incremental: bool) -> None:
        self.clock = Clock()
        self.host = Host()
        self.intro = HostIntrospector(
            self.host,  # type: ignore[arg-type]
            clock_ms=self.clock,
            closed_connection_lifetime_ms=2_500,
            incremental=incremental,
        )
        self.registry = self.intro._registry
        self.conns: list[Conn] = []
        self.streams: list[tuple[Conn, Wire]] = []

    def apply(self, op: tuple[Any, ...]) -> None:
        kind, *args = op
        open_conns = [c for c in self.conns if not c.is_closed]
        if kind == "connect":
            conn = Conn(args[0])
            self.conns.append(conn)
            self.host.swarm.conns.append(conn)
            record = self.registry.on_connected(conn)
            record.peer_id = f"12D3KooWPeer{args[0]}"
            counter = TrafficCounter()
            record.traffic = counter
            install_counters(self.intro._patcher, conn.raw, counter)
        elif kind == "open" and open_conns:
            conn = open_conns[args[0] % len(open_conns)]
            stream = Wire()
            conn.streams.append(stream)
            self.streams.append((conn, stream))
            self.registry.on_stream_opened(stream, record=self.registry.connection_record(conn))
        elif kind == "negotiate" and self.streams:
            _, stream = self.streams[args[0] % len(self.streams)]
            if stream.protocol_id is None:
                stream.set_protocol(PROTOCOLS[args[1] % len(PROTOCOLS)])
        elif kind == "traffic" and self.streams:
            conn, stream = self.streams[args[0] % len(self.streams)]
            for _ in range(args[1]):
                drive(stream.read(args[2]))
                drive(conn.raw.read(args[2] + 30))
            for _ in range(args[3]):
                drive(stream.write(b"w" * args[2]))
                drive(conn.raw.write(b"w" * (args[2] + 30)))
        elif kind == "ping" and open_conns:
            conn = open_conns[args[0] % len(open_conns)]
            drive(conn.raw.write(b"p" * 12))
        elif kind == "end" and self.streams:
            conn, stream = self.streams.pop(args[0] % len(self.streams))
            if stream in conn.streams:
                conn.streams.remove(stream)
            self.registry.on_stream_closed(stream)
        elif kind == "vanish" and self.streams:
            # Gone from the connection's list without a notification: reconcile finds it.
            conn, stream = self.streams.pop(args[0] % len(self.streams))
            if stream in conn.streams:
                conn.streams.remove(stream)
        elif kind == "disconnect" and open_conns:
            conn = open_conns[args[0] % len(open_conns)]
            conn.is_closed = True
            self.streams = [(c, s) for c, s in self.streams if c is not conn]
            self.registry.on_disconnected(conn)
        elif kind == "tag_conn" and open_conns:
            conn = open_conns[args[0] % len(open_conns)]
            self.intro.application.tag_connection(conn, f"t{args[1]}")  # type: ignore[arg-type]
        elif kind == "untag_conn" and open_conns:
            conn = open_conns[args[0] % len(open_conns)]
            self.intro.application.untag_connection(conn, f"t{args[1]}")  # type: ignore[arg-type]
        elif kind == "tag_stream" and self.streams:
            _, stream = self.streams[args[0] % len(self.streams)]
            record = self.registry.stream_record(stream)
            tag = f"s{args[1]}"
            if record is not None and record.status == pb.ACTIVE and tag not in record.tags:
                record.tags.append(tag)  # what ApplicationData.tag_stream does (it needs
                self.registry.touch_stream(record)  # a real NetStream to find the record)
        elif kind == "identify" and open_conns:
            conn = open_conns[args[0] % len(open_conns)]
            record = self.registry.connection_record(conn)
            message = Identify(agent_version=f"agent/{args[1]}", protocols=list(PROTOCOLS[:2]))
            self.intro._identify._received(record, message.SerializeToString())
        elif kind == "tick":
            self.clock.now += args[0]

    def snapshot(self) -> bytes:
        return self.intro.encoded_state()


TRAFFIC = st.tuples(
    st.just("traffic"),
    st.integers(0, 50),
    st.integers(0, 3),
    st.integers(1, 700),
    st.integers(0, 3),
)
OPS = st.one_of(
    TRAFFIC,
    TRAFFIC,
    st.tuples(st.just("connect"), st.integers(0, 3)),
    st.tuples(st.just("open"), st.integers(0, 50)),
    st.tuples(st.just("negotiate"), st.integers(0, 50), st.integers(0, 5)),
    st.tuples(st.just("ping"), st.integers(0, 50)),
    st.tuples(st.just("end"), st.integers(0, 50)),
    st.tuples(st.just("vanish"), st.integers(0, 50)),
    st.tuples(st.just("disconnect"), st.integers(0, 50)),
    st.tuples(st.just("tag_conn"), st.integers(0, 50), st.integers(0, 3)),
    st.tuples(st.just("untag_conn"), st.integers(0, 50), st.integers(0, 3)),
    st.tuples(st.just("tag_stream"), st.integers(0, 50), st.integers(0, 3)),
    st.tuples(st.just("identify"), st.integers(0, 50), st.integers(0, 2)),
    st.tuples(st.just("tick"), st.sampled_from([0, 1, 999])),
)
#: The window before each snapshot, ms (0: an empty window).
WINDOW = st.sampled_from([0, 1, 999, 1_000, 1_000, 1_000, 3_000])
#: Each step: some activity, the clock moves, then a snapshot of both worlds.
STEPS = st.lists(st.tuples(st.lists(OPS, max_size=8), WINDOW), min_size=1, max_size=14)


def assert_same(incremental: World, scratch: World) -> None:
    got = incremental.snapshot()
    want = scratch.snapshot()
    assert pb.State.FromString(got) == pb.State.FromString(want)
    assert got == want


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(STEPS)
def test_incremental_snapshot_is_the_from_scratch_snapshot(
    steps: list[tuple[list[Any], int]],
) -> None:
    incremental, scratch = World(incremental=True), World(incremental=False)
    for ops, window in steps:
        for op in [*ops, ("tick", window)]:
            incremental.apply(op)
            scratch.apply(op)
        assert_same(incremental, scratch)


#: A node already carrying a few negotiated streams, then mostly traffic on them: the
#: common case the incremental path (and its C loops) takes, every window.
PRELUDE: list[tuple[Any, ...]] = [("connect", i) for i in range(3)]
PRELUDE += [("open", i) for i in range(8)] + [("negotiate", i, i) for i in range(8)]
BUSY_STEPS = st.lists(
    st.tuples(st.lists(st.one_of(TRAFFIC, TRAFFIC, TRAFFIC, OPS), max_size=6), WINDOW),
    min_size=2,
    max_size=20,
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(BUSY_STEPS)
def test_incremental_snapshot_of_a_busy_node_is_the_from_scratch_snapshot(
    steps: list[tuple[list[Any], int]],
) -> None:
    incremental, scratch = World(incremental=True), World(incremental=False)
    for ops, window in [(PRELUDE, 1_000), *steps]:
        for op in [*ops, ("tick", window)]:
            incremental.apply(op)
            scratch.apply(op)
        assert_same(incremental, scratch)


def test_a_busy_stream_that_goes_idle_reports_zero_bandwidth_and_its_connection_too() -> None:
    # The case an "only what counted" cache gets wrong: nothing touched the stream in
    # the second window, yet its gauges (and its connection's) must go back to 0.
    incremental, scratch = World(incremental=True), World(incremental=False)
    steps = [
        [("connect", 0), ("open", 0), ("negotiate", 0, 0), ("tick", 1_000)],
        [("traffic", 0, 2, 500, 1), ("tick", 1_000)],
        [("tick", 1_000)],
        [("tick", 0), ("traffic", 0, 1, 10, 0)],  # an empty window: counted in the next
        [("tick", 500)],
    ]
    for ops in steps:
        for op in ops:
            incremental.apply(op)
            scratch.apply(op)
        assert_same(incremental, scratch)
    state = pb.State.FromString(incremental.snapshot())
    (conn,) = state.subsystems.connections
    (stream,) = conn.streams.streams
    assert stream.traffic.traffic_in.cum_bytes == 1_010
    assert stream.traffic.traffic_in.inst_bw == 0
    assert conn.traffic.traffic_in.inst_bw == 0


async def test_sliced_snapshot_gives_the_same_bytes_and_yields(monkeypatch: Any) -> None:
    # The clock's async path yields to the node between slices (here: after every
    # slice, so that the count does not depend on the machine's speed).
    monkeypatch.setattr(host_module, "SLICE_SECONDS", 0.0)
    incremental, scratch = World(incremental=True), World(incremental=False)
    ops: list[tuple[Any, ...]] = [("connect", i % 4) for i in range(300)]
    ops += [("open", i) for i in range(600)] + [("negotiate", i, i) for i in range(600)]
    ops += [("traffic", i, 1, 100, 1) for i in range(0, 600, 3)] + [("tick", 1_000)]
    for op in ops:
        incremental.apply(op)
        scratch.apply(op)
    checkpoints = 0

    async def count_checkpoints() -> None:
        nonlocal checkpoints
        while True:
            await trio.sleep(0)
            checkpoints += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(count_checkpoints)
        await trio.sleep(0)
        before = checkpoints
        got = await incremental.intro.encoded_state_async()
        yielded = checkpoints - before
        nursery.cancel_scope.cancel()
    assert got == scratch.snapshot()
    # 600 streams in slices of 64, 300 connections in slices of 32, and the rest.
    assert yielded >= 10 + 10


def _busy_worlds() -> tuple[World, World]:
    incremental, scratch = World(incremental=True), World(incremental=False)
    ops: list[tuple[Any, ...]] = [("connect", i % 4) for i in range(100)]
    ops += [("open", i) for i in range(300)] + [("negotiate", i, i) for i in range(300)]
    ops += [("traffic", i, 1, 100, 1) for i in range(0, 300, 2)] + [("tick", 1_000)]
    for op in ops:
        incremental.apply(op)
        scratch.apply(op)
    return incremental, scratch


async def test_a_snapshot_asked_for_while_a_sliced_one_is_paused_finishes_that_one_first(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(host_module, "SLICE_SECONDS", 0.0)
    incremental, scratch = _busy_worlds()
    results: list[bytes] = []

    async def sliced() -> None:
        results.append(await incremental.intro.encoded_state_async())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sliced)
        for _ in range(5):
            await trio.sleep(0)  # the sliced build is paused half-way
        assert not results
        first_sync = incremental.snapshot()  # a test, a script: state() meanwhile
    assert results == [scratch.snapshot()]
    assert first_sync == scratch.snapshot()
    for op in [("traffic", 3, 2, 10, 2), ("tick", 1_000)]:
        incremental.apply(op)
        scratch.apply(op)
    assert_same(incremental, scratch)


async def test_a_sliced_snapshot_cancelled_half_way_leaves_the_next_one_right(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(host_module, "SLICE_SECONDS", 0.0)
    incremental, scratch = _busy_worlds()
    with trio.move_on_after(0) as scope:
        scope.deadline = trio.current_time()  # cancelled at its first yield
        await incremental.intro.encoded_state_async()
    assert scope.cancelled_caught
    scratch.snapshot()  # the cancelled one was taken (and dropped)
    for op in [("traffic", 5, 1, 10, 1), ("tick", 1_000)]:
        incremental.apply(op)
        scratch.apply(op)
    assert_same(incremental, scratch)
