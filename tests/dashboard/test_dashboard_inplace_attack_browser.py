"""The Traffic view's connection chooser of a big node (over 500 connections: its options
brought up to date only when the user is about to use it, app.js ``renderTraffic``),
in headless Chromium (as test_dashboard_browser.py, whose fixtures this reuses).

The chooser shows the chosen connection's option even while the user does not touch
it: that text must follow the snapshot shown (its status), not stay what it was when
the options were last filled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_process import dashboard_of_mock
from test_dashboard_browser import browser, open_tab, page  # noqa: F401 - the fixtures

CONNECTIONS = 600  # over the chooser's CHOOSER_LIVE_OPTIONS


@pytest.fixture(scope="module")
def big_churning_node() -> Iterator[str]:
    """The dashboard's URL, following a mock node of 600 connections that come and go."""
    with dashboard_of_mock(
        connections=CONNECTIONS, streams=1, churn=0.1, interval_ms=300, seed=11
    ) as url:
        yield url


# The text the chooser should show for connection `id` in the snapshot shown (app.js
# fillChooser's), and what it shows.
CHOSEN_TEXT = """(id) => {
  const v = window.dashboardState.view;
  const c = v.conns.find((x) => x.id === id);
  const want = c ? `${window.__fmt.shortPeer(c.peer)} · ${c.status} · ${c.mux || '?'}`
    : '(chosen connection, not in this snapshot)';
  const select = document.querySelector('#traffic-conn');
  return { want, shown: select.selectedOptions[0]?.text, value: select.value,
           status: c ? c.status : null };
}"""


def _open(pg: Any, url: str) -> None:
    """The page at ``url``, with the page's own formatter loaded as ``window.__fmt``,
    once the snapshot shown holds every connection."""
    pg.goto(url)
    pg.evaluate("async () => { window.__fmt = await import('/static/js/format.js'); }")
    pg.wait_for_function(
        "(n) => (window.dashboardState?.view?.conns.length || 0) >= n", arg=CONNECTIONS
    )


def test_the_chosen_connection_shows_its_status_of_the_moment(page: Any, big_churning_node: str):  # noqa: F811
    _open(page, big_churning_node)
    open_tab(page, "traffic")
    page.wait_for_function(
        "(n) => document.querySelectorAll('#traffic-conn option').length > n", arg=CONNECTIONS
    )
    chosen = page.evaluate(
        "() => window.dashboardState.view.conns.find((x) => x.status === 'ACTIVE').id"
    )
    page.select_option("#traffic-conn", chosen)
    page.locator("#traffic-conn").blur()
    page.mouse.click(5, 5)  # away from the chooser: the user no longer touches it
    # Churn closes the connection (then drops it) a few snapshots later.
    page.wait_for_function(
        "(id) => { const c = window.dashboardState.view.conns.find((x) => x.id === id);"
        " return !c || c.status !== 'ACTIVE'; }",
        arg=chosen,
        timeout=60_000,
    )  # fmt: skip
    # The page draws the snapshot it holds: its chooser then says so.
    from playwright.sync_api import Error

    try:
        page.wait_for_function(
            f"(id) => {{ const s = ({CHOSEN_TEXT})(id); return s.value === id"
            " && s.shown === s.want; }",
            arg=chosen,
            timeout=10_000,
        )
    except Error:
        pytest.fail(f"the chooser shows {page.evaluate(CHOSEN_TEXT, chosen)}")


# The connections table's drawn rows against the snapshot shown: [problems]. Each drawn
# row is of a connection of the snapshot, shows its values (peer, status, in, out, age),
# and the drawn rows are in the order of traffic in, most first.
LIVE_CHECK = """() => {
  const fmt = window.__fmt;
  const v = window.dashboardState.view;
  const byId = new Map(v.conns.map((c) => [c.id, c]));
  const table = Tabulator.findTable('#connections-table')[0];
  const problems = [];
  const els = [...document.querySelectorAll('#connections-table .tabulator-row')]
    .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
  if (!els.length) problems.push('no row drawn');
  let last = Infinity;
  for (const el of els) {
    const d = table.getRow(el)?.getData();
    const c = d && byId.get(d.id);
    if (!c) { problems.push(`a row of no connection of the snapshot: ${d?.id}`); continue; }
    const text = (f) => el.querySelector(`[tabulator-field=${f}]`).textContent;
    if (el.querySelector('.peer-cell').title !== c.peer) problems.push(`${c.id} peer`);
    if (text('status') !== c.status) problems.push(`${c.id} status ${text('status')} for ${c.status}`);
    if (text('in') !== fmt.bytes(c.in) + fmt.rate(c.bwIn)) problems.push(`${c.id} in`);
    if (text('out') !== fmt.bytes(c.out) + fmt.rate(c.bwOut)) problems.push(`${c.id} out`);
    if (c.in > last) problems.push(`${c.id} out of order`);
    last = c.in;
  }
  return problems;
}"""


def test_rows_are_right_after_another_view_was_shown(page: Any, big_churning_node: str):  # noqa: F811
    from playwright.sync_api import Error

    _open(page, big_churning_node)
    header = "#connections-table .tabulator-col[tabulator-field=in]"
    while page.get_attribute(header, "aria-sort") != "descending":
        page.click(f"{header} .tabulator-col-title")
    for view in ("streams", "traffic", "events", "streams"):
        open_tab(page, view)
        ts = page.evaluate("() => window.dashboardState.view.ts")
        page.wait_for_function("(ts) => window.dashboardState.view.ts > ts", arg=ts)
        open_tab(page, "connections")
        try:  # drawn a moment after the snapshot arrives (they come every 300 ms)
            page.wait_for_function(f"() => ({LIVE_CHECK})().length === 0", timeout=10_000)
        except Error:
            pytest.fail(f"after {view}: {page.evaluate(LIVE_CHECK)}")
    # Rows drawn again from far down the table (rows left out of the page while others
    # were updated in place, drawn when scrolled to), across snapshots.
    for top in (4_000, 12_000, 0):
        page.evaluate(
            "(top) => { document.querySelector('#connections-table .tabulator-tableholder')"
            ".scrollTop = top; }",
            top,
        )  # fmt: skip
        ts = page.evaluate("() => window.dashboardState.view.ts")
        page.wait_for_function("(ts) => window.dashboardState.view.ts > ts", arg=ts)
        try:
            page.wait_for_function(f"() => ({LIVE_CHECK})().length === 0", timeout=10_000)
        except Error:
            pytest.fail(f"scrolled to {top}: {page.evaluate(LIVE_CHECK)}")
