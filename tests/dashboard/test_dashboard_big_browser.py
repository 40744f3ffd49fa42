"""A dashboard following a node of thousands of connections, in headless Chromium (as
test_dashboard_browser.py, whose fixtures and helpers this reuses).

The tables draw only the rows in view, the snapshot message carries the streams packed
(dashboard/page_json.py) and the rows are sorted before the table sorts them: what a
user does with a big table must still work. A mock node of 4,200 connections of 2
streams each (no churn: the same connections in every snapshot), one snapshot a second.
"""

from __future__ import annotations

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
    wait_shown_ts_above,
)

CONNECTIONS = 4_200


@pytest.fixture(scope="module")
def big_node() -> Iterator[str]:
    """The dashboard's URL, following a mock node of CONNECTIONS connections."""
    with dashboard_of_mock(
        connections=CONNECTIONS, streams=2, churn=0, interval_ms=1000, seed=5
    ) as url:
        yield url


def _open(pg: Any, url: str) -> None:
    pg.goto(url)
    pg.wait_for_function(
        "(n) => document.querySelector('#conn-count').textContent === `${n} of ${n} connections`",
        arg=CONNECTIONS, timeout=90_000,
    )  # fmt: skip


def _rows(pg: Any) -> Any:
    return pg.locator("#connections-table .tabulator-row")


def _scroll(pg: Any, fraction: float) -> None:
    pg.eval_on_selector(
        "#connections-table .tabulator-tableholder",
        "(el, f) => { el.scrollTop = (el.scrollHeight - el.clientHeight) * f; }", fraction,
    )  # fmt: skip
    # The table draws the rows of the new position once it sees the scroll.
    pg.wait_for_function(
        """() => {
          const holder = document.querySelector('#connections-table .tabulator-tableholder');
          const box = holder.getBoundingClientRect();
          return [...holder.querySelectorAll('.tabulator-row')].some((r) => {
            const b = r.getBoundingClientRect(); return b.top >= box.top && b.bottom <= box.bottom; });
        }"""
    )


def _visible_peers(pg: Any) -> list[str]:
    """Peer ids of the rows inside the table's viewport, top to bottom."""
    return pg.eval_on_selector(
        "#connections-table .tabulator-tableholder",
        """(holder) => {
          const box = holder.getBoundingClientRect();
          return [...holder.querySelectorAll('.tabulator-row')]
            .filter((r) => { const b = r.getBoundingClientRect(); return b.top >= box.top && b.bottom <= box.bottom; })
            .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
            .map((r) => r.querySelector('[tabulator-field=peer] .peer-cell').title);
        }""",
    )


