"""Tables and the connection chooser updated in place, in headless Chromium (as
test_dashboard_browser.py, whose fixtures and helpers this reuses).

A new snapshot no longer rebuilds every row of the Connections and Streams tables, nor
every option of the Traffic view's chooser (static/js/tables.js ``updateInPlace``,
app.js ``setOptions``): a row or option whose connection is still there keeps its
element, and shows the snapshot's new values (the chooser of a big node's connections
when the user is about to use it). What a user relies on must still hold: new
values shown, vanished connections shown closed, the column sort and the filter boxes
applied to the updated rows. A mock node of 400 connections of 3 streams, 5% of them
replaced at every snapshot (two a second).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_process import dashboard_of_mock
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    browser,
    open_following,
    open_tab,
    page,
    shown_ts,
    wait_shown_ts_above,
)

CONNECTIONS = 400


@pytest.fixture(scope="module")
def churning_node() -> Iterator[str]:
    """The dashboard's URL, following a mock node whose connections come and go."""
    with dashboard_of_mock(
        connections=CONNECTIONS, streams=3, churn=0.05, interval_ms=500, seed=7
    ) as url:
        yield url


def _open(pg: Any, url: str) -> None:
    open_following(pg, url, CONNECTIONS)


def _sort_by_peer(pg: Any, table: str) -> None:
    """Sort `table` by peer id: rows stay where they are as connections come and go
    around them (by age, the default, every new one comes on top)."""
    header = f"#{table}-table .tabulator-col[tabulator-field=peer]"
    pg.click(f"{header} .tabulator-col-title")
    pg.wait_for_function(
        f"() => document.querySelector('{header}').getAttribute('aria-sort') === 'ascending'"
    )


def _keep_stored_snapshots(pg: Any) -> None:
    """Keep fetching the stored snapshot of the moments shown (GET /api/snapshot): the
    page's, and the Streams table's (its rows come from GET /api/streams for a moment of
    their own, `shownTs`, which can be behind the page's on a slow machine), into
    window.__stored (ts -> snapshot), for EXPECTED_AGE's streams."""
    pg.evaluate(
        """() => {
          window.__stored = new Map();
          const keep = async (ts) => {
            if (ts === undefined || ts === null || window.__stored.has(ts)) return;
            window.__stored.set(ts, null);
            window.__stored.set(ts, await (await fetch(`/api/snapshot?ts=${ts}`)).json());
          };
          setInterval(() => {
            keep(window.dashboardState.view?.ts);
            keep(Tabulator.findTable('#streams-table')[0]?.shownTs);
          }, 50);
        }"""
    )


def _two_more_snapshots(pg: Any) -> None:
    wait_shown_ts_above(pg, shown_ts(pg))
    wait_shown_ts_above(pg, shown_ts(pg))


# The text the Age cell of table `table` should show for the connection or stream `key`
# (a connection's id, a stream's "id:k": what the table holds as a row's index) at the
# moment that table shows (the page's own formatter), or null while it is not in that
# moment's snapshot. The Connections table shows the page's moment; the Streams table
# the moment of its page of streams (`shownTs`), as the dashboard stored it (the page
# holds no streams: fetched by _keep_stored_snapshots), null until fetched.
EXPECTED_AGE = """(table, key) => {
  const fmt = window.__fmt;
  const t = Tabulator.findTable(`#${table}-table`)[0];
  const [id, k] = String(key).split(':');
  const ts = k === undefined ? window.dashboardState.view.ts : t.shownTs;
  const conns = k === undefined ? window.dashboardState.view.conns : window.__stored?.get(ts)?.conns;
  const c = conns?.find((x) => x.id === id);
  const item = k === undefined ? c : c?.streams[Number(k)];
  if (!item || !item.open) return null;
  const end = item.status === 'CLOSED' && item.close ? item.close : ts;
  return fmt.duration(end - item.open);
}"""

