"""The encoder's loops in C (``introspector/_snapcode.c``) against the Python loops.

Two incremental introspectors watch two identical stand-in hosts that go through the
same activity, odd values included (counters beyond 63 bits, negative ones, ``bool``
counters: the C counters refuse what does not fit 64 bits, see below; tags that are ``str`` subclasses or not strings, latencies beyond 63 bits or
negative, statuses that are not ones): one encodes with the C loops, the other with the
Python ones. After each step both must give the same bytes, or both fail. The C code
hands anything odd to the Python code, which stays the reference.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_incremental_snapshot import OPS, World

from libp2p_introspection.introspector import encoder as encoder_module
from libp2p_introspection.protocol import pb

needs_c = pytest.mark.skipif(
    not encoder_module.ACCELERATED, reason="the C encoder loops are not built here"
)


def test_the_c_loops_are_built_where_a_compiler_is() -> None:
    """Where a compiler and Python's headers are found the install builds the C loops (a
    machine without either, or a build told to use another compiler through ``CC``,
    gets the Python loops, and this test has nothing to check)."""
    headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    if headers and "CC" not in os.environ and (shutil.which("cc") or shutil.which("gcc")):
        assert encoder_module.ACCELERATED, (
            "setup.py builds introspector/_snapcode.c: reinstall (pip install -e .)"
        )


class Tag(str):
    """A tag that is a ``str`` subclass (C leaves it to Python)."""


ODD_VALUES = st.sampled_from(
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -1, True, False, 0, 7, 1.5, None]
)
ODD = st.one_of(
    st.tuples(st.just("odd_stream_counter"), st.integers(0, 50), st.integers(0, 5), ODD_VALUES),
    st.tuples(st.just("odd_conn_counter"), st.integers(0, 50), st.integers(0, 5), ODD_VALUES),
    st.tuples(st.just("odd_latency"), st.integers(0, 50), ODD_VALUES),
    st.tuples(st.just("rtt"), st.integers(0, 50), st.sampled_from([0.0, 0.003, 0.25, 2.0, -1.0])),
    st.tuples(st.just("odd_stream_tag"), st.integers(0, 50), st.sampled_from(["sub", "int"])),
    st.tuples(st.just("odd_conn_tag"), st.integers(0, 50), st.sampled_from(["sub", "int"])),
    st.tuples(st.just("odd_status"), st.integers(0, 50), ODD_VALUES),
)
COUNTERS = ("in_bytes", "in_packets", "out_bytes", "out_packets", "prev_in_bytes", "prev_out_bytes")
WINDOW = st.sampled_from([0, 1, 999, 1_000, 3_000])
STEPS = st.lists(
    st.tuples(st.lists(st.one_of(OPS, OPS, ODD), max_size=8), WINDOW), min_size=1, max_size=12
)


class Muxer:
    """What ``conninfo.latency_ns`` reads of a yamux connection: its ping RTT, seconds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def rtt(self) -> float:
        return self.seconds


def fits_int64(value: Any) -> bool:
    return isinstance(value, int) and -(2**63) <= value < 2**63


def set_counter(counter: Any, name: str, value: Any) -> None:
    """Set a counter field; the C counter (``_snapcode.Counter``) refuses, and keeps
    its value, what its 64 bits cannot hold (the Python one takes anything)."""
    before = getattr(counter, name)
    try:
        setattr(counter, name, value)
    except (TypeError, OverflowError):
        assert encoder_module.ACCELERATED and not fits_int64(value)
        assert getattr(counter, name) == before
    else:
        assert getattr(counter, name) == value


