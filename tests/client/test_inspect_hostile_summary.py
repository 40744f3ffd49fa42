"""``inspect``'s summary on recordings built to mislead it: a faulty snapshot changes no
count but ``unparsable``, a flood of distinct event type names costs bounded memory, and
no string from the file can forge a line of the text summary."""

from __future__ import annotations

import pytest
from hostile_records import field, normal_state, runtime, varint_field, write

from libp2p_introspection.client.inspect_file import summarize
from libp2p_introspection.protocol import wire

START = 1_700_000_000_000


def _state_with_node(node: bytes, ts: int) -> bytes:
    """A snapshot whose ``NodeInfo`` (State field 100) body is ``node``."""
    inner = field(1, b"") + varint_field(3, ts) + field(100, node)
    return field(1, varint_field(1, 1)) + field(2, inner)


def _faulty_node_state(ts: int) -> bytes:
    """A snapshot the wire walk accepts but whose ``NodeInfo`` holds field number 0:
    protowire, which reads the §3.1 counts, refuses it (so a parser would)."""
    return _state_with_node(b"\x00\x00", ts)


@pytest.fixture(params=["C", "Python"])
def walk(request, monkeypatch):
    """Each test runs with the C walk (where built) and with the Python one alone."""
    if request.param == "C":
        if not wire.ACCELERATED:
            pytest.skip("the C walk is not built here")
    else:
        monkeypatch.setattr(wire, "_wirewalk", None)
    return request.param


def test_a_faulty_last_snapshot_leaves_the_states_of_the_sound_ones(tmp_path, walk):
    sound = _state_with_node(varint_field(3, 1), START)  # reachability PUBLIC
    path = write(tmp_path / "faulty-last.mock", [runtime(), sound, _faulty_node_state(START + 9)])
    summary = summarize(path)
    assert summary["unparsable"] == 1 and summary["kinds"]["state"] == 1
    alone = summarize(write(tmp_path / "sound.mock", [runtime(), sound]))
    assert summary["states"] == alone["states"]
    assert summary["states"]["last_instant_ts"] == START
    assert summary["states"]["last_extensions"]["reachability"] == "PUBLIC"


def test_a_faulty_first_snapshot_sets_no_first_instant(tmp_path, walk):
    path = write(
        tmp_path / "faulty-first.mock",
        [runtime(), _faulty_node_state(1), normal_state(START, connections=3)],
    )
    summary = summarize(path)
    assert summary["unparsable"] == 1 and summary["kinds"]["state"] == 1
    assert summary["states"]["first_instant_ts"] == START
    assert summary["states"]["last_instant_ts"] == START
    assert summary["states"]["last_connections"] == 3


def test_only_faulty_snapshots_leave_no_states(tmp_path, walk):
    path = write(tmp_path / "faulty-only.mock", [_faulty_node_state(5), _faulty_node_state(6)])
    summary = summarize(path)
    assert summary["unparsable"] == 2 and summary["kinds"]["state"] == 0
    assert set(summary["states"].values()) == {None}
