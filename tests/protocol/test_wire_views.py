"""``measure()`` and ``occurrences()`` read a ``memoryview`` as its bytes, whatever its
items and shape: the C walk and the Python walk agree, and ``measure`` never raises.

A view of wider items (``memoryview(data).cast("I")``) made the C walk read its bytes
and the Python walk its 4-byte items; a 2-D view made ``measure`` raise."""

from __future__ import annotations

import pytest
import trio
from hostile_records import START_MS, connection, event, field, normal_state, runtime, state

from libp2p_introspection.protocol import wire
from libp2p_introspection.protocol.protowire import WireError, last_string, last_varint, values
from libp2p_introspection.protocol.wire import (
    LevelCheck,
    measure,
    measure_paced,
    measure_python,
    occurrences,
)

_PATHS = ((2, 3), (2, 1, 1), (4, 1, 1), (3, 4))
_LEVELS = LevelCheck({2: {100: {}, 1: {1: {}}}})


def _padded(data: bytes) -> bytes:
    """``data`` with an unknown top-level field (7) that brings it to a multiple of 8."""
    return data + field(7, b"\x00" * ((-len(data) - 2) % 8))


RECORDS = {
    "snapshot": _padded(normal_state(START_MS, connections=4)),
    "streams": _padded(state([connection(3) for _ in range(5)])),
    "event": _padded(event(START_MS, name="PeerIdentified")),
    "runtime": _padded(runtime()),
    "cut short": _padded(normal_state(START_MS))[:-8],  # malformed
}


def _views(data: bytes) -> dict[str, memoryview]:
    whole = memoryview(data)
    assert len(data) % 8 == 0
    return {
        "2-D": whole.cast("B", (2, len(data) // 2)),
        "signed": whole.cast("b"),
        "uint32": whole.cast("I"),
        "uint32 2-D": whole.cast("I", (2, len(data) // 8)),
        "uint64": whole.cast("Q"),
    }


@pytest.mark.parametrize("name", RECORDS)
def test_a_view_of_any_items_measures_as_its_bytes(name):
    data = RECORDS[name]
    expected = measure_python(data)
    assert (expected.malformed != "") == (name == "cut short")
    for kind, view in _views(data).items():
        assert measure(view) == expected, kind
        assert measure_python(view) == expected, kind
        assert trio.run(measure_paced, view, wire.DEFAULT_LIMITS, trio.lowlevel.checkpoint) == (
            expected
        ), kind


def _read(reader, *args):
    try:
        return reader(*args)
    except WireError as exc:
        return f"WireError: {exc}"


def _python_reading(data, path):
    """What ``protowire`` (the Python side of :func:`occurrences`) reads at ``path``:
    every occurrence, the last varint, the last string (or the fault it finds)."""
    return (
        _read(lambda: list(values(data, path))),
        _read(last_varint, data, path),
        _read(last_string, data, path),
    )


@pytest.mark.parametrize("name", RECORDS)
def test_a_view_of_any_items_finds_what_its_bytes_hold(name):
    data = RECORDS[name]
    for kind, view in _views(data).items():
        for path in _PATHS:
            found = occurrences(view, path)
            assert found == occurrences(data, path), (kind, path)
            python = _python_reading(view, path)
            assert python == _python_reading(data, path), (kind, path)
            if found is not None:  # C and Python agree on the count and the last varint
                assert found[0] == len(python[0]) and (found[1] or 0) == python[1], (kind, path)
                span = found[2]
                assert span is None or python[0][-1][2:] == span, (kind, path)
        assert _LEVELS(view) == _LEVELS(data), kind


def test_a_strided_view_of_wide_items_measures_as_its_bytes():
    data = RECORDS["streams"]
    strided = memoryview(data * 2).cast("I")[::2]  # every other 4-byte item: not contiguous
    assert not strided.contiguous
    expected = measure_python(strided.tobytes())
    assert measure(strided) == expected and measure_python(strided) == expected


@pytest.mark.skipif(not wire.ACCELERATED, reason="the C walk is not built here")
def test_the_c_walk_answers_for_a_view_of_wide_items():
    view = memoryview(RECORDS["snapshot"]).cast("I")
    found = occurrences(view, (2, 3))
    assert found is not None and found[:2] == (1, START_MS)