def apply_odd(world: World, op: tuple[Any, ...]) -> None:
    kind, *args = op
    if kind == "rtt" and world.conns:
        world.conns[args[0] % len(world.conns)].muxed_conn = Muxer(args[1])
        return
    records = list(world.registry.connections())
    streams = [s for r in records for s in r.streams.values()]
    if kind == "odd_stream_counter" and streams:
        set_counter(streams[args[0] % len(streams)].traffic, COUNTERS[args[1]], args[2])
    elif kind == "odd_conn_counter" and records:
        set_counter(records[args[0] % len(records)].traffic, COUNTERS[args[1]], args[2])
    elif kind == "odd_latency" and records:
        records[args[0] % len(records)].latency_ns = args[1]
    elif kind == "odd_stream_tag" and streams:
        stream = streams[args[0] % len(streams)]
        stream.tags.append(Tag("sub") if args[1] == "sub" else 5)  # type: ignore[arg-type]
        world.registry.touch_stream(stream)
    elif kind == "odd_conn_tag" and records:
        record = records[args[0] % len(records)]
        record.tags.append(Tag("sub") if args[1] == "sub" else 5)  # type: ignore[arg-type]
    elif kind == "odd_status" and streams:
        stream = streams[args[0] % len(streams)]
        stream.status = args[1]  # type: ignore[assignment]
        world.registry.touch_stream(stream)


def outcome(world: World, accelerated: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    if not accelerated:
        monkeypatch.setattr(encoder_module, "_snapcode", None)
    try:
        return world.snapshot()
    except Exception:  # both must fail (which error comes first may differ: the C loop
        return None  # does its streams first, then hands the others to Python)
    finally:
        monkeypatch.undo()


def step_both(c: World, py: World, op: tuple[Any, ...]) -> None:
    for world in (c, py):
        if op[0].startswith("odd_") or op[0] == "rtt":
            apply_odd(world, op)
        else:
            world.apply(op)


@needs_c
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS)
def test_the_c_loops_give_the_python_loops_bytes_whatever_the_values(
    steps: list[tuple[list[Any], int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, py = World(incremental=True), World(incremental=True)
    for ops, window in steps:
        for op in [*ops, ("tick", window)]:
            step_both(c, py, op)
        got, want = outcome(c, True, monkeypatch), outcome(py, False, monkeypatch)
        assert got == want  # (whether odd values make a valid State is Python's affair)
        if got is None:
            return  # what a failed snapshot leaves is not specified: stop here


@needs_c
def test_a_stream_whose_counters_moved_is_encoded_in_c() -> None:
    # The common case really runs in C: the Python loop is not asked for the stream.
    world = World(incremental=True)
    for op in [("connect", 0), ("open", 0), ("negotiate", 0, 0), ("tick", 1_000)]:
        world.apply(op)
    world.snapshot()
    world.apply(("traffic", 0, 2, 100, 1))
    world.apply(("tick", 1_000))
    asked: list[Any] = []
    encoder = world.intro._encoder
    original = encoder._stream

    def spy(*args: Any) -> bool:
        asked.append(args[0])
        result: bool = original(*args)
        return result

    encoder._stream = spy  # type: ignore[method-assign]
    state = pb.State.FromString(world.snapshot())
    assert asked == []
    (conn,) = state.subsystems.connections
    (stream,) = conn.streams.streams
    assert stream.traffic.traffic_in.cum_bytes == 200
    assert stream.traffic.traffic_in.inst_bw == 200
    assert stream.traffic.traffic_out.cum_packets == 1


def test_an_unknown_record_layout_falls_back_to_python() -> None:
    class Plain:  # no __slots__: the C loops cannot read it
        conn = code = traffic = protocol = status = close_ts = tags = live = None

    if not encoder_module.ACCELERATED:
        pytest.skip("the C encoder loops are not built here")
    snapcode = encoder_module._snapcode
    with pytest.raises(TypeError):
        snapcode.configure(Plain, Plain, Plain, Plain, Plain, pb.ACTIVE)
    # The failed call left the module unconfigured: it refuses to run rather than guess.
    with pytest.raises(RuntimeError):
        snapcode.stream_pass([], 0, set(), set(), set())
    encoder_module._load_accelerator()  # configured again for the other tests
    assert snapcode.stream_pass([], 0, set(), set(), set()) == []
