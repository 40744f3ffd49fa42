"""Run the atheris fuzz target for the decoders for a bounded time (a smoke run; longer
runs: ``python fuzz/fuzz_decoders.py -max_total_time=600``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO


def test_fuzz_decoders_bounded_run():
    pytest.importorskip("atheris")
    result = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "fuzz_decoders.py"), "-max_total_time=8",
         "-runs=200000", "-max_len=4096", "-rss_limit_mb=1024"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    tail = result.stderr[-2000:]
    assert result.returncode == 0, tail
    assert "Done" in tail
