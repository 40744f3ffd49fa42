"""The C wire walk (``protocol/_wirewalk.c``) answers exactly what the Python walk does.

The C side only ever says "sound, and here are the counts" or "ask Python"; these
tests hold it to that on real records, on every way of damaging them that a
mutation finds, on hostile records and on random bytes: whatever the input,
:func:`measure` (C first) equals :func:`measure_python` (the reference), and the
C reading of a snapshot's levels never calls sound what ``protowire`` refuses.
"""

from __future__ import annotations

import os
import random
import shutil
import sysconfig

import pytest
from hostile_records import (
    connection,
    empty_connections_state,
    field,
    normal_state,
    state,
    varint_field,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libp2p_introspection.client import inspect_file
from libp2p_introspection.protocol import wire
from libp2p_introspection.protocol.framing import encode_varint
from libp2p_introspection.protocol.protowire import WireError, last_varint, values
from libp2p_introspection.protocol.recording import RecordingReader
from libp2p_introspection.protocol.wire import (
    ACCELERATED,
    DEFAULT_LIMITS,
    RecordLimits,
    measure,
    measure_python,
    occurrences,
)

needs_c = pytest.mark.skipif(not ACCELERATED, reason="the C walk is not built here")
SMALL = RecordLimits(max_connections=3, max_streams=5, max_entries=4)
_FIXTURE_NAMES = ("sample-1min.mock", "sample-2min.mock", "sample-dht-2min.mock")


def test_the_c_walk_is_built_where_a_compiler_is():
    """Where a compiler and Python's headers are found the install builds the C walk (a
    machine without either, or a build told to use another compiler through ``CC``, e.g.
    ``CC=/bin/false``, gets the Python walk, and this test has nothing to check)."""
    headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    if headers and "CC" not in os.environ and (shutil.which("cc") or shutil.which("gcc")):
        assert ACCELERATED, "setup.py builds protocol/_wirewalk.c: reinstall (pip install -e .)"


def _records(fixtures_dir, *, every: int = 1) -> list[bytes]:
    """The fixtures' records (every ``every``-th snapshot, and as many of the rest)."""
    snapshots, others = [], []
    for name in _FIXTURE_NAMES:
        with RecordingReader(fixtures_dir / name, limits=None) as reader:
            for record in reader:
                (snapshots if record.kind == "state" else others).append(record.data)
    snapshots = snapshots[::every]
    return snapshots + others[:: max(1, len(others) // len(snapshots))]


def _mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Damaged copies: a byte changed, a byte dropped or inserted, the tail cut."""
    out = []
    for _ in range(count):
        what = rng.randrange(4)
        at = rng.randrange(len(data))
        if what == 0:
            out.append(data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :])
        elif what == 1:
            out.append(data[:at] + data[at + 1 :])
        elif what == 2:
            out.append(data[:at] + bytes([rng.randrange(256)]) + data[at:])
        else:
            out.append(data[:at])
    return out


def _same(data: bytes, limits: RecordLimits = DEFAULT_LIMITS) -> None:
    assert measure(data, limits) == measure_python(data, limits)


@needs_c
def test_real_records_count_the_same(fixtures_dir):
    limits = DEFAULT_LIMITS
    for data in _records(fixtures_dir):
        # C answers for every sound record (it does not hand them all to Python) ...
        assert wire._wirewalk.walk(data, limits.caps(), limits.max_fields) is not None
        _same(data)
        _same(data, SMALL)  # ... and over the caps Python words it


@needs_c
def test_damaged_real_records_count_and_fail_the_same(fixtures_dir):
    rng = random.Random(14)
    records = _records(fixtures_dir, every=7)
    faults = answered = 0
    limits = DEFAULT_LIMITS
    for data in records[:80]:
        for damaged in _mutations(data, rng, 12):
            _same(damaged)
            _same(damaged, SMALL)
            faults += bool(measure_python(damaged).malformed)
            answered += wire._wirewalk.walk(damaged, limits.caps(), limits.max_fields) is not None
    assert faults > 50 and answered > 50  # both paths are reached


_HOSTILE = [
    empty_connections_state(50_000),  # over the connection cap
    state([connection(streams=200_000 // 9_999)] * 9_999),
    b"\x12\x05\x0a",
    b"\x12",
    b"\x08" + b"\xff" * 11,
    b"\x08" + b"\xff" * 9 + b"\x01",  # a 10-byte varint (Python reads it; C asks Python)
    b"\x8a\x80\x80\x80\x80\x00\x00",  # a 6-byte tag under 32 bits
    b"\x0f",
    b"\x0c",
    b"\x04",
    b"\x03\x04",
    b"\x13\x08\x01",
    encode_varint(50 << 3 | 3) + varint_field(1, 1) + encode_varint(50 << 3 | 4),
    state([field(17, field(17, b""))]),
    state([b"\x0a\x00" * 3 + encode_varint(9 << 3 | 3) + encode_varint(9 << 3 | 4)]),
    field(2, field(1, field(1, b"\x0d\x01\x02"))),  # a fixed32 running past its message
    field(2, field(1, field(1, b"\x08"))),  # a varint at the end of its message
    field(2, b"\x0a"),  # a length at the end of its message
]


@needs_c
@pytest.mark.parametrize("data", _HOSTILE, ids=range(len(_HOSTILE)))
def test_hostile_records_count_and_fail_the_same(data):
    _same(data)
    _same(data, SMALL)


def _nested(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = field(17, inner)
    return state([inner])


@needs_c
@pytest.mark.parametrize("depth", [90, 125, 126, 127, 128, 200])
def test_nesting_at_the_depth_cap_is_decided_the_same(depth):
    _same(_nested(depth))


@needs_c
@settings(max_examples=1_500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_count_the_same(data):
    _same(data)
    _same(data, SMALL)
    _same(state([data]))  # inside a connection, where the walk descends


# ------------------------------------------- the levels the summary reads


def _python_levels_ok(data: bytes) -> bool:
    try:
        inspect_file._extensions_python(data)
        last_varint(data, (2, 3))
    except WireError:
        return False
    return True


@needs_c
def test_levels_called_sound_read_without_a_fault(fixtures_dir):
    rng = random.Random(5)
    checked = refused = 0
    for data in _records(fixtures_dir, every=5)[:60]:
        for candidate in [data, *_mutations(data, rng, 10)]:
            if inspect_file._SNAPSHOT_LEVELS(candidate):
                checked += 1
                assert _python_levels_ok(candidate)
                assert inspect_file._extensions(candidate) == inspect_file._extensions_python(
                    candidate
                )
            else:
                refused += 1
    assert checked and refused


@needs_c
@pytest.mark.parametrize(
    "data",
    [
        state([connection(extra=b"\x02\x00")]),  # field number 0 in a connection
        state([connection(extra=encode_varint(9 << 3 | 3) + encode_varint(9 << 3 | 4))]),
        field(2, field(100, encode_varint(9 << 3 | 3) + encode_varint(9 << 3 | 4))),  # NodeInfo
    ],
)
def test_levels_protowire_refuses_are_not_called_sound(data):
    assert not _python_levels_ok(data)
    assert not inspect_file._SNAPSHOT_LEVELS(data)
    assert measure(data).ok  # the walk itself accepts them: only the summary's reading fails


@needs_c
@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=200),
    st.sampled_from([(2, 3), (2, 1, 1, 100), (2, 100, 3), (1,), (4, 1, 1), (2, 1)]),
)
def test_occurrences_are_what_protowire_finds(data, path):
    for candidate in (data, state([data]), normal_state(1_700_000_000_000) + data):
        found = occurrences(candidate, path)
        if found is None:
            continue
        python = list(values(candidate, path))  # never raises where C answered
        assert found[0] == len(python)
        varints = [v for wire_type, v, _, _ in python if wire_type == 0]
        assert found[1] == (varints[-1] if varints else None)
        spans = [(begin, stop) for wire_type, _, begin, stop in python if wire_type == 2]
        assert found[2] == (spans[-1] if spans else None)


@needs_c
def test_a_buffer_c_cannot_read_is_walked_in_python():
    data = normal_state(1_700_000_000_000)
    strided = memoryview(data * 2)[::2]  # not contiguous: C refuses the buffer
    assert measure(strided) == measure_python(strided)
    assert occurrences(strided, (2, 3)) is None
    assert not inspect_file._SNAPSHOT_LEVELS(strided)


def test_without_the_c_walk_everything_runs_in_python(monkeypatch):
    monkeypatch.setattr(wire, "_wirewalk", None)
    data = normal_state(1_700_000_000_000)
    assert measure(data) == measure_python(data)
    assert occurrences(data, (2, 3)) is None
    assert not inspect_file._SNAPSHOT_LEVELS(data)
