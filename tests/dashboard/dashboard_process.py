"""Reading a CLI process's output lines with a deadline (the dashboard tests' helper)."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable


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
