"""Shared pieces of the benchmarks: results, statistics, interleaved timing, subprocesses.

Every benchmark module exposes ``run(mode: Mode) -> list[Result]``. A
:class:`Result` is one row of the table: the subject's median, its
baseline's median (measured in the same run, interleaved with it), their
ratio, and a target with its verdict.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio


@dataclass(frozen=True)
class Mode:
    """How big a run is: ``"full"`` (the figures in bench/README.md), ``"quick"``
    (fewer repeats, smaller sizes) or ``"smoke"`` (every benchmark at a tiny size, in
    seconds: it proves the benchmarks still run, its figures mean nothing).

    ``pick(full, quick, smoke)`` returns the value for this mode.
    """

    name: str = "full"

    @property
    def smoke(self) -> bool:
        return self.name == "smoke"

    def pick(self, full: Any, quick: Any, smoke: Any) -> Any:
        return {"full": full, "quick": quick, "smoke": smoke}[self.name]


#: The repository root (``bench/`` lives there); subprocesses run from it.
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """One row of the results table.

    ``value`` and ``baseline`` are medians in ``unit``; ``ratio`` is how the
    subject compares with its baseline (its meaning is in ``ratio_note``:
    ``"time"`` = subject / baseline, lower is better; ``"rate"`` = subject /
    baseline, higher is better); ``target`` is the target's text and ``ok``
    its verdict (``None``: informational row, no target).
    """

    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest-rank on the sorted values."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(data)))
    return data[min(rank, len(data)) - 1]


def interleaved(
    subject: Callable[[], float], baseline: Callable[[], float], repeats: int
) -> tuple[list[float], list[float]]:
    """Run ``baseline`` and ``subject`` alternately ``repeats`` times each (order
    swapped every round, so drift and noise hit both alike); returns both samples."""
    subject_samples: list[float] = []
    baseline_samples: list[float] = []
    for i in range(repeats):
        if i % 2:
            subject_samples.append(subject())
            baseline_samples.append(baseline())
        else:
            baseline_samples.append(baseline())
            subject_samples.append(subject())
    return subject_samples, baseline_samples


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (``perf_counter``)."""
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def fmt(value: float | None, unit: str) -> str:
    """A value with its unit, at a sensible precision."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit in ("MB/s", "events/s", "MiB", "KiB"):
        text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    elif value >= 100:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


# ------------------------------------------------------------------ subprocesses


def python_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class LineProcess:
    """A child process whose stdout is read line by line from trio (bounded waits)."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    @classmethod
    async def start(cls, command: list[str]) -> LineProcess:
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(ROOT),
            env=child_env(),
        )
        return cls(process)

    async def readline(self, timeout: float = 60.0) -> str:
        """The next line of stdout (without its newline); ``RuntimeError`` at EOF."""
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise RuntimeError(f"child {self.process.args!r} ended without a line")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def expect(self, prefix: str, timeout: float = 60.0) -> str:
        """Read lines until one starts with ``prefix``; returns the rest of it."""
        with trio.fail_after(timeout):
            while True:
                line = await self.readline(timeout)
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def stop(self) -> None:
        """Terminate the child (it is ours) and reap it, within a few seconds."""
        if self.process.returncode is None:
            self.process.terminate()
        with trio.move_on_after(5):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of process ``pid`` in KiB, from ``/proc/PID/status``."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


# ---------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    """What this ran on: CPU model, cores, Python, OS, date."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "nproc": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


#: Debian's Chromium, for the browser benchmarks (never a downloaded browser).
CHROMIUM = Path(os.environ.get("LIBP2P_INTROSPECTION_CHROMIUM", "/usr/bin/chromium"))


def require_chromium() -> None:
    """Raise ``RuntimeError`` naming the package when :data:`CHROMIUM` is not installed
    (before a browser benchmark starts anything)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} not found: apt-get install chromium")


def launch_chromium(playwright: Any) -> Any:
    """Headless :data:`CHROMIUM` through ``playwright`` (a started ``sync_playwright()``)."""
    require_chromium()
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
    )  # fmt: skip
