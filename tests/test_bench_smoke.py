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


@pytest.mark.parametrize("name", ["recording", "snapshot", "stall"])
def test_the_smoke_run_judges_nothing_but_that_it_ran(name, capsys):
    assert bench_run.main(["--smoke", "--only", name]) == 0
    out = capsys.readouterr().out
    assert "mode: smoke" in out
    assert "FAIL" not in out and "PASS" not in out


def test_a_benchmark_whose_code_logs_errors_is_broken(monkeypatch, capsys):
    import logging

    class Noisy:
        @staticmethod
        def run(mode):
            logging.getLogger("libp2p_introspection.introspector.host").error("attach failed")
            return []

    real_import = bench_run.importlib.import_module
    monkeypatch.setattr(
        bench_run.importlib,
        "import_module",
        lambda name: Noisy if name == "bench.snapshot" else real_import(name),
    )
    assert bench_run.main(["--smoke", "--only", "snapshot"]) == 1
    assert "snapshot: BROKEN (logged 1 errors" in capsys.readouterr().err
