"""The Connections table's drawn rows after a snapshot, in headless Chromium (as
test_dashboard_inplace_browser.py, whose fixtures and helpers this reuses).

At a new snapshot the table no longer takes out and draws again every row in view
(static/js/tables.js ``refreshInWindow``): the rows are sorted and filtered again, the
rows at the drawn positions put in place (those not drawn before built with the new
values), the scroll position kept, the room below the drawn rows following the number
of rows. What a user relies on must hold at every snapshot: the rows shown are those
of the snapshot at their sorted places (new connections on top, sorted by age), with
its values; the table scrolled to the middle stays there and shows the rows of those
places; a row changed while out of view shows its new values when scrolled to; the
table's end is reachable; a filter applies to rows whose values changed. A mock node
of 600 connections of 2 streams, 5% of them replaced at every snapshot (two a second).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_process import dashboard_of_mock
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    browser,
    open_following,
    page,
    shown_ts,
    wait_shown_ts_above,
)

CONNECTIONS = 600


@pytest.fixture(scope="module")
def churning_node() -> Iterator[str]:
    """The dashboard's URL, following a mock node whose connections come and go."""
    with dashboard_of_mock(
        connections=CONNECTIONS, streams=2, churn=0.05, interval_ms=500, seed=11
    ) as url:
        yield url


def _open(pg: Any, url: str) -> None:
    open_following(pg, url, CONNECTIONS)


def _next_snapshots(pg: Any, n: int = 2) -> None:
    for _ in range(n):
        wait_shown_ts_above(pg, shown_ts(pg))


# Whether the Connections table shows the snapshot the page shows, as a user sees it:
# its rows (in display order) are the snapshot's connections that pass `keep`, sorted by
# `field` (dir 1 ascending, -1 descending); the rows drawn are consecutive rows of that
# order, cover the table's visible area (no gap), and each shows its connection's values
# of that snapshot (peer, status, age, bytes in). Returns a text saying what is wrong, or
# "" when all holds.
SHOWS_SNAPSHOT = """([field, dir, keep]) => {
  const fmt = window.__fmt;
  const v = window.dashboardState.view;
  const table = Tabulator.findTable('#connections-table')[0];
  const ageOf = (c) => (c.open ? (c.status === 'CLOSED' && c.close ? c.close : v.ts) - c.open : 0);
  const conns = new Map(v.conns.map((c) => [c.id, c]));
  const value = (c) => (field === 'age' ? ageOf(c) : c[field]);
  const wanted = v.conns.filter((c) => !keep || c.status === keep).map(value).sort((a, b) => dir * (a - b));
  const display = table.getRows('display');
  const got = display.map((r) => value(conns.get(r.getData().id) || {}));
  if (got.length !== wanted.length) return `${got.length} rows, the snapshot has ${wanted.length}`;
  for (let i = 0; i < got.length; i += 1) if (got[i] !== wanted[i]) return `row ${i}: ${got[i]}, want ${wanted[i]}`;
  const els = [...document.querySelectorAll('#connections-table .tabulator-row')];
  if (!els.length) return 'no row drawn';
  const at = new Map(display.map((r, i) => [r.getElement(), i]));
  const first = at.get(els[0]);
  for (let k = 0; k < els.length; k += 1) {
    if (at.get(els[k]) !== first + k) return `drawn row ${k} is display row ${at.get(els[k])}, want ${first + k}`;
    const d = table.getRow(els[k]).getData();
    const c = conns.get(d.id);
    if (!c) return `drawn row ${k}: ${d.id} is not in the snapshot`;
    const text = (f) => els[k].querySelector(`[tabulator-field=${f}]`).textContent;
    if (els[k].querySelector('.peer-cell').title !== c.peer) return `drawn row ${k}: peer`;
    if (text('status') !== c.status) return `drawn row ${k}: status ${text('status')}, want ${c.status}`;
    if (text('age') !== fmt.duration(ageOf(c))) return `drawn row ${k}: age ${text('age')}, want ${fmt.duration(ageOf(c))}`;
    if (!text('in').startsWith(fmt.bytes(c.in))) return `drawn row ${k}: in ${text('in')}, want ${fmt.bytes(c.in)}`;
    if (els[k].classList.contains('closed-row') !== (c.status === 'CLOSED')) return `drawn row ${k}: greyed`;
    if (keep && c.status !== keep) return `drawn row ${k} is ${c.status}`;
  }
  const holder = document.querySelector('#connections-table .tabulator-tableholder');
  const top = holder.getBoundingClientRect().top;
  const firstTop = els[0].getBoundingClientRect().top - top;
  const last = els[els.length - 1].getBoundingClientRect().bottom - top;
  if (firstTop > 1) return `a gap of ${firstTop} px above the rows drawn`;
  if (last < holder.clientHeight - 1 && at.get(els[els.length - 1]) !== display.length - 1) {
    return `a gap below the rows drawn (${last} of ${holder.clientHeight} px)`;
  }
  return '';
}"""


