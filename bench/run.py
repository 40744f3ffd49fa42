"""Run the benchmark suite and print the results table.

Usage (from the repository root)::

    python -m bench                 # everything (about 6 minutes here)
    python -m bench --quick         # fewer repeats, smaller transfers (under 2 minutes)
    python -m bench --smoke         # every benchmark at a tiny size: do they still run? (CI)
    python -m bench --only snapshot --only stall
    python -m bench --json results.json

Each benchmark is a module of this package with ``run(mode) -> list[Result]``.
The exit status is 0 when every benchmark ran, whatever its figures (a slow
machine never fails a run); 1 when a benchmark raised or the code it measured
logged an error (it is broken).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
import traceback
from dataclasses import asdict

from bench.common import Mode, Result, fmt, machine

#: Benchmark modules, in the order of the issue.
BENCHMARKS = (
    "snapshot",
    "stall",
    "events",
    "node",
    "pull",
    "recording",
    "memory",
    "nodes_view",
    "dashboard_view",
)


def table(results: list[Result]) -> str:
    header = ("benchmark", "median", "baseline", "ratio", "target", "result")
    rows = [header]
    for r in results:
        verdict = "" if r.ok is None else ("PASS" if r.ok else "FAIL")
        rows.append(
            (
                r.name,
                fmt(r.value, r.unit),
                fmt(r.baseline, r.unit) if r.baseline is not None else "",
                f"{r.ratio:.2f}" if r.ratio is not None else "",
                r.target,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"- {r.name.strip()}: {r.note}" for r in results if r.note]
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "")


class _ErrorCount(logging.Handler):
    """Counts the records of ERROR and above that the code under test logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="every benchmark at a tiny size, in seconds: checks they run (figures mean nothing)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every sample as JSON")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    mode = Mode("smoke" if args.smoke else "quick" if args.quick else "full")
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['nproc']} cores; {info['python']}; {info['os']}; "
        f"{info['date']}; mode: {mode.name}",
        flush=True,
    )
    results: list[Result] = []
    broken: list[str] = []
    errors = _ErrorCount()
    logging.getLogger("libp2p_introspection").addHandler(errors)
    began = time.monotonic()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        t0 = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        errors_before = errors.count
        try:
            rows = module.run(mode)
        except Exception:
            traceback.print_exc()
            print(f"  {name}: BROKEN (raised, see above)", file=sys.stderr, flush=True)
            broken.append(name)
            continue
        if errors.count > errors_before:
            # It ran, but what it measured logged errors (e.g. a stand-in the code
            # under test no longer fits): its figures measure the failure.
            print(f"  {name}: BROKEN (logged {errors.count - errors_before} errors, see above)",
                  file=sys.stderr, flush=True)  # fmt: skip
            broken.append(name)
        print(f"  {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        results += rows
    logging.getLogger("libp2p_introspection").removeHandler(errors)
    if mode.smoke:
        # Tiny sizes make the figures noise: a smoke run judges that the benchmarks run.
        for r in results:
            r.ok = None
    print()
    print(table(results))
    failed = [r.name.strip() for r in results if r.ok is False]
    print(
        f"\n{sum(r.ok is True for r in results)} targets met, {len(failed)} not met"
        f"{': ' + ', '.join(failed) if failed else ''}; total {time.monotonic() - began:.0f} s"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": info, "results": [asdict(r) for r in results]}, out, indent=1)
    if broken:
        print(f"broken benchmarks: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
