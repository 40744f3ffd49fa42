"""The Streams view pages its streams from the dashboard (GET /api/streams), in headless
Chromium (test_dashboard_browser.py's fixtures and helpers).

A mock node of 1,500 connections of 10 streams (15,000 streams, 150 pages), churning, a
snapshot every 700 ms. What a user does: sort by a column and walk to the last page,
find a protocol, watch a new snapshot update the page shown, scrub back in time. Every
row shown is checked against the snapshot the dashboard stored for the moment shown
(GET /api/snapshot), sorted as a user expects; the page itself never holds the
snapshot's streams.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_process import dashboard_of_mock
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    _open_page,
    browser,
    open_tab,
    page,
    shown_ts,
    wait_last_snapshot_of_pause,
    wait_shown_ts_above,
    wait_until,
)

CONNECTIONS = 1_500
STREAMS = 10


@pytest.fixture(scope="module")
def many_streams() -> Iterator[str]:
    with dashboard_of_mock(
        connections=CONNECTIONS, streams=STREAMS, churn=0.02, interval_ms=700, seed=9
    ) as url:
        yield url


def _open_streams(pg: Any, url: str) -> None:
    pg.goto(url)
    _resume(pg)  # a test before that failed while paused left the dashboard paused
    pg.wait_for_function(
        "(n) => (window.dashboardState?.view?.conns.length || 0) >= n", arg=CONNECTIONS,
        timeout=60_000,
    )  # fmt: skip
    open_tab(pg, "streams")
    pg.wait_for_function("() => document.querySelectorAll('#streams-table .tabulator-row').length > 5")


def _pause(pg: Any) -> None:
    """Pause the feed; once the snapshot a ready asked for before the pause has come (the
    dashboard awaits no state), until the page shows the latest stored, its streams too."""
    pg.evaluate("async () => { await fetch('/api/pause', { method: 'POST' }); }")
    pg.wait_for_function("() => window.dashboardState.status?.paused === true")
    wait_last_snapshot_of_pause(pg)
    _settled_at_latest(pg)


def _settled_at_latest(pg: Any) -> None:
    """Until the page shows the dashboard's latest snapshot, its Streams table too (a
    snapshot already on its way when the feed paused may still come: read at each poll)."""
    wait_until(
        pg,
        """async () => {
          const latest = (await (await fetch('/api/streams?size=1')).json()).ts;
          const S = window.dashboardState;
          return S.latest?.ts === latest && S.view?.ts === latest
            && Tabulator.findTable('#streams-table')[0].shownTs === latest; }""",
    )  # fmt: skip


def _settled(pg: Any, ts: int) -> None:
    """Until the page shows the moment ts and its Streams table that moment's rows."""
    pg.wait_for_function(
        "(ts) => window.dashboardState.view?.ts === ts"
        " && Tabulator.findTable('#streams-table')[0].shownTs === ts",
        arg=ts,
    )  # fmt: skip


def _resume(pg: Any) -> None:
    pg.evaluate("async () => { await fetch('/api/resume', { method: 'POST' }); }")


# The rows the Streams table shows (once drawn), and the rows a user expects on that
# page: every stream of the stored snapshot of the moment shown, with the protocol and
# status filters of the inputs, sorted by the table's sorter (text ignoring case, ties
# in the snapshot's order), the page's slice of them.
SHOWN_AND_EXPECTED = """async () => {
  const tables = await import('/static/js/tables.js');
  await new Promise((r) => requestAnimationFrame(r));
  await tables.allSet();
  // What is shown, read at once (a snapshot may come while the stored one is fetched).
  const t = Tabulator.findTable('#streams-table')[0];
  const v = window.dashboardState.view;
  const shownTs = t.shownTs;
  const shown = t.getData().map((d) => d.key);
  const [sorter] = t.getSorters();
  const page = t.getPage();
  const maxPage = t.getPageMax();
  const count = document.querySelector('#stream-count').textContent;
  const rowsDrawn = [...document.querySelectorAll('#streams-table .tabulator-row')].length;
  const held = v.conns.some((c) => c.streams !== undefined);
  const stored = await (await fetch(`/api/snapshot?ts=${shownTs}`)).json();
  const find = document.querySelector('#filter-stream-proto').value.trim().toLowerCase();
  const status = document.querySelector('#filter-stream-status').value;
  const all = [];
  for (const c of stored.conns) {
    c.streams.forEach((s, k) => {
      if (find && !s.proto.toLowerCase().includes(find)) return;
      if (status && s.status !== status) return;
      const end = s.status === 'CLOSED' && s.close ? s.close : stored.ts;
      all.push({ key: `${c.id}:${k}`, peer: c.peer, proto: s.proto, status: s.status,
        role: s.role, age: s.open ? end - s.open : 0, in: s.in, out: s.out, n: all.length });
    });
  }
  const field = sorter ? sorter.field : 'age';
  const dir = sorter && sorter.dir === 'desc' ? -1 : 1;
  const text = ['peer', 'proto', 'role', 'status'].includes(field);
  const cmp = (a, b) => {
    const x = text ? a[field].toLowerCase() : a[field];
    const y = text ? b[field].toLowerCase() : b[field];
    if (x < y) return -dir;
    if (x > y) return dir;
    return a.n - b.n;
  };
  all.sort(cmp);
  const size = tables.STREAMS_PAGE_SIZE;
  const expected = all.slice((page - 1) * size, page * size).map((r) => r.key);
  return { ts: v.ts, shownTs, page, maxPage, matched: all.length, shown, expected, count, rowsDrawn, held };
}"""


