"""Progress display for the recorder: a tqdm bar on a terminal, log lines otherwise.

The log lines are INFO (``libp2p_introspection.record``): progress is news, not a
warning; ``libp2p-introspect record`` shows that logger's INFO lines by default.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

from libp2p_introspection.client.recorder import RecordStats

log = logging.getLogger("libp2p_introspection.record")

#: Seconds between plain progress lines when stderr is not a terminal.
LOG_EVERY_S = 5.0


@contextmanager
def progress_reporter(terminal: bool, total: int | None) -> Iterator[Callable[[RecordStats], None]]:
    """Yield a callback taking :class:`RecordStats`; shows a bar or logs, then cleans up."""
    if terminal:
        bar = tqdm(total=total, unit="snapshot", dynamic_ncols=True, leave=False)

        def update(stats: RecordStats) -> None:
            bar.n = stats.snapshots
            bar.set_postfix_str(
                f"events={stats.events} bytes={stats.bytes} rate={stats.rate / 1024:.0f} KiB/s",
                refresh=False,
            )
            bar.refresh()

        try:
            yield update
        finally:
            bar.close()
    else:
        last: float | None = None

        def log_line(stats: RecordStats) -> None:
            # The first line waits for the first snapshot (the Runtime alone is written
            # first, and a line then would say 0 snapshots for the next 5 s).
            nonlocal last
            now = time.monotonic()
            if not stats.snapshots or (last is not None and now - last < LOG_EVERY_S):
                return
            last = now
            log.info(
                "recorded %d snapshot%s, %d event%s, %d bytes (%.0f KiB/s)",
                stats.snapshots, _plural(stats.snapshots), stats.events, _plural(stats.events),
                stats.bytes, stats.rate / 1024,
            )  # fmt: skip

        yield log_line


def _plural(count: int) -> str:
    return "" if count == 1 else "s"