# Several probes, not one: the mock's churn closes 5% of the connections at every
# snapshot and purges them soon after, and purges closed streams, so a probe's key (a
# connection's id; a stream's index in its connection, which a purge before it shifts)
# can leave the snapshot, and its row rightly goes, before the test has seen two
# snapshots. What a user relies on is checked on every probe whose key is still there:
# `window.__probes`, each {key, row, cell (one that never changes), inner (its first
# element), age (the text shown when probed)}. PROBES_UPDATED is true when every probe
# still there keeps its elements and shows the age of the table's moment and one of
# those ages changed; "gone" when no probe is left (probe again); false meanwhile, with
# the reason in window.__probeWhy.
PROBES_UPDATED = """(table) => {
  const probes = window.__probes;
  const t = Tabulator.findTable(`#${table}-table`)[0];
  if (table === 'streams' && !window.__stored?.get(t.shownTs)) return false;
  const live = probes.filter((p) => ({expected})(table, p.key) !== null);
  if (!live.length) return 'gone';
  const not = (why, p) => { window.__probeWhy = `${why}: ${p.key}`; return false; };
  for (const p of live) {
    // The same cell element and what it shows are still in the table (not rebuilt: a
    // hovered or selected peer id, a focused copy button stay), in the row of the same
    // key, showing the new moment's age.
    if (!p.row.isConnected || !p.cell.isConnected) return not('its row or cell left the page', p);
    if (p.cell.firstElementChild !== p.inner) return not("its cell's content was rebuilt", p);
    const data = t.getRow(p.row)?.getData();
    if (String(data?.key ?? data?.id) !== p.key) return not('its row holds another key', p);
    const age = p.row.querySelector('[tabulator-field=age]').textContent;
    if (age !== ({expected})(table, p.key)) return not(`its age shows ${age}`, p);
  }
  window.__probeWhy = 'no age shown changed';
  return live.some((p) => p.row.querySelector('[tabulator-field=age]').textContent !== p.age);
}""".replace("{expected}", EXPECTED_AGE)

# Probe the ACTIVE rows near the top of the rows drawn (about 20: tables.js BUFFER_PX),
# so that the rows that come above them in two snapshots do not push them out of them;
# returns how many. The Streams table's moment is kept as window.__probedTs.
PROBE = """([table, field]) => {
  const t = Tabulator.findTable(`#${table}-table`)[0];
  const v = window.dashboardState.view;
  const active = new Set(v.conns.filter((c) => c.status === 'ACTIVE').map((c) => c.id));
  window.__probes = [];
  window.__probedTs = t.shownTs;
  for (const row of [...document.querySelectorAll(`#${table}-table .tabulator-row`)].slice(3, 15)) {
    const d = t.getRow(row).getData();
    if (table === 'streams' ? d.status !== 'ACTIVE' : !active.has(String(d.id))) continue;
    const cell = row.querySelector(`[tabulator-field=${field}]`);
    window.__probes.push({ key: String(d.key ?? d.id), row, cell, inner: cell.firstElementChild,
                           age: row.querySelector('[tabulator-field=age]').textContent });
  }
  return window.__probes.length;
}"""


def _rows_updated_in_place(pg: Any, table: str, field: str) -> None:
    """Probe `table`'s rows (cells of `field`), let two snapshots come and wait for
    PROBES_UPDATED; probe again (at most three rounds) if every probe left."""
    for _ in range(3):
        assert pg.evaluate(PROBE, [table, field]), f"no active row in view in {table}"
        _two_more_snapshots(pg)
        if table == "streams":
            # The Streams table's own moment has moved on too (its page of streams is
            # fetched for a moment of its own, which can lag the page's).
            pg.wait_for_function(
                "() => Tabulator.findTable('#streams-table')[0].shownTs > window.__probedTs"
            )
        try:
            result = pg.wait_for_function(PROBES_UPDATED, arg=table).json_value()
        except PlaywrightTimeout:
            pytest.fail(f"{table}: {pg.evaluate('() => window.__probeWhy')}")
        if result != "gone":
            assert result is True, result
            return
    pytest.fail(f"every probe of {table} left the snapshot, three rounds in a row")


def test_a_new_snapshot_updates_connection_rows_in_place(page: Any, churning_node: str):  # noqa: F811
    _open(page, churning_node)
    _sort_by_peer(page, "connections")
    _rows_updated_in_place(page, "connections", "peer")