def _check(pg: Any) -> dict[str, Any]:
    """The page's rows are what a user expects, once what it asked for is drawn (a title
    clicked, a page chosen: Tabulator's load; a bounded wait), else the difference."""
    with contextlib.suppress(TimeoutError):
        wait_until(
            pg,
            f"""async () => {{ const got = await ({SHOWN_AND_EXPECTED})();
                return got.shownTs === got.ts
                  && JSON.stringify(got.shown) === JSON.stringify(got.expected); }}""",
        )  # fmt: skip
    got = pg.evaluate(SHOWN_AND_EXPECTED)
    assert got["shownTs"] == got["ts"]  # the rows of the moment shown
    assert got["shown"] == got["expected"], (got["page"], got["shown"][:5], got["expected"][:5])
    assert got["maxPage"] == max(1, -(-got["matched"] // 100))
    assert not got["held"]  # the page holds no snapshot's streams
    return got


def _click_sort(pg: Any, field: str, aria: str) -> None:
    header = f"#streams-table .tabulator-col[tabulator-field={field}]"
    pg.click(f"{header} .tabulator-col-title")
    pg.wait_for_function(
        f"(a) => document.querySelector('{header}').getAttribute('aria-sort') === a", arg=aria
    )


def test_sorting_across_pages_shows_the_rows_a_user_expects(page: Any, many_streams: str):  # noqa: F811
    _open_streams(page, many_streams)
    _pause(page)
    first = _check(page)  # the default: by age
    assert first["matched"] >= CONNECTIONS * STREAMS * 0.9 and first["page"] == 1
    assert first["count"] == f"{first['matched']} of {first['matched']} streams"
    assert 0 < first["rowsDrawn"] <= 100
    for field, aria in (("in", "ascending"), ("in", "descending"), ("peer", "ascending"),
                        ("status", "ascending"), ("proto", "ascending")):  # fmt: skip
        _click_sort(page, field, aria)
        page.wait_for_function("() => Tabulator.findTable('#streams-table')[0].getPage() === 1")
        _check(page)
    # The last page, and one in the middle, of the last sort.
    table = "Tabulator.findTable('#streams-table')[0]"
    page.evaluate(f"() => {table}.setPage({table}.getPageMax())")
    page.wait_for_function(f"() => {table}.getPage() === {table}.getPageMax()")
    last = _check(page)
    assert 0 < len(last["shown"]) <= 100
    page.evaluate(f"() => {table}.setPage(7)")
    page.wait_for_function(f"() => {table}.getPage() === 7")
    _check(page)
    _resume(page)


def test_finding_a_protocol_and_a_status_pages_only_the_matching_streams(page: Any, many_streams: str):  # noqa: F811
    _open_streams(page, many_streams)
    _pause(page)
    some = page.evaluate("() => Tabulator.findTable('#streams-table')[0].getData()[0].proto")
    needle = some[-5:].upper()
    page.fill("#filter-stream-proto", needle)
    page.wait_for_function(
        "(n) => Tabulator.findTable('#streams-table')[0].getData().every((d) => d.proto.toLowerCase().includes(n))",
        arg=needle.lower(),
    )  # fmt: skip
    got = _check(page)
    assert 0 < got["matched"] < CONNECTIONS * STREAMS
    page.wait_for_function(
        "(m) => document.querySelector('#stream-count').textContent.startsWith(`${m} of `)",
        arg=got["matched"],
    )  # fmt: skip
    page.select_option("#filter-stream-status", "CLOSED")
    page.wait_for_function(
        "() => Tabulator.findTable('#streams-table')[0].getData().every((d) => d.status === 'CLOSED')"
    )
    _check(page)
    page.fill("#filter-stream-proto", "<img src=x onerror=window.__owned=1>")
    page.wait_for_function("() => Tabulator.findTable('#streams-table')[0].getData().length === 0")
    assert _check(page)["matched"] == 0
    assert page.evaluate("() => window.__owned") is None
    page.fill("#filter-stream-proto", "")
    page.select_option("#filter-stream-status", "")
    _resume(page)


def test_a_new_snapshot_updates_the_page_shown_and_keeps_its_place(page: Any, many_streams: str):  # noqa: F811
    _open_streams(page, many_streams)
    _click_sort(page, "peer", "ascending")
    table = "Tabulator.findTable('#streams-table')[0]"
    page.evaluate(f"() => {table}.setPage(3)")
    page.wait_for_function(f"() => {table}.getPage() === 3")
    before = shown_ts(page)
    wait_shown_ts_above(page, before)
    wait_shown_ts_above(page, shown_ts(page))
    _pause(page)
    got = _check(page)  # the rows of the moment shown now, not of the one before
    assert got["ts"] > before and got["page"] == 3
    assert page.evaluate(f"() => {table}.getSorters()[0].field") == "peer"
    # The redraw's timing includes the fetch: one entry per snapshot drawn in this view.
    timings = page.evaluate("() => window.dashboardTimings.filter((t) => t.view === 'streams')")
    assert timings and all(t["ms"] >= t["draw"] >= 0 for t in timings)
    _resume(page)


def test_scrubbing_shows_that_moments_streams(page: Any, many_streams: str):  # noqa: F811
    _open_streams(page, many_streams)
    _click_sort(page, "out", "ascending")
    wait_shown_ts_above(page, shown_ts(page))
    wait_shown_ts_above(page, shown_ts(page))
    _pause(page)
    earlier = page.evaluate("() => window.dashboardState.timeline[0]")
    page.eval_on_selector(
        "#timeline", "(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }"
    )
    _settled(page, earlier)
    page.wait_for_function(
        "(ts) => document.querySelector('#snapshot-ts').dataset.ts === String(ts)", arg=earlier
    )
    got = _check(page)
    assert got["ts"] == earlier
    # Back to live: the latest's streams again.
    page.click("#live-btn")
    page.wait_for_function("() => window.dashboardState.viewTs === null")
    _settled_at_latest(page)
    latest = _check(page)
    assert latest["ts"] > earlier
    _resume(page)


def _wait_table_ts_above(pg: Any, ts: int) -> int:
    """Until the Streams table shows a moment after ts; returns that moment."""
    pg.wait_for_function(
        "(ts) => (Tabulator.findTable('#streams-table')[0].shownTs || 0) > ts", arg=ts
    )
    return int(pg.evaluate("() => Tabulator.findTable('#streams-table')[0].shownTs"))


def test_following_live_the_page_shown_comes_with_each_snapshot_no_request(page: Any, many_streams: str):  # noqa: F811
    # The page tells the dashboard which page of streams it shows (sort, page, find,
    # status); each snapshot then comes with that page's answer: drawn with no request.
    _open_streams(page, many_streams)
    _click_sort(page, "peer", "ascending")
    table = "Tabulator.findTable('#streams-table')[0]"
    page.evaluate(f"() => {table}.setPage(2)")
    page.wait_for_function(f"() => {table}.getPage() === 2")
    seen = _wait_table_ts_above(page, _wait_table_ts_above(page, shown_ts(page)))
    asked: list[str] = []

    def record(request: Any) -> None:
        if "/api/streams" in request.url:
            asked.append(request.url)

    page.on("request", record)
    drawn = []
    for _ in range(3):
        seen = _wait_table_ts_above(page, seen)
        drawn.append(seen)
    page.remove_listener("request", record)
    assert not [u for u in asked if any(f"ts={ts}" in u for ts in drawn)], asked
    timings = page.evaluate("() => window.dashboardTimings.filter((t) => t.view === 'streams')")
    assert any(t.get("pushed") for t in timings)
    _pause(page)
    got = _check(page)  # the rows drawn from what came with the snapshot are the right ones
    assert got["page"] == 2
    # Scrubbed to an earlier moment: that moment's page is asked for, and shown.
    earlier = page.evaluate("() => window.dashboardState.timeline[0]")
    page.eval_on_selector(
        "#timeline", "(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }"
    )
    _settled(page, earlier)
    assert _check(page)["ts"] == earlier
    page.click("#live-btn")
    page.wait_for_function("() => window.dashboardState.viewTs === null")
    _resume(page)