def test_a_row_deep_in_a_big_table_can_be_selected_and_stays_selected(
    page: Any,  # noqa: F811
    big_node: str,
):
    from playwright.sync_api import expect

    _open(page, big_node)
    # Only the rows in view are in the page, not one per connection.
    assert _rows(page).count() < 200
    _scroll(page, 4_000 / CONNECTIONS)
    peers = _visible_peers(page)
    assert peers, "no row in view after scrolling"
    peer = peers[len(peers) // 2]
    order = page.evaluate(
        "() => window.dashboardState.view.conns.slice().sort((a, b) => a.open !== b.open ? b.open - a.open : 0).map((c) => c.peer)"
    )
    assert order.index(peer) > 3_500, "the row picked is not near row 4,000"
    row = _rows(page).filter(has=page.locator(f"[title='{peer}']"))
    row.locator("[tabulator-field=status]").click()
    expect(page.locator("#conn-detail")).to_be_visible()
    expect(page.locator("#detail-peer")).to_contain_text(peer)
    expect(page.locator("#conn-streams-table .tabulator-row")).to_have_count(2)
    assert "selected-row" in (row.get_attribute("class") or "")
    # The streams shown are that connection's, as the snapshot has them (values unpacked).
    protos = page.locator(
        "#conn-streams-table .tabulator-row [tabulator-field=proto]"
    ).all_inner_texts()
    want = page.evaluate(
        "(p) => { const c = window.dashboardState.view.conns.find((x) => x.peer === p);"
        " return c.protoList || c.streams.map((st) => st.proto); }",
        peer,
    )
    assert set(protos) <= set(want) and protos
    # A new snapshot redraws the table: the selection, the detail and the scroll stay.
    wait_shown_ts_above(page, shown_ts(page))
    wait_shown_ts_above(page, shown_ts(page))
    assert peer in _visible_peers(page)
    row = _rows(page).filter(has=page.locator(f"[title='{peer}']"))
    assert "selected-row" in (row.get_attribute("class") or "")
    expect(page.locator("#detail-peer")).to_contain_text(peer)
    expect(page.locator("#conn-streams-table .tabulator-row")).to_have_count(2)


def test_sort_then_scroll_shows_the_end_of_the_sorted_table(page: Any, big_node: str):  # noqa: F811
    _open(page, big_node)
    page.click("#connections-table .tabulator-col[tabulator-field=peer] .tabulator-col-title")
    page.wait_for_function(
        "() => document.querySelector('#connections-table .tabulator-col[tabulator-field=peer]')"
        ".getAttribute('aria-sort') === 'ascending'"
    )
    # In the table's order (its "string" sorter: lower case, the browser's collation).
    every = page.evaluate(
        "() => window.dashboardState.view.conns.map((c) => c.peer)"
        ".sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()))"
    )
    _scroll(page, 1.0)
    bottom = _visible_peers(page)
    _assert_run_of(bottom, every, at_end=True)
    # Snapshots come and go: the order and the place in it stay.
    wait_shown_ts_above(page, shown_ts(page))
    wait_shown_ts_above(page, shown_ts(page))
    assert _visible_peers(page) == bottom
    _scroll(page, 0.0)
    _assert_run_of(_visible_peers(page), every, at_end=False)


def _assert_run_of(shown: list[str], every: list[str], *, at_end: bool) -> None:
    """``shown`` is a run of ``every`` in its order, at its end (or start), give or take
    the one row the table's edge may cut (a row only partly in view is not counted)."""
    assert shown, "no row in view"
    at = every.index(shown[0])
    assert every[at : at + len(shown)] == shown, "the rows in view are not in the table's order"
    edge = len(every) - (at + len(shown)) if at_end else at
    assert edge <= 1, f"{edge} rows beyond the rows in view: not the {'end' if at_end else 'start'}"


def test_filters_find_rows_anywhere_in_a_big_table(page: Any, big_node: str):  # noqa: F811
    from playwright.sync_api import expect

    _open(page, big_node)
    conns = page.evaluate("() => window.dashboardState.view.conns.map((c) => c.peer)")
    peer = conns[4_100]
    page.fill("#filter-peer", peer[-12:])
    expect(_rows(page)).to_have_count(1)
    expect(page.locator("#conn-count")).to_have_text(f"1 of {CONNECTIONS} connections")
    assert _visible_peers(page) == [peer]
    wait_shown_ts_above(page, shown_ts(page))
    expect(_rows(page)).to_have_count(1)
    expect(page.locator("#conn-count")).to_have_text(f"1 of {CONNECTIONS} connections")
    page.fill("#filter-peer", "")
    expect(page.locator("#conn-count")).to_have_text(f"{CONNECTIONS} of {CONNECTIONS} connections")
    # A stream protocol: every connection with a stream of it, however deep in the table
    # (streams come and go: counted in the snapshot the table shows).
    proto = "/ipfs/ping/1.0.0"
    page.fill("#filter-proto", proto)
    page.wait_for_function(
        """(proto) => {
          const v = window.dashboardState.view;
          const n = v.conns.filter((c) => (c.protoList || c.streams.map((st) => st.proto))
            .some((p) => p.includes(proto))).length;
          return n > 0 && n < v.conns.length &&
            document.querySelector('#conn-count').textContent === `${n} of ${v.conns.length} connections`;
        }""",
        arg=proto,
    )
    page.select_option("#filter-status", "CLOSED")
    expect(page.locator("#conn-count")).to_have_text(f"0 of {CONNECTIONS} connections")
