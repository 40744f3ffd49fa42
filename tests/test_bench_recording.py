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
