"""The benchmark suite's recording step runs (`python -m bench` is in the README)."""

from __future__ import annotations

import sys

from conftest import REPO

from libp2p_introspection.client.inspect_file import summarize
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import fnv1a32


def test_the_bench_record_step_writes_what_it_is_given(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    sys.modules.pop("bench.recording", None)
    from bench.recording import record_batch

    messages = [pb.ServerMessage(state=pb.State(instant_ts=1000 + i)).SerializeToString()
                for i in range(3)]  # fmt: skip
    path = tmp_path / "recorded.mock"
    record_batch(path, [(m, fnv1a32(m)) for m in messages])
    summary = summarize(path)
    assert summary["records"] == 3 and summary["kinds"]["state"] == 3


def test_the_inspect_floor_checks_every_checksum(tmp_path, monkeypatch):
    # The baseline inspect is held to: read every record and check its FNV-1a, nothing else.
    monkeypatch.syspath_prepend(str(REPO))
    sys.modules.pop("bench.recording", None)
    from bench.recording import checksum_floor, record_batch

    messages = [pb.ServerMessage(state=pb.State(instant_ts=1000 + i)).SerializeToString()
                for i in range(4)]  # fmt: skip
    path = tmp_path / "recorded.mock"
    record_batch(path, [(m, fnv1a32(m)) for m in messages])
    assert checksum_floor(path) == 4
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last record's payload
    path.write_bytes(bytes(data))
    assert checksum_floor(path) == 3 == summarize(path)["records"]