def test_closed_connections_show_closed_and_the_status_filter_holds(
    page: Any,  # noqa: F811
    churning_node: str,
):
    _open(page, churning_node)
    page.wait_for_function(
        "() => window.dashboardState.view.conns.some((c) => c.status === 'CLOSED')"
    )
    page.select_option("#filter-status", "CLOSED")
    # Across snapshots (rows updated in place, new ones added), only closed rows show,
    # as many as the snapshot shown has, and each of them is greyed.
    for _ in range(2):
        page.wait_for_function(
            """() => {
              const v = window.dashboardState.view;
              const closed = v.conns.filter((c) => c.status === 'CLOSED').length;
              const text = document.querySelector('#conn-count').textContent;
              if (text !== `${closed} of ${v.conns.length} connections`) return false;
              const rows = [...document.querySelectorAll('#connections-table .tabulator-row')];
              return rows.length > 0 && rows.every((r) => r.classList.contains('closed-row')
                && r.querySelector('[tabulator-field=status]').textContent === 'CLOSED');
            }"""
        )
        wait_shown_ts_above(page, shown_ts(page))
    page.select_option("#filter-status", "")
    page.wait_for_function(
        "() => document.querySelector('#conn-count').textContent"
        " === `${window.dashboardState.view.conns.length} of ${window.dashboardState.view.conns.length} connections`"
    )  # fmt: skip


def test_a_column_sort_holds_for_rows_updated_in_place(page: Any, churning_node: str):  # noqa: F811
    _open(page, churning_node)
    header = "#connections-table .tabulator-col[tabulator-field=in]"
    page.click(f"{header} .tabulator-col-title")
    page.wait_for_function(
        f"() => document.querySelector('{header}').getAttribute('aria-sort') === 'ascending'"
    )
    _two_more_snapshots(page)
    # The rows at the top are the snapshot's connections of least traffic in, in order
    # (their tooltips: the exact bytes), after rows were updated and others added.
    page.wait_for_function(
        """() => {
          const v = window.dashboardState.view;
          const want = v.conns.map((c) => c.in).sort((a, b) => a - b).slice(0, 5);
          const rows = [...document.querySelectorAll('#connections-table .tabulator-row')].slice(0, 5);
          const peers = rows.map((r) => r.querySelector('.peer-cell').title);
          const got = peers.map((p) => v.conns.find((c) => c.peer === p)?.in);
          return got.length === 5 && got.every((x, i) => x === want[i]);
        }"""
    )


def test_a_new_snapshot_updates_stream_rows_in_place(page: Any, churning_node: str):  # noqa: F811
    _open(page, churning_node)
    open_tab(page, "streams")
    page.wait_for_function(
        "() => document.querySelectorAll('#streams-table .tabulator-row').length > 5"
    )
    _sort_by_peer(page, "streams")
    _keep_stored_snapshots(page)
    _rows_updated_in_place(page, "streams", "proto")


def test_the_connection_chooser_keeps_its_options_and_the_choice(page: Any, churning_node: str):  # noqa: F811
    _open(page, churning_node)
    open_tab(page, "traffic")
    page.wait_for_function(
        "(n) => document.querySelectorAll('#traffic-conn option').length > n", arg=CONNECTIONS
    )
    chosen = page.evaluate(
        """() => {
          const v = window.dashboardState.view;
          const c = v.conns.find((x) => x.status === 'ACTIVE');
          return c.id;
        }"""
    )
    page.select_option("#traffic-conn", chosen)
    page.evaluate(
        "(id) => { window.__option = [...document.querySelectorAll('#traffic-conn option')]"
        ".find((o) => o.value === id); }",
        chosen,
    )  # fmt: skip
    _two_more_snapshots(page)
    # The chosen option is the same element, still chosen. Once the user is about to use
    # the chooser (focus), it has one option per connection of the snapshot shown (and
    # the prompt), in its order: new connections are there.
    state = page.evaluate(
        """(id) => {
          const select = document.querySelector('#traffic-conn');
          select.blur();
          select.focus();
          const v = window.dashboardState.view;
          const values = [...select.options].slice(1).map((o) => o.value);
          const ids = v.conns.map((c) => c.id);
          const kept = values.length === ids.length + 1 && values[ids.length] === id; // it vanished
          return { inOrder: (values.length === ids.length || kept) && ids.every((x, i) => x === values[i]),
                   same: window.__option.isConnected, value: select.value,
                   ids: ids.length, values: values.length };
        }""",
        chosen,
    )
    assert state["inOrder"], state
    assert state["same"] and state["value"] == chosen, state
    assert page.evaluate("() => window.__option.selected")
