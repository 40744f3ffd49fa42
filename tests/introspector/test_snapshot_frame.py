"""The introspector's framed snapshot (what the snapshot clock publishes) and its C parts.

``HostIntrospector.take_snapshot``/``take_snapshot_async`` make the frame from the
``State``'s pieces in one copy, hashing them where they lie (the FNV-1a in C, a slice
at a time on the trio loop): the frame must be, byte for byte, the one the base
class's path makes (``encode_state_frame`` of ``encoded_state()``), after any activity.
Also: the switch that turns the C accelerator off, and the C counters' refusal of
values their 64 bits cannot hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from test_incremental_snapshot import PRELUDE, STEPS, World, drive

from libp2p_introspection import abc as source_abc
from libp2p_introspection.abc import SampledSource
from libp2p_introspection.introspector import encoder as encoder_module
from libp2p_introspection.introspector import host as host_module
from libp2p_introspection.introspector import traffic as traffic_module
from libp2p_introspection.introspector.traffic import (
    TrafficCounter,
    counting_reader,
    counting_writer,
)
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import (
    HEADER_SIZE,
    fnv1a32_reference,
    parse_server_message,
)

try:
    from libp2p_introspection.introspector import _accel
except ImportError:  # an older tree without the switch: the tests that need it fail
    _accel = None  # type: ignore[assignment]

#: The C accelerator as the encoder loaded it (``None``: not built).
SNAPCODE: Any = encoder_module._snapcode
needs_c = pytest.mark.skipif(SNAPCODE is None, reason="the C accelerator is not built")


class Outlet:
    """What the snapshot clock publishes to (the hub): the frames, in order."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def publish_snapshot(self, frame: bytes) -> None:
        self.frames.append(frame)


def step_both(a: World, b: World, ops: list[Any]) -> None:
    for op in ops:
        a.apply(op)
        b.apply(op)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(STEPS)
def test_the_introspectors_frame_is_the_base_class_frame(steps: list[Any]) -> None:
    ours, base = World(incremental=True), World(incremental=True)
    got, want = Outlet(), Outlet()
    for ops, window in [(PRELUDE, 1_000), *steps]:
        step_both(ours, base, [*ops, ("tick", window)])
        assert ours.intro.take_snapshot(got)  # type: ignore[arg-type]
        assert SampledSource.take_snapshot(base.intro, want)  # type: ignore[arg-type]
        assert got.frames[-1] == want.frames[-1]
        message = parse_server_message(got.frames[-1])  # the checksum and the size hold
        assert message.HasField("state")
    assert ours.intro.snapshot_builds == base.intro.snapshot_builds == len(steps) + 1


async def test_the_async_frame_is_the_base_class_frame_and_is_hashed_in_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A frame is hashed a slice at a time with the node's other tasks let in between:
    # however large the frame, no step of the clock's task is one long FNV-1a.
    monkeypatch.setattr(host_module, "HASH_SLICE_BYTES", 256, raising=False)
    ours, base = World(incremental=True), World(incremental=True)
    ops: list[Any] = [("connect", i) for i in range(12)]
    ops += [("open", i) for i in range(36)] + [("negotiate", i, i) for i in range(36)]
    ops += [("traffic", i, 2, 300, 1) for i in range(36)] + [("tick", 1_000)]
    step_both(ours, base, ops)
    hashed: list[tuple[int, int]] = []  # (bytes in the call, turns the other task had)
    turns = 0
    snapcode = SNAPCODE
    original_fnv = source_abc.fnv1a32

    def whole_fnv(data: bytes) -> int:  # the base class's one call over the whole frame
        hashed.append((len(data), turns))
        return original_fnv(data)

    monkeypatch.setattr(source_abc, "fnv1a32", whole_fnv)
    if snapcode is not None and _accel is not None:

        class Spy:
            def __getattr__(self, name: str) -> Any:
                return getattr(snapcode, name)

            def fnv1a32(self, pieces: list[bytes], *seed: int) -> int:
                hashed.append((sum(map(len, pieces)), turns))
                return int(snapcode.fnv1a32(pieces, *seed))

        monkeypatch.setattr(_accel, "snapcode", Spy())
    got, want = Outlet(), Outlet()

    async def other_task(done: trio.Event) -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await trio.sleep(0)

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task, done)
        await trio.sleep(0)
        assert await ours.intro.take_snapshot_async(got)  # type: ignore[arg-type]
        done.set()
    monkeypatch.undo()
    assert await SampledSource.take_snapshot_async(base.intro, want)  # type: ignore[arg-type]
    assert got.frames == want.frames
    frame = got.frames[0]
    if snapcode is None:
        return  # the base class's path: nothing more to check
    message = len(frame) - HEADER_SIZE
    state = parse_server_message(frame).state
    piece = max(len(c.SerializeToString()) for c in state.subsystems.connections) + 8
    assert message > 4 * (256 + piece)  # large enough to need several slices
    assert sum(size for size, _ in hashed) == message
    assert all(size <= 256 + piece for size, _ in hashed)  # a slice: 256 bytes and a piece
    # Each slice runs in its own scheduling batch, and the other task ran in each batch
    # between the first slice's and the last one's.
    seen = [turn for _, turn in hashed]
    assert seen == sorted(seen)
    assert seen[-1] - seen[0] >= len(seen) - 2


