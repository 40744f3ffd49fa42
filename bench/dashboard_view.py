"""A dashboard following a node of 5,000 connections x 10 streams, in Chromium.

Subject: ``libp2p-introspect serve --source mock`` (5,000 connections of 10
streams, the mock's default 2% churn per snapshot, DHT events at 20/s, one
snapshot per second) and ``libp2p-introspect dashboard`` following it, each in
its own process, on loopback; headless Chromium (Debian's ``/usr/bin/chromium``,
through Playwright) opens the page. For each view in turn (the tab clicked,
then a few snapshots waited for):

- **redraw**: the time from a snapshot's WebSocket message arriving in the
  page to the view shown drawn again with it: the message parsed, the page's
  state updated, the next animation frame, the header (node, timeline) and the
  view's tables and charts rebuilt, and the layout (the page reads the view's
  height at the end, which forces style and layout inside the measurement),
  from ``performance.now()`` (the page's ``window.dashboardTimings``). The
  Streams view fetches the page of streams it shows from the dashboard
  (``GET /api/streams``): the fetch, and the draw of the rows fetched, are in
  the measurement (in *draw*); since the page tells the dashboard which page it
  shows, that page comes with each snapshot and no request is made (the note
  says how many were, and the fetch and rows-updated parts of *draw*). Its
  parts are in the note: *parse* (JSON.parse and the page's state), *wait*
  (until the frame), *draw* (header, view, layout). Reported: p50 and p95 per
  view (ms), over :data:`SNAPSHOTS_PER_VIEW` snapshots per view in the full mode
  (20: the p95 is the 19th of 20, so one slow frame alone does not decide it; 4 in
  ``--quick``, 2 in ``--smoke``); target: p95 at most 100 ms (the issue's bound).
- **memory**: the page's JS heap (``Runtime.getHeapUsage`` over CDP, after a
  forced GC) and the dashboard process's RSS (``/proc``), sampled every
  second from start to end. The dashboard keeps ``RETENTION_S`` of
  snapshots; once that window is full of steady snapshots, neither should grow:
  reported is each one's growth from that moment to the end, at least
  :data:`MEMORY_WINDOW_S` later. The mock's snapshots themselves grow for its
  closed connections' lifetime (``DEFAULT_CLOSED_CONNECTION_LIFETIME_MS``, 120 s:
  a closed connection stays that long, and 2% are replaced per second, so a
  snapshot holds some 5,000 closed ones once steady), so the window is full of
  steady snapshots that lifetime plus ``RETENTION_S`` (plus 5 s) after the server
  started, and not before; measured earlier, the row would be the input's growth
  (``--quick`` and ``--smoke`` do not wait for it).
  Target: at most 10% of the value at that moment, plus 16 MiB (bounded by the
  retention, not by the run's length).
- **conversion**: what the dashboard process spends per snapshot before any
  page sees it (the protobuf converted to JSON, summarized and stored, its
  text built), measured in this process on the mock's own snapshot (median,
  ms; the note gives its CPU time, garbage collection included), and the
  size of the text every page is sent per snapshot (MiB). Twice: on the mock's
  first snapshots (5,000 connections), and **at the steady state**, after the
  mock's closed-connection lifetime (120 s, simulated on a fake clock) when its
  snapshots hold some 17,000 connections, two thirds of them CLOSED and
  unchanged (20 snapshots in the full mode).

No baseline: the bounds are absolute.

``BENCH_DASHBOARD_VIEWS=connections,streams`` measures only those views (their tab
names, comma-separated; all by default): all eight take about 16 minutes here.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    ROOT,
    Mode,
    Result,
    child_env,
    launch_chromium,
    percentile,
    python_command,
    require_chromium,
    rss_kib,
)
from libp2p_introspection.config import DEFAULT_CLOSED_CONNECTION_LIFETIME_MS

TARGET_MS = 100.0
#: How long the mock keeps a closed connection in its snapshots, s (its snapshots grow
#: for that long, then are steady).
CLOSED_LIFETIME_S = DEFAULT_CLOSED_CONNECTION_LIFETIME_MS // 1000
#: How long memory is sampled once the window is full of steady snapshots (full, quick,
#: smoke), s.
MEMORY_WINDOW_S = (60, 20, 2)
#: Snapshots measured per view: full, quick, smoke (each after the first, which may wait
#: for the view's first build). The p95 is over these.
SNAPSHOTS_PER_VIEW = (20, 4, 2)
#: The views measured: tab name, label. (Nodes has its own benchmark, nodes_view.)
VIEWS = (
    ("connections", "connections"),
    ("streams", "streams"),
    ("traffic", "traffic"),
    ("protocols", "protocols"),
    ("pubsub", "pubsub"),
    ("resources", "resources"),
    ("dht", "DHT"),
    ("events", "events"),
)


@dataclass
class Processes:
    """The node's server and the dashboard, child processes of ours."""

    server: subprocess.Popen[str]
    dashboard: subprocess.Popen[str]
    dashboard_url: str
    rss: list[tuple[float, int]] = field(default_factory=list)  # (s since start, KiB)


