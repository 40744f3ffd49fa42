"""Run CLI commands as a user would, in a subprocess, with bounded waits."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def running(
    args: list[str], *, first_line_timeout: float = 60
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``python ARGS``; yield the process and its first stdout line; stop it after."""
    process = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        line = read_line(process, first_line_timeout)
        yield process, line
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line, or AssertionError with stderr if none comes in ``timeout`` s."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=0.2):
            line = process.stdout.readline()
            if line:
                return line.strip()
        if process.poll() is not None:
            break
    stderr = process.stderr.read() if process.stderr and process.poll() is not None else ""
    raise AssertionError(f"no output line within {timeout}s; exit={process.poll()} {stderr}")
