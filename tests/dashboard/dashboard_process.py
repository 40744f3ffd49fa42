"""Reading a CLI process's output lines with a deadline (the dashboard tests' helper)."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator


def read_lines_until(
    process: subprocess.Popen[str], last: Callable[[str], bool], timeout: float
) -> list[str]:
    """Stdout lines up to the first one for which ``last(line)`` holds.

    A thread reads (the first line's read may have buffered the rest, which a
    select on the pipe would not see); it ends at EOF, when the process exits.
    """
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line.strip()) for line in process.stdout], daemon=True
    ).start()
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not got or not last(got[-1]):
        remaining = deadline - time.monotonic()
        try:
            got.append(lines.get(timeout=max(remaining, 0.01)))
        except queue.Empty:
            raise AssertionError(f"no matching line within {timeout}s; got {got}") from None
    return got


@contextlib.contextmanager
def dashboard_of_mock(
    *, connections: int, streams: int, churn: float, interval_ms: int, seed: int,
    closed_connection_lifetime_ms: int | None = None,
) -> Iterator[str]:
    """The URL of a dashboard (``--no-events``) following ``serve --source mock`` of
    that shape (no DHT events; closed connections kept for the mock's default, or
    ``closed_connection_lifetime_ms``), both in their own processes, stopped on exit."""
    from cli_process import running

    serve = ["-m", "libp2p_introspection", "serve", "--source", "mock", "--port", "0",
             "--connections", str(connections), "--streams", str(streams),
             "--churn", str(churn), "--events-per-second", "0",
             "--interval-ms", str(interval_ms), "--seed", str(seed)]  # fmt: skip
    if closed_connection_lifetime_ms is not None:
        serve += ["--closed-connection-lifetime-ms", str(closed_connection_lifetime_ms)]
    with running(serve, first_line_timeout=90) as (_, ws):
        assert ws.startswith("ws://"), ws
        dashboard = ["-m", "libp2p_introspection", "dashboard", ws, "--port", "0", "--no-events"]
        with running(dashboard, first_line_timeout=60) as (process, first):
            lines = (
                [first]
                if first.startswith("http://")
                else read_lines_until(process, lambda line: line.startswith("http://"), 30)
            )
            yield lines[-1].split()[0]