def _start(
    command: list[str], prefix: str, timeout: float = 120.0
) -> tuple[subprocess.Popen[str], str]:
    """Start ``command``; wait for its first stdout line starting with ``prefix``."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, cwd=str(ROOT), env=child_env())  # fmt: skip
    found: list[str] = []
    reader_done = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if not found and line.startswith(prefix):
                found.append(line.strip())
                reader_done.set()
        reader_done.set()

    threading.Thread(target=read, daemon=True).start()
    if not reader_done.wait(timeout) or not found:
        _stop(process)
        raise RuntimeError(f"{command[:4]} printed no {prefix!r} line within {timeout:.0f} s")
    return process, found[0]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def conversion(
    connections: int, streams: int, repeats: int, warm_s: int = 0
) -> tuple[list[float], list[float], int]:
    """ms per snapshot the dashboard process spends on the mock's snapshot before any
    page sees it (convert, store, build the message text): wall and CPU time (the
    process's, garbage collection included, with the collector set as the
    ``dashboard`` command sets it: ``convert.tune_collector``), and that text's size
    (chars).

    ``warm_s``: seconds of the mock's life (one snapshot a second, on a fake clock)
    simulated, not measured, before the snapshots measured: past its closed
    connections' lifetime (:data:`DEFAULT_CLOSED_CONNECTION_LIFETIME_MS`) its
    snapshots are steady, some 17,000 connections at 5,000 (two thirds of them
    CLOSED and the same bytes every snapshot), which the first ones (``warm_s`` 0,
    5,000 connections) do not show."""
    from libp2p_introspection.dashboard.browsers import BrowserHub
    from libp2p_introspection.dashboard.convert import tune_collector
    from libp2p_introspection.dashboard.model import DashboardModel
    from libp2p_introspection.dashboard.store import Store
    from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

    now = [1_700_000_000_000]

    def clock() -> int:
        return now[0]

    source = SyntheticSource(
        SyntheticOptions(connections=connections, streams=streams, seed=1, clock_ms=clock)
    )
    for _ in range(warm_s):
        now[0] += 1_000
        source.encoded_state()
    hub = BrowserHub()
    model = DashboardModel(Store(), hub)
    sent: list[int] = []
    hub.broadcast = lambda text: sent.append(len(text))  # type: ignore[method-assign]
    states = []
    for _ in range(repeats + 1):
        now[0] += 1_000
        states.append(source.state())
    model.feed_state(states[0])  # the first builds what later ones compare with
    times, cpu = [], []
    thresholds = tune_collector()
    try:
        for state in states[1:]:
            began, began_cpu = time.perf_counter(), time.process_time()
            model.feed_state(state)
            times.append((time.perf_counter() - began) * 1000)
            cpu.append((time.process_time() - began_cpu) * 1000)
    finally:
        gc.set_threshold(*thresholds)
    return times, cpu, sent[-1]


def _views() -> tuple[tuple[str, str], ...]:
    """:data:`VIEWS`, or those named in ``BENCH_DASHBOARD_VIEWS`` (module doc)."""
    named = os.environ.get("BENCH_DASHBOARD_VIEWS", "")
    wanted = [v.strip() for v in named.split(",") if v.strip()]
    if not wanted:
        return VIEWS
    unknown = set(wanted) - {tab for tab, _ in VIEWS}
    if unknown:
        raise ValueError(f"BENCH_DASHBOARD_VIEWS: no such view {sorted(unknown)}")
    return tuple(v for v in VIEWS if v[0] in wanted)


def views(page: Any, samples: dict[str, Any], per_view: int, redraws: int,
          heap: Callable[[], None]) -> None:  # fmt: skip
    """Each view in turn: its redraws after snapshots, and from the same snapshot."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for tab, _ in _views():
        samples["view"] = tab
        page.click(f"button[data-tab={tab}]", timeout=60_000)
        page.evaluate("() => window.dashboardTimings.splice(0)")
        try:
            page.wait_for_function(
                "([tab, n]) => window.dashboardTimings"
                ".filter((t) => t.view === tab).length >= n",
                arg=[tab, per_view + 1], timeout=60_000 + per_view * 10_000,
            )  # fmt: skip
        except PlaywrightTimeout:  # a loaded machine: what came in time
            samples.setdefault("short", []).append(tab)
        got = page.evaluate("() => window.dashboardTimings.splice(0)")
        # The first may have waited for the first build: the rest are redraws.
        samples["views"][tab] = [t for t in got if t["view"] == tab][1:]
        samples["redraws"][tab] = [
            page.evaluate("() => window.dashboardRedraw()") for _ in range(redraws)
        ]
        heap()


