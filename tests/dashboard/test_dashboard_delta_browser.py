"""Deltas in headless Chromium (fixtures and helpers of test_dashboard_browser.py).

After the first snapshot a page is sent what changed since the one before
(dashboard/page_json.py ``PAGE_DELTA``, applied by static/js/app.js
``applyDelta``). What a user relies on: the tables show exactly what the
dashboard stored for the moment shown (new values, connections that closed
or went), and a page that missed a message asks for the whole picture again
instead of applying a delta to the wrong snapshot. A mock node of 300
connections of 3 streams, 5% of them replaced at every snapshot (two a second),
closed ones kept in its snapshots for 2 s (then they go from the dashboard's).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_process import dashboard_of_mock
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    browser,
    open_tab,
    page,
    wait_last_snapshot_of_pause,
)

CONNECTIONS = 300


@pytest.fixture(scope="module")
def churning_node() -> Iterator[str]:
    """The dashboard's URL, following a mock node whose connections come and go."""
    with dashboard_of_mock(
        connections=CONNECTIONS, streams=3, churn=0.05, interval_ms=500, seed=13,
        closed_connection_lifetime_ms=2000,
    ) as url:  # fmt: skip
        yield url


def _wait_deltas(pg: Any, n: int) -> None:
    """Until the page has applied n deltas since now (it has drawn the last)."""
    start = pg.evaluate("() => window.dashboardState.deltas ?? 0")
    pg.wait_for_function(
        "(n) => (window.dashboardState.deltas ?? 0) >= n", arg=start + n
    )  # fmt: skip


# What the page shows of the moment it shows, compared with what the dashboard stored for
# it (GET /api/snapshot): each connection's fields, the Connections table's rows (one a
# connection, its bytes and status, closed ones greyed), or, with streams (the Streams
# view shown), the Streams table's rows. Resolves to the differences found (at most 20) and what was compared.
MATCHES_STORE = """async (streams) => {
  const tables = await import('/static/js/tables.js');
  await new Promise((r) => requestAnimationFrame(r));
  await tables.allSet();
  const v = window.dashboardState.view;
  const stored = await (await fetch(`/api/snapshot?ts=${v.ts}`)).json();
  const bad = [];
  if (stored.ts !== v.ts) bad.push(`ts ${stored.ts} ${v.ts}`);
  if (stored.conns.length !== v.conns.length) bad.push(`count ${stored.conns.length} ${v.conns.length}`);
  const skip = new Set(['streams', 'inPkts', 'outPkts']);
  stored.conns.forEach((c, i) => {
    const p = v.conns[i] || {};
    for (const k of Object.keys(c)) {
      if (!skip.has(k) && JSON.stringify(c[k]) !== JSON.stringify(p[k])) bad.push(`${c.id}.${k}`);
    }
    if (p.ns !== c.streams.length) bad.push(`${c.id}.ns`);
  });
  let streamRows = 0;
  if (!streams) { // the Connections view (a view not shown is drawn when it is)
    const connT = Tabulator.findTable('#connections-table')[0];
    const rows = new Map(connT.getData().map((d) => [d.id, d]));
    if (rows.size !== stored.conns.length) bad.push(`rows ${rows.size}`);
    for (const c of stored.conns) {
      const d = rows.get(c.id);
      if (!d || d.in !== c.in || d.out !== c.out || d.status !== c.status || d.bwIn !== c.bwIn) bad.push(`row ${c.id}`);
    }
    for (const el of document.querySelectorAll('#connections-table .tabulator-row')) {
      const d = connT.getRow(el)?.getData();
      if (d && el.classList.contains('closed-row') !== (d.status === 'CLOSED')) bad.push(`greyed ${d.id}`);
    }
  } else {
    // The Streams table holds the page it shows (GET /api/streams): each of its rows is
    // the stored stream of its key, and it holds a whole page of them.
    const st = new Map(Tabulator.findTable('#streams-table')[0].getData().map((d) => [d.key, d]));
    let all = 0;
    for (const c of stored.conns) {
      c.streams.forEach((s, k) => {
        all += 1;
        const d = st.get(`${c.id}:${k}`);
        if (!d) return;
        streamRows += 1;
        if (d.proto !== s.proto || d.status !== s.status || d.in !== s.in || d.out !== s.out
            || d.bwOut !== s.bwOut || d.peer !== c.peer) bad.push(`stream ${c.id}:${k}`);
      });
    }
    if (st.size !== streamRows) bad.push(`rows of no stored stream ${st.size} ${streamRows}`);
    if (streamRows !== Math.min(all, tables.STREAMS_PAGE_SIZE)) bad.push(`stream rows ${streamRows} of ${all}`);
    const count = document.querySelector('#stream-count').textContent;
    if (count !== `${all} of ${all} streams`) bad.push(`count ${count}`);
  }
  const closed = stored.conns.filter((c) => c.status === 'CLOSED').length;
  return { bad: bad.slice(0, 20), conns: stored.conns.length, closed, streamRows,
           ids: stored.conns.map((c) => c.id) };
}"""


