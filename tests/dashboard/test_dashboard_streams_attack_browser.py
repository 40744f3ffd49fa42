"""Attacks on the paged Streams table (tables.js ``streamsTable``) in headless Chromium:
answers arriving out of order while the moment shown changes.

A recording of two moments: the first of 350 streams (4 pages of 100), the second of 30
(one page). The user shows page 3 of the first, scrubs to the second and, while the
refresh of that moment is still on its way (a 50,000-stream moment takes the dashboard
a few hundred ms to answer), picks page 2 of what the pager still says. The dashboard
answers that page clamped (its last page, 1, with that page's rows); the late refresh is
dropped. The pager must then say a page the moment has, and the rows shown must be
that page's rows (test_dashboard_streams_browser.py's SHOWN_AND_EXPECTED).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli_process import running
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    browser,
    open_tab,
    page,
)
from test_dashboard_streams_browser import SHOWN_AND_EXPECTED

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingWriter

START_MS = 1_700_000_000_000
INTERVAL_MS = 1_000
TABLE = "Tabulator.findTable('#streams-table')[0]"


def _write(path: Path, streams_per_moment: list[tuple[int, int]],
           protocol: Any = lambda c, s: f"/p/{c}/{s}") -> Path:  # fmt: skip
    """A recording of one snapshot per (connections, streams each); stream s of
    connection c speaks protocol(c, s)."""
    with RecordingWriter(path, close_stream=True) as writer:
        runtime = pb.Runtime(implementation="py-libp2p", version="0.8.1", platform="test",
                             peer_id="QmSelf")  # fmt: skip
        writer.write_message(pb.ServerMessage(runtime=runtime))
        for i, (conns, streams) in enumerate(streams_per_moment):
            ts = START_MS + i * INTERVAL_MS
            state = pb.State(instant_ts=ts, start_ts=ts - INTERVAL_MS,
                             snapshot_duration_ms=INTERVAL_MS)  # fmt: skip
            for c in range(conns):
                conn = state.subsystems.connections.add(
                    id=bytes([c + 1]), peer_id=f"QmPeer{c}", status=pb.ACTIVE, role=pb.INITIATOR
                )
                conn.timeline.open_ts = START_MS - 5_000
                for s in range(streams):
                    stream = conn.streams.streams.add(
                        id=bytes([s]), protocol=protocol(c, s), status=pb.ACTIVE
                    )
                    stream.timeline.open_ts = START_MS - 1_000 * (s + 1)
            writer.write_message(pb.ServerMessage(state=state))
    return path


def test_a_page_picked_while_a_refresh_is_late_is_a_page_the_moment_has(
    page: Any, tmp_path: Path  # noqa: F811
):  # fmt: skip
    path = _write(tmp_path / "shrinking.mock", [(10, 35), (3, 10)])
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        page.wait_for_function("() => window.dashboardState?.view?.conns.length > 0")
        page.locator("#timeline").fill("0")
        page.wait_for_function("(ts) => window.dashboardState.view?.ts === ts", arg=START_MS)
        open_tab(page, "streams")
        page.wait_for_function(f"(ts) => {TABLE}?.shownTs === ts", arg=START_MS)
        page.evaluate(f"() => {TABLE}.setPage(3)")
        page.wait_for_function(f"() => {TABLE}.getPage() === 3 && {TABLE}.getData()[0]?.key")
        before = page.evaluate(SHOWN_AND_EXPECTED)
        assert before["shown"] == before["expected"] and before["maxPage"] == 4, before

        held: list[Any] = []

        def hold_first(route: Any) -> None:
            if not held:
                held.append(route)  # the refresh of the new moment: answered last
            else:
                route.continue_()

        page.route("**/api/streams?*", hold_first)
        with page.expect_request(lambda r: "/api/streams?" in r.url):
            page.locator("#timeline").fill("1")
        page.wait_for_function("(ts) => window.dashboardState.view?.ts === ts",
                               arg=START_MS + INTERVAL_MS)  # fmt: skip
        for _ in range(100):  # bounded round trips: each lets the route handler run
            if held:
                break
            page.evaluate("() => 0")
        assert held, "the page did not refresh the Streams table for the new moment"
        page.evaluate(f"() => {TABLE}.setPage(2)")  # the pager still offers 4 pages
        page.wait_for_function(f"() => {TABLE}.getPageMax() === 1")
        held[0].continue_()
        page.unroute("**/api/streams?*")
        after = page.evaluate(SHOWN_AND_EXPECTED)
        assert after["shownTs"] == START_MS + INTERVAL_MS, after
        assert after["page"] <= after["maxPage"], (
            f"the pager says page {after['page']} of {after['maxPage']}", after["count"])
        assert after["shown"] == after["expected"], after


def test_finding_a_long_protocol_shown_in_the_table_shows_its_stream(
    page: Any, tmp_path: Path  # noqa: F811
):  # fmt: skip
    """Protocols are shown up to 1,024 characters (caps.MAX_TEXT); a user pastes one
    of 300 into the protocol filter. The dashboard refuses a find over 256 characters
    (400): the table must not go on showing every stream as if it were filtered."""
    long = "/long/" + "x" * 294
    path = _write(tmp_path / "long.mock", [(3, 4)],
                  protocol=lambda c, s: long if (c, s) == (1, 2) else f"/p/{c}/{s}")  # fmt: skip
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        page.wait_for_function("() => window.dashboardState?.view?.conns.length > 0")
        open_tab(page, "streams")
        page.wait_for_function(f"() => {TABLE}?.getData().length === 12")
        page.fill("#filter-stream-proto", long)
        after = page.evaluate(SHOWN_AND_EXPECTED)
        shown = page.evaluate(f"() => {TABLE}.getData().map((d) => d.proto)")
        assert shown == [long], (len(shown), after["count"])


def test_the_pagers_row_count_is_the_moments_after_a_refresh(page: Any, tmp_path: Path):  # noqa: F811
    """A moment of 350 streams, then one of 320 (both four pages): after the scrub the
    table's pager ("Showing 1-100 of N rows", paginationCounter "rows") must count the
    moment shown, as the view's own count does."""
    path = _write(tmp_path / "fewer.mock", [(10, 35), (10, 32)])
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        page.wait_for_function("() => window.dashboardState?.view?.conns.length > 0")
        page.locator("#timeline").fill("0")
        page.wait_for_function("(ts) => window.dashboardState.view?.ts === ts", arg=START_MS)
        open_tab(page, "streams")
        page.wait_for_function(f"(ts) => {TABLE}?.shownTs === ts", arg=START_MS)
        counter = "#streams-table .tabulator-page-counter"
        page.wait_for_function("(s) => document.querySelector(s)?.textContent.includes('350')",
                               arg=counter)  # fmt: skip
        page.locator("#timeline").fill("1")
        page.wait_for_function(f"(ts) => {TABLE}?.shownTs === ts", arg=START_MS + INTERVAL_MS)
        after = page.evaluate(SHOWN_AND_EXPECTED)
        assert after["shown"] == after["expected"] and after["count"] == "320 of 320 streams", after
        text = page.locator(counter).text_content()
        assert "320" in (text or ""), f"the pager says {text!r} of a moment of 320 streams"