def _wait_shows(pg: Any, field: str, direction: int, keep: str = "") -> None:
    """Wait until the table shows the snapshot shown (SHOWS_SNAPSHOT), and say what is
    wrong if it never does."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        pg.wait_for_function(f"(a) => ({SHOWS_SNAPSHOT})(a) === ''", arg=[field, direction, keep])
    except PlaywrightTimeout:
        wrong = pg.evaluate(f"(a) => ({SHOWS_SNAPSHOT})(a)", [field, direction, keep])
        raise AssertionError(f"the Connections table: {wrong}") from None


def _scroll(pg: Any, where: str) -> float:
    """Scroll the Connections table: to its middle or its end; returns the scrollTop."""
    return float(pg.evaluate(
        """(where) => {
          const h = document.querySelector('#connections-table .tabulator-tableholder');
          h.scrollTop = where === 'end' ? h.scrollHeight : Math.floor(h.scrollHeight / 2);
          h.dispatchEvent(new Event('scroll'));
          return h.scrollTop;
        }""",
        where,
    ))  # fmt: skip


def _scroll_top(pg: Any) -> float:
    return float(pg.evaluate(
        "() => document.querySelector('#connections-table .tabulator-tableholder').scrollTop"
    ))  # fmt: skip


def test_by_age_new_connections_come_on_top_at_each_snapshot(page: Any, churning_node: str):  # noqa: F811
    _open(page, churning_node)
    # The default sort (age, ascending), at the top: every snapshot brings new rows there.
    for _ in range(3):
        _wait_shows(page, "age", 1)
        _next_snapshots(page, 1)
    _wait_shows(page, "age", 1)


def test_scrolled_to_the_middle_the_table_stays_and_shows_the_rows_there(
    page: Any,  # noqa: F811
    churning_node: str,
):
    _open(page, churning_node)
    header = "#connections-table .tabulator-col[tabulator-field=in]"
    page.click(f"{header} .tabulator-col-title")
    page.click(f"{header} .tabulator-col-title")
    page.wait_for_function(
        f"() => document.querySelector('{header}').getAttribute('aria-sort') === 'descending'"
    )
    top = _scroll(page, "middle")
    assert top > 0
    _wait_shows(page, "in", -1)
    for _ in range(3):  # bytes in change at every snapshot: rows move past the drawn range
        _next_snapshots(page, 1)
        _wait_shows(page, "in", -1)
        assert _scroll_top(page) == top, "the scroll position moved"
    # And the end of the table is reachable after rows came and went.
    _scroll(page, "end")
    page.wait_for_function(
        """() => {
          const table = Tabulator.findTable('#connections-table')[0];
          const display = table.getRows('display');
          const els = [...document.querySelectorAll('#connections-table .tabulator-row')];
          return els.length > 0 && els[els.length - 1] === display[display.length - 1].getElement();
        }"""
    )
    _wait_shows(page, "in", -1)


def test_a_row_changed_out_of_view_shows_its_new_values_when_scrolled_to(
    page: Any,  # noqa: F811
    churning_node: str,
):
    _open(page, churning_node)
    header = "#connections-table .tabulator-col[tabulator-field=peer]"
    page.click(f"{header} .tabulator-col-title")  # by peer: rows keep their places
    page.wait_for_function(
        f"() => document.querySelector('{header}').getAttribute('aria-sort') === 'ascending'"
    )
    _next_snapshots(page, 1)
    # An active connection far below the rows drawn, and what its row showed then.
    probe = page.evaluate(
        """() => {
          const table = Tabulator.findTable('#connections-table')[0];
          const rows = table.getRows('display');
          const far = rows.slice(Math.floor(rows.length * 0.7)).find((r) => r.getData().status === 'ACTIVE' && r.getData().bwIn > 0);
          return { id: far.getData().id, in: far.getData().in, drawn: far.getElement().isConnected };
        }"""
    )
    assert not probe["drawn"]
    # Not every connection's bytes move at every snapshot: wait (at most 10 snapshots)
    # for one in which this one's did, so the test shows what it says.
    for _ in range(10):
        _next_snapshots(page, 1)
        now = page.evaluate(
            "(id) => window.dashboardState.view.conns.find((x) => x.id === id)?.in", probe["id"]
        )
        if now != probe["in"]:
            break
    page.evaluate(
        "(id) => Tabulator.findTable('#connections-table')[0].scrollToRow(id, 'center', true)",
        probe["id"],
    )  # fmt: skip
    page.wait_for_function(
        """(id) => {
          const fmt = window.__fmt;
          const v = window.dashboardState.view;
          const c = v.conns.find((x) => x.id === id);
          const row = Tabulator.findTable('#connections-table')[0].getRow(id);
          if (!c || !row || !row.getElement().isConnected) return false;
          const el = row.getElement();
          const age = fmt.duration((c.status === 'CLOSED' && c.close ? c.close : v.ts) - c.open);
          return el.querySelector('[tabulator-field=age]').textContent === age
            && el.querySelector('[tabulator-field=in]').textContent.startsWith(fmt.bytes(c.in))
            && el.querySelector('[tabulator-field=status]').textContent === c.status;
        }""",
        arg=probe["id"],
    )
    assert page.evaluate(
        "(id) => window.dashboardState.view.conns.find((x) => x.id === id).in", probe["id"]
    ) != probe["in"], "its bytes in did not change: the test shows nothing"


def test_a_filter_applies_to_rows_whose_values_changed(page: Any, churning_node: str):  # noqa: F811
    _open(page, churning_node)
    page.select_option("#filter-status", "ACTIVE")
    _scroll(page, "middle")
    # Connections close at every snapshot: the closed ones leave the rows shown.
    for _ in range(3):
        _wait_shows(page, "age", 1, "ACTIVE")
        _next_snapshots(page, 1)
    _wait_shows(page, "age", 1, "ACTIVE")
    page.select_option("#filter-status", "")
    _wait_shows(page, "age", 1)