def measure(mode: Mode) -> dict[str, Any]:
    """Run the subject (module doc); returns every sample."""
    require_chromium()
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    connections = mode.pick(5000, 5000, 40)
    streams = mode.pick(10, 10, 3)
    interval_ms = mode.pick(1000, 1000, 250)
    retention_s = mode.pick(20, 15, 2)
    per_view = mode.pick(*SNAPSHOTS_PER_VIEW)
    redraws = mode.pick(10, 5, 2)
    server, line = _start(python_command(
        "libp2p_introspection", "serve", "--source", "mock", "--port", "0", "--seed", "1",
        "--connections", str(connections), "--streams", str(streams),
        "--interval-ms", str(interval_ms),
    ), "ws://")  # fmt: skip
    began = time.monotonic()
    samples: dict[str, Any] = {"views": {}, "redraws": {}, "heap": [], "rss": [],
                               "connections": connections,
                               "streams": streams, "retention_s": retention_s}  # fmt: skip
    stop_sampling = threading.Event()
    try:
        dashboard, page_url = _start(python_command(
            "libp2p_introspection", "dashboard", line.split()[0], "--port", "0",
            "--retention-ms", str(retention_s * 1000),
        ), "http://")  # fmt: skip
        try:

            def sample_rss() -> None:
                while not stop_sampling.wait(1.0):
                    try:
                        rss = rss_kib(dashboard.pid)[0]
                        samples["rss"].append((time.monotonic() - began, rss))
                    except OSError:
                        return

            threading.Thread(target=sample_rss, daemon=True).start()
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    cdp = page.context.new_cdp_session(page)

                    def heap() -> None:
                        cdp.send("HeapProfiler.collectGarbage")
                        used = cdp.send("Runtime.getHeapUsage")["usedSize"]
                        samples["heap"].append((time.monotonic() - began, used // 1024))

                    page.goto(page_url.split()[0])
                    page.wait_for_function(
                        "(n) => (window.dashboardState?.latest?.conns.length || 0) >= n",
                        arg=connections, timeout=180_000,
                    )  # fmt: skip
                    samples["first_at"] = time.monotonic() - began
                    try:
                        views(page, samples, per_view, redraws, heap)
                    except PlaywrightError as exc:  # the page died (it has, out of memory)
                        samples["crashed"] = f"{samples.get('view', '?')}: {exc}".splitlines()[0]
                    # Memory once the retention window is full, and on to the end.
                    # (Every view was shown by now: the heap holds what each keeps.)
                    samples["memory_from"] = max(
                        time.monotonic() - began, _steady_s(mode, retention_s)
                    )
                    until = began + samples["memory_from"] + mode.pick(*MEMORY_WINDOW_S)
                    if "crashed" not in samples:
                        page.click("button[data-tab=connections]")
                        heap()
                    while "crashed" not in samples and time.monotonic() < until:
                        time.sleep(mode.pick(3.0, 3.0, 0.5))
                        heap()
                finally:
                    with contextlib.suppress(PlaywrightError):
                        browser.close()
        finally:
            stop_sampling.set()
            _stop(dashboard)
    finally:
        _stop(server)
    times, cpu, size = conversion(connections, streams, mode.pick(5, 3, 2))
    samples["conversion_ms"] = times
    samples["conversion_cpu_ms"] = cpu
    samples["message_chars"] = size
    warm_s = mode.pick(CLOSED_LIFETIME_S + 5, 3, 1)
    times, cpu, size = conversion(connections, streams, mode.pick(20, 3, 2), warm_s)
    samples["steady_conversion"] = {"warm_s": warm_s, "ms": times, "cpu_ms": cpu, "chars": size}
    return samples


def _steady_s(mode: Mode, retention_s: float) -> float:
    """When, from the server's start (s), the dashboard's window holds only snapshots of
    a node in its steady state: the mock's closed connections' lifetime (its snapshots
    grow until the first ones age out) plus the retention, plus 5 s. In ``--quick`` and
    ``--smoke`` the window's own length only: they do not wait two minutes for a steady
    node, so their memory rows are indicative only."""
    return mode.pick(CLOSED_LIFETIME_S, 0, 0) + retention_s + 5.0


def _growth(points: list[tuple[float, int]], full_at: float) -> tuple[int, int] | None:
    """(value once the window is full, growth from then to the last point), KiB."""
    after = [v for t, v in points if t >= full_at]
    if len(after) < 2:
        return None
    start = statistics.median(after[: max(1, min(3, len(after) // 3))])
    return int(start), int(max(after[-3:]) - start)


def run(mode: Mode) -> list[Result]:
    s = measure(mode)
    n = f"{s['connections']:,}x{s['streams']}"
    results = []
    for tab, label in VIEWS:
        rows = s["views"].get(tab, [])
        if not rows:
            continue
        ms = [r["ms"] for r in rows]
        parts = {k: statistics.median(r[k] for r in rows) for k in ("parse", "wait", "draw")}
        # The Streams table's share of draw (its page fetched, or sent with the snapshot).
        fetched = [r for r in rows if "fetch" in r]
        hows = Counter(r.get("how", "?") for r in fetched)
        streams_part = (
            f"; in draw, the page of streams: fetch median "
            f"{statistics.median(r['fetch'] for r in fetched):.0f}, rows updated "
            f"{statistics.median(r['update'] for r in fetched):.0f} ms, "
            f"{sum(1 for r in fetched if r.get('pushed'))} of {len(fetched)} sent with "
            f"the snapshot (no request); rows updated "
            + ", ".join(f"{how} {n}" for how, n in sorted(hows.items()))
            if fetched else ""
        )  # fmt: skip
        p95 = percentile(ms, 95)
        again = s["redraws"].get(tab) or [math.nan]
        results.append(Result(
            name=f"dashboard redraw, {n} ({label}) p95", value=p95, unit="ms",
            target=f"<= {TARGET_MS:g} ms", ok=p95 <= TARGET_MS,
            note=(("(fewer snapshots came in time) " if tab in s.get("short", []) else "")
                  + f"p50 {percentile(ms, 50):.0f} ms, max {max(ms):.0f} ms over {len(ms)} "
                  f"snapshots (the p95 is over these); median parse {parts['parse']:.0f}, "
                  f"wait {parts['wait']:.0f}, draw {parts['draw']:.0f} ms; the same snapshot "
                  f"drawn again: median {statistics.median(again):.0f} ms{streams_part}"),
            extra={"samples": rows, "redraws_ms": again},
        ))  # fmt: skip
    # The retention window is full RETENTION_S after the first snapshot (and a margin), of
    # steady snapshots at memory_from (_steady_s), and each view has built what it keeps
    # once all were shown.
    full_at = max(s["first_at"] + s["retention_s"] + 5.0, s.get("memory_from", 0.0))
    for key, label in (("heap", "page JS heap"), ("rss", "dashboard RSS")):
        grown = _growth(s[key], full_at)
        if grown is None:
            continue
        start, growth = grown
        bound = start * 0.10 + 16 * 1024
        results.append(Result(
            name=f"dashboard {label} growth once the {s['retention_s']} s window is full, {n}",
            value=growth / 1024, unit="MiB", target="<= 10% + 16 MiB", ok=growth <= bound,
            note=f"{start / 1024:.0f} MiB when full; samples (s, KiB): {s[key][::5]}",
            extra={"samples": s[key]},
        ))  # fmt: skip
    if "crashed" in s:
        results.append(Result(
            name=f"dashboard page, {n}: died", value=math.nan, unit="ms", target="never",
            ok=False, note=f"the page (Chromium's renderer) died in the view {s['crashed']}",
        ))  # fmt: skip
    conv = s["conversion_ms"]
    results.append(Result(
        name=f"dashboard conversion per snapshot, {n}", value=statistics.median(conv), unit="ms",
        note=(f"CPU median {statistics.median(s['conversion_cpu_ms']):.0f} ms; sent to every "
              f"page: {s['message_chars'] / 2**20:.1f} MiB of JSON per snapshot"),
        extra={"samples_ms": conv, "cpu_ms": s["conversion_cpu_ms"]},
    ))  # fmt: skip
    steady = s["steady_conversion"]
    not_yet = "" if steady["warm_s"] > CLOSED_LIFETIME_S else ": not yet steady in this mode"
    results.append(Result(
        name=f"dashboard conversion per snapshot at the steady state, {n}",
        value=statistics.median(steady["ms"]), unit="ms",
        note=(f"after {steady['warm_s']} s of the mock's life on a fake clock (its closed "
              f"connections kept {CLOSED_LIFETIME_S} s{not_yet}); CPU median "
              f"{statistics.median(steady['cpu_ms']):.0f} ms over {len(steady['ms'])} "
              f"snapshots; sent to every page: {steady['chars'] / 2**20:.1f} MiB"),
        extra={"samples_ms": steady["ms"], "cpu_ms": steady["cpu_ms"]},
    ))  # fmt: skip
    return results