@needs_c
def test_the_c_fnv1a32_is_fnv1a32_from_any_state() -> None:
    fnv1a32 = SNAPCODE.fnv1a32
    data = [b"", b"\x00", bytes(range(256)), b"introspection" * 100, b"\xff" * 7]
    whole = b"".join(data)
    assert fnv1a32(data) == fnv1a32_reference(whole)
    assert fnv1a32([]) == fnv1a32_reference(b"")
    # Resumable: hashing the pieces in two calls, the second from the first's state.
    assert fnv1a32(data[3:], fnv1a32(data[:3])) == fnv1a32_reference(whole)
    with pytest.raises(TypeError):
        fnv1a32([b"ok", "not bytes"])
    with pytest.raises(TypeError):
        fnv1a32((b"a tuple",))
    with pytest.raises((ValueError, OverflowError)):
        fnv1a32([b""], 2**32)
    # A state is taken as it is, never modulo 2**64 (2**64 + 5 is not the state 5).
    for state in (2**64 + 5, 2**64, -1, -(2**64) + 5):
        with pytest.raises((ValueError, OverflowError)):
            fnv1a32([b"x"], state)
    with pytest.raises(TypeError):
        fnv1a32([b"x"], 5.0)
    assert fnv1a32([b"x"], 0xFFFFFFFF) == fnv1a32([b"x"], 2**32 - 1)


def _fnv1a32_from(data: bytes, state: int) -> int:
    """FNV-1a 32 by its definition, from any state (the reference has the basis only)."""
    for byte in data:
        state = ((state ^ byte) * 0x01000193) & 0xFFFFFFFF
    return state


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@needs_c
def test_the_c_fnv1a32_is_fnv1a32_over_any_split_of_any_bytes() -> None:
    # The C FNV-1a hashes whole 64-byte blocks another way where the CPU allows (bit
    # planes, a polynomial in the prime: _snapcode.c): it must be the byte-by-byte
    # definition whatever the bytes, the state, and where the pieces cut the blocks
    # (a block across pieces, empty pieces, more blocks than one batch or one staging).
    import random

    rng = random.Random(5)
    fnv1a32 = SNAPCODE.fnv1a32
    runs = (0x00, 0xFF, 0x93, 0x6C)  # long runs of one byte: the automaton's carries
    sizes = (0, 1, 2, 7, 63, 64, 65, 127, 128, 129, 200, 1000, 2049)
    for case in range(400):
        pieces = []
        for _ in range(rng.randrange(9)):
            size = rng.choice(sizes)
            if rng.random() < 0.6:
                pieces.append(rng.randbytes(size))
            else:
                pieces.append(bytes([rng.choice(runs)]) * size)
        state = rng.choice((0x811C9DC5, 0, 0xFFFFFFFF, rng.getrandbits(32)))
        whole = b"".join(pieces)
        assert fnv1a32(pieces, state) == _fnv1a32_from(whole, state), (case, state)
    # Long: more than 256 staged blocks (16 KiB) in many pieces, and in one piece.
    pieces = [rng.randbytes(rng.randrange(1, 300)) for _ in range(400)]
    whole = b"".join(pieces)
    assert len(whole) > 64 * 256
    assert fnv1a32(pieces) == fnv1a32_reference(whole)
    assert fnv1a32([whole]) == fnv1a32_reference(whole)
    assert fnv1a32([whole[:1], whole[1:]]) == fnv1a32_reference(whole)


@needs_c
def test_the_c_frame_is_the_framed_message_of_its_pieces() -> None:
    # take_snapshot's one copy: header (version, FNV-1a of the message, size) and the
    # pieces, hashed from the copy; it must be encode_frame of the joined message for
    # any cut of any bytes (blocks across pieces, runs of one byte, long messages).
    import random

    from libp2p_introspection.protocol.framing import PROTOCOL_VERSION, encode_frame

    rng = random.Random(11)
    frame = SNAPCODE.frame
    for case in range(150):
        pieces = [
            rng.randbytes(size) if rng.random() < 0.6 else bytes([rng.choice((0, 255))]) * size
            for size in (rng.choice((0, 1, 63, 64, 65, 700, 5000)) for _ in range(rng.randrange(7)))
        ]
        assert frame(pieces, PROTOCOL_VERSION) == encode_frame(b"".join(pieces)), case
    # Longer than one hashing stretch (32 KiB) and one staging of blocks (16 KiB).
    pieces = [rng.randbytes(rng.randrange(1, 900)) for _ in range(120)]
    assert frame(pieces, PROTOCOL_VERSION) == encode_frame(b"".join(pieces))
    assert frame([], 7)[:4] == b"\x07\x00\x00\x00"
    with pytest.raises(TypeError):
        frame([b"ok", bytearray(b"no")], PROTOCOL_VERSION)
    with pytest.raises(TypeError):
        frame((b"a tuple",), PROTOCOL_VERSION)
    for version in (-1, 2**32, 2**64 + 1):
        with pytest.raises((ValueError, OverflowError)):
            frame([b"x"], version)


