"""`python -m bench --smoke` is what keeps the benchmarks from rotting: it must run them all."""

from __future__ import annotations

import pytest

from bench import run as bench_run


def test_a_benchmark_that_raises_makes_the_smoke_run_fail(monkeypatch, capsys):
    class Broken:
        @staticmethod
        def run(mode):
            raise AssertionError("the recorder changed under the benchmark")

    real_import = bench_run.importlib.import_module
    monkeypatch.setattr(
        bench_run.importlib,
        "import_module",
        lambda name: Broken if name == "bench.recording" else real_import(name),
    )
    assert bench_run.main(["--smoke", "--only", "recording"]) == 1
    assert "recording: BROKEN" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["recording", "snapshot"])
def test_the_smoke_run_judges_nothing_but_that_it_ran(name, capsys):
    assert bench_run.main(["--smoke", "--only", name]) == 0
    out = capsys.readouterr().out
    assert "mode: smoke" in out
    assert "FAIL" not in out and "PASS" not in out