# The Streams table's drawn rows (tables.js refreshInWindow, test_dashboard_conns_window_
# browser.py's SHOWS_SNAPSHOT for the Connections table): consecutive display rows,
# each showing its row's protocol, covering the visible area (no band left blank above
# or below them). Returns what is wrong, or "".
DRAWN = """() => {
  const t = Tabulator.findTable('#streams-table')[0];
  const display = t.getRows('display');
  const at = new Map(display.map((r, i) => [r.getElement(), i]));
  const els = [...document.querySelectorAll('#streams-table .tabulator-row')];
  if (!els.length) return 'no row drawn';
  const first = at.get(els[0]);
  for (let k = 0; k < els.length; k += 1) {
    if (at.get(els[k]) !== first + k) return `drawn row ${k} is display row ${at.get(els[k])}`;
    const d = t.getRow(els[k]).getData();
    const text = els[k].querySelector('[tabulator-field=proto]').textContent;
    if (text !== (d.proto || '(negotiating)')) return `drawn row ${k} shows ${text}, not ${d.proto}`;
  }
  const holder = document.querySelector('#streams-table .tabulator-tableholder');
  const top = holder.getBoundingClientRect().top;
  const above = els[0].getBoundingClientRect().top - top;
  const below = els[els.length - 1].getBoundingClientRect().bottom - top;
  if (above > 1) return `a blank band of ${above} px above the rows drawn (scrollTop ${holder.scrollTop})`;
  if (below < holder.clientHeight - 1 && at.get(els[els.length - 1]) !== display.length - 1) {
    return `a blank band below the rows drawn (${below} of ${holder.clientHeight} px)`;
  }
  return '';
}"""


def test_a_streams_page_scrolled_while_scrubbing_stays_drawn_after_each_refresh(
    page: Any, tmp_path: Path  # noqa: F811
):  # fmt: skip
    """Page 1 of the Streams table sorted by protocol (descending); a user scrolls within
    the page (to its middle, near its end, back up, to its middle again) and scrubs to
    the next moment each time (350, 350, 280, 300, then 420 streams: page 1's rows change,
    updated in place). After each refresh the rows drawn must be the page's rows, in
    order, and cover the table's visible area (no blank band)."""
    path = _write(tmp_path / "scrolled.mock", [(10, 35), (10, 35), (8, 35), (10, 30), (12, 35)])
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        page.wait_for_function("() => window.dashboardState?.view?.conns.length > 0")
        page.locator("#timeline").fill("0")
        page.wait_for_function("(ts) => window.dashboardState.view?.ts === ts", arg=START_MS)
        open_tab(page, "streams")
        page.wait_for_function(f"(ts) => {TABLE}?.shownTs === ts", arg=START_MS)
        page.evaluate(f"() => {TABLE}.setSort('proto', 'desc')")  # as a title clicked twice
        page.wait_for_function(f"() => {TABLE}.getData()[0]?.proto === '/p/9/9'")
        problems = []
        for moment, part in ((1, 0.5), (2, 0.8), (3, 0.3), (4, 0.5)):
            page.evaluate("""(part) => {
              const h = document.querySelector('#streams-table .tabulator-tableholder');
              h.scrollTop = Math.floor(h.scrollHeight * part);
              h.dispatchEvent(new Event('scroll'));
            }""", part)  # fmt: skip
            page.wait_for_function("() => new Promise((r) => requestAnimationFrame(() => r(true)))")
            page.locator("#timeline").fill(str(moment))
            page.wait_for_function(f"(ts) => {TABLE}?.shownTs === ts",
                                   arg=START_MS + moment * INTERVAL_MS)  # fmt: skip
            after = page.evaluate(SHOWN_AND_EXPECTED)
            assert after["shown"] == after["expected"], after
            page.wait_for_function("() => new Promise((r) => requestAnimationFrame(() => r(true)))")
            wrong = page.evaluate(f"() => ({DRAWN})()")
            if wrong:
                problems.append(f"at moment {moment}, scrolled to {part}: {wrong}")
        assert not problems, problems