@needs_c
@pytest.mark.skipif(
    not {"avx512f", "avx512bw", "pclmulqdq"} <= _cpu_flags(),
    reason="the CPU lacks what the block path needs",
)
def test_the_c_fnv1a32_takes_the_block_path_where_the_cpu_has_it() -> None:
    # 1 MB: 0.9 ms byte by byte, 0.3 ms a block at a time, 0.14 ms eight blocks per
    # vector (with VPCLMULQDQ): most of what a 1,000x10 snapshot cost beyond its floor.
    expected = 2 if "vpclmulqdq" in _cpu_flags() else 1
    assert expected == SNAPCODE.FNV1A32_BLOCKED


def test_the_pure_python_switch_turns_the_c_accelerator_off() -> None:
    # LIBP2P_INTROSPECTION_PURE_PYTHON=1: what a machine without a compiler runs, and
    # the same snapshot bytes as the from-scratch build (the reference).
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from libp2p_introspection.introspector import encoder, traffic
        from test_incremental_snapshot import PRELUDE, World

        assert not encoder.ACCELERATED
        assert type(traffic.TrafficCounter()).__mro__[1] is traffic._CounterFields
        incremental, scratch = World(incremental=True), World(incremental=False)
        for world in (incremental, scratch):
            for op in PRELUDE + [("traffic", 1, 2, 100, 1), ("tick", 1000)]:
                world.apply(op)
        assert incremental.snapshot() == scratch.snapshot()
        print("pure python ok")
        """
    )
    env = dict(os.environ, LIBP2P_INTROSPECTION_PURE_PYTHON="1")
    tests_dir = os.path.dirname(__file__)
    done = subprocess.run(
        [sys.executable, "-c", script, tests_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pure python ok" in done.stdout


@needs_c
@pytest.mark.parametrize("value", [2**63, 2**64, -(2**63) - 1, 1.5, "7", None])
def test_a_c_counter_refuses_what_64_bits_cannot_hold_and_keeps_its_count(value: Any) -> None:
    counter = TrafficCounter()
    counter.in_bytes = 41
    with pytest.raises((OverflowError, TypeError)):
        counter.in_bytes = value
    assert counter.in_bytes == 41
    with pytest.raises(TypeError):
        del counter.in_bytes
    assert counter.in_bytes == 41


@pytest.mark.parametrize("build", ["c", "python"])
def test_a_read_whose_count_would_overflow_still_returns_its_data(build: str) -> None:
    # The counting wrapper never breaks the node's read, even at the end of 64 bits,
    # and the count is refused alike in both builds (the same snapshots after it).
    if build == "c" and SNAPCODE is None:
        pytest.skip("the C accelerator is not built")

    class Counter(traffic_module._CounterFields if build == "python" else TrafficCounter):
        __slots__ = ()

    counter = Counter()
    counter.in_bytes = 2**63 - 10

    async def read(n: Any = None) -> bytes:
        return b"x" * 100

    async def write(data: bytes) -> None:
        return None

    wrapped = counting_reader(read, counter)  # type: ignore[arg-type]
    assert drive(wrapped(100)) == b"x" * 100
    assert (counter.in_bytes, counter.in_packets) == (2**63 - 10, 0)  # refused
    counter.out_packets = 2**63 - 1
    writer = counting_writer(write, counter)  # type: ignore[arg-type]
    assert drive(writer(b"y")) is None
    assert (counter.out_bytes, counter.out_packets) == (0, 2**63 - 1)  # refused
    counter.in_bytes = 5
    assert drive(wrapped(100)) == b"x" * 100
    assert (counter.in_bytes, counter.in_packets) == (105, 1)


def test_a_snapshot_state_parses_after_the_frame_is_taken() -> None:
    # encoded_state() (the pieces joined) and the frame describe the same State.
    world = World(incremental=True)
    for op in [*PRELUDE, ("traffic", 2, 1, 50, 1), ("tick", 1_000)]:
        world.apply(op)
    outlet = Outlet()
    assert world.intro.take_snapshot(outlet)  # type: ignore[arg-type]
    state = parse_server_message(outlet.frames[0]).state
    assert isinstance(state, pb.State)
    assert len(state.subsystems.connections) == 3