def _pause(pg: Any) -> None:
    pg.evaluate("async () => { await fetch('/api/pause', { method: 'POST' }); }")
    pg.wait_for_function("() => window.dashboardState.status?.paused === true")
    wait_last_snapshot_of_pause(pg)


def _resume(pg: Any) -> None:
    pg.evaluate("async () => { await fetch('/api/resume', { method: 'POST' }); }")
    pg.wait_for_function("() => window.dashboardState.status?.paused === false")


def _open(pg: Any, url: str) -> None:
    pg.goto(url)
    pg.wait_for_function(
        "(n) => (window.dashboardState?.view?.conns.length || 0) >= n", arg=CONNECTIONS
    )


def test_deltas_show_what_the_dashboard_stored_new_values_and_vanished_connections(
    page: Any,  # noqa: F811
    churning_node: str,
):
    _open(page, churning_node)
    _wait_deltas(page, 2)
    _pause(page)
    first = page.evaluate(MATCHES_STORE, False)
    assert not first["bad"], first["bad"]
    assert first["closed"] > 0  # connections that closed are among them, greyed
    _resume(page)
    # Closed connections leave the node's snapshots after 2 s: the dashboard carries them
    # on as vanished (CLOSED, "gone"), and the deltas say so.
    page.wait_for_function(
        "() => window.dashboardState.view.conns.some((c) => c.gone === true)"
    )  # fmt: skip
    open_tab(page, "streams")
    _wait_deltas(page, 2)
    _pause(page)
    later = page.evaluate(MATCHES_STORE, True)
    assert not later["bad"], later["bad"]
    assert later["streamRows"] > 0
    open_tab(page, "connections")
    shown = page.evaluate(MATCHES_STORE, False)
    assert not shown["bad"], shown["bad"]
    vanished = page.evaluate(
        """() => { const t = Tabulator.findTable('#connections-table')[0];
                   const gone = window.dashboardState.view.conns.filter((c) => c.gone);
                   return gone.map((c) => t.getRow(c.id)?.getData().status); }"""
    )
    assert vanished and all(status == "CLOSED" for status in vanished), vanished
    assert page.evaluate("() => window.dashboardState.resyncs") == 0
    _resume(page)


# Drops the WebSocket message (a batch) holding the n-th delta the dashboard sends; counts
# what it saw. Everything else passes unchanged, both ways.
def _drop_one_delta(pg: Any, nth: int) -> dict[str, int]:
    seen = {"deltas": 0, "dropped": 0}

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        ws.on_message(lambda message: server.send(message))

        def from_server(message: Any) -> None:
            if isinstance(message, str) and '"t":"delta"' in message:
                seen["deltas"] += 1
                if seen["deltas"] == nth:
                    seen["dropped"] += 1
                    return
            ws.send(message)

        server.on_message(from_server)

    pg.route_web_socket("**/feed", route)
    return seen


def test_a_page_that_missed_a_delta_asks_for_the_whole_picture_and_shows_it(
    page: Any,  # noqa: F811
    churning_node: str,
):
    seen = _drop_one_delta(page, 3)
    _open(page, churning_node)
    # The delta after the missed one is not of the snapshot the page has: it asks for a
    # hello (one), and follows deltas again after it.
    page.wait_for_function(
        "() => window.dashboardState.resyncs >= 1 && window.dashboardState.hellos >= 2"
    )
    assert seen["dropped"] == 1
    _wait_deltas(page, 2)
    _pause(page)
    shown = page.evaluate(MATCHES_STORE, False)
    assert not shown["bad"], shown["bad"]
    assert page.evaluate("() => window.dashboardState.resyncs") == 1
    _resume(page)
