"""Rows updated in place (tables.js ``updateInPlace``) against a recording made to catch
them out: the timeline scrubbed back and forth re-shows each snapshot into the rows the
table holds, under every column sort; each row must show its connection of the moment
shown (every column), in the sort's order, as many rows as the snapshot has, hostile
text as text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_process import running
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    assert_nothing_ran,
    browser,
    open_tab,
    unprotected_page,
)

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingWriter

START_MS = 1_700_000_000_000
INTERVAL_MS = 1_000


def _write(path: Path, snapshots: list[list[dict[str, Any]]]) -> Path:
    """A recording of one snapshot per list of connections ({id: bytes, peer, src, dst,
    status, in, out, lat (ns)})."""
    with RecordingWriter(path, close_stream=True) as writer:
        runtime = pb.Runtime(implementation="py-libp2p", version="0.8.1", platform="test",
                             peer_id="QmSelf")  # fmt: skip
        writer.write_message(pb.ServerMessage(runtime=runtime))
        for i, conns in enumerate(snapshots):
            ts = START_MS + i * INTERVAL_MS
            state = pb.State(instant_ts=ts, start_ts=ts - INTERVAL_MS,
                             snapshot_duration_ms=INTERVAL_MS)  # fmt: skip
            for c in conns:
                conn = state.subsystems.connections.add(
                    id=c["id"], peer_id=c["peer"], status=c.get("status", pb.ACTIVE),
                    role=pb.INITIATOR, transport_id=c.get("transport", "tcp").encode(),
                    latency_ns=c.get("lat", 1_000_000),
                )  # fmt: skip
                conn.endpoints.src_multiaddr = c.get("src", "/ip4/10.0.0.1/tcp/4001")
                conn.endpoints.dst_multiaddr = c.get("dst", "/ip4/10.0.0.2/tcp/4001")
                conn.timeline.open_ts = START_MS - c.get("age", 5_000)
                conn.traffic.traffic_in.cum_bytes = c.get("in", 0)
                conn.traffic.traffic_in.inst_bw = c.get("bwIn", 0)
                conn.traffic.traffic_out.cum_bytes = c.get("out", 0)
                conn.traffic.traffic_out.inst_bw = c.get("bwOut", 0)
            writer.write_message(pb.ServerMessage(state=state))
    return path


def _snapshots() -> list[list[dict[str, Any]]]:
    """Four snapshots whose connections change under the same ids: a peer replaced, a
    src or dst changed alone, a rate changed alone (its bytes kept), ids given twice,
    an empty id, connections gone and back; hostile text in every string."""
    evil = '<img src=x onerror="xss(1)"><b class="xss">x</b>'
    base = [
        {"id": b"\x01", "peer": "QmAlpha", "in": 100, "bwIn": 1, "out": 9, "age": 1000},
        {"id": b"\x02", "peer": "QmBravo", "in": 300, "bwIn": 2, "out": 8, "age": 2000},
        {"id": b"\x03", "peer": "QmCharlie", "in": 200, "bwIn": 3, "out": 7, "age": 3000},
        {"id": b"", "peer": "QmEmpty", "in": 50, "out": 6, "age": 4000},
        {"id": b"\x05", "peer": "QmDupOne", "in": 400, "out": 5, "age": 5000},
        {"id": b"\x05", "peer": "QmDupTwo", "in": 500, "out": 4, "age": 6000},
    ]
    s1 = [
        {
            "id": b"\x01",
            "peer": "QmZulu" + evil,
            "in": 900,
            "bwIn": 1,
            "out": 1,
            "age": 1000,
            "status": pb.CLOSED,
        },
        {
            "id": b"\x02",
            "peer": "QmBravo",
            "in": 300,
            "bwIn": 77,
            "out": 8,
            "age": 2000,
            "dst": "/ip4/10.9.9.9/tcp/9" + evil,
        },
        {
            "id": b"\x03",
            "peer": "QmCharlie",
            "in": 200,
            "bwIn": 3,
            "out": 7,
            "age": 3000,
            "src": "/ip6/::1/tcp/1" + evil,
            "transport": "quic" + evil,
        },
        {"id": b"\x05", "peer": "QmDupTwo", "in": 10, "out": 40, "age": 6000},
        {"id": b"\x06", "peer": "QmEcho", "in": 5, "out": 30, "age": 100, "lat": 9_000_000},
    ]
    s2 = [
        {"id": b"\x05", "peer": "QmDupOne", "in": 400, "out": 5, "age": 5000},
        {"id": b"\x05", "peer": "QmDupTwo", "in": 500, "out": 4, "age": 6000},
        {"id": b"\x05", "peer": "QmDupThree", "in": 600, "out": 3, "age": 7000},
        {"id": b"", "peer": "QmEmptyToo", "in": 51, "out": 2, "age": 4500},
    ]
    return [base, s1, s2, s1]


# What the connections table shows against the snapshot shown: [problems]. Each row
# element's cells against its row's data (peer, status, endpoints, transport, in, out,
# age), the rows' data against the snapshot's connections (as many of each), and the
# rows in the order of the sorted column.
CHECK = """([field, dir, find]) => {
  const fmt = window.__fmt;
  const v = window.dashboardState.view;
  const table = Tabulator.findTable('#connections-table')[0];
  const problems = [];
  const key = (c) => [c.id, c.peer, c.status, c.src, c.dst, c.in, c.out, c.bwIn].join('|');
  const kept = v.conns.filter((c) => c.peer.toLowerCase().includes(find));
  const want = kept.map(key).sort();
  const rows = table.getRows('active');
  const got = rows.map((r) => key(r.getData())).sort();
  if (JSON.stringify(want) !== JSON.stringify(got)) problems.push(`rows ${got} for ${want}`);
  const els = [...document.querySelectorAll('#connections-table .tabulator-row')];
  if (els.length !== kept.length) problems.push(`${els.length} row elements for ${kept.length}`);
  const text = (el, f) => el.querySelector(`[tabulator-field=${f}]`).textContent;
  const shown = [];
  for (const el of els) {
    const row = rows.find((r) => r.getElement() === el);
    if (!row) { problems.push('a row element of no active row'); continue; }
    const d = row.getData();
    shown.push(d);
    const expect = {
      peer: fmt.shortPeer(d.peer), status: d.status, src: `${d.src}→ ${d.dst}`,
      transport: d.transport, in: fmt.bytes(d.in) + fmt.rate(d.bwIn),
      out: fmt.bytes(d.out) + fmt.rate(d.bwOut), age: fmt.duration(d.age),
    };
    for (const [f, t] of Object.entries(expect)) {
      if (text(el, f) !== t) problems.push(`${d.peer} ${f}: shows ${text(el, f)}, has ${t}`);
    }
    if (el.querySelector('[tabulator-field=peer] .peer-cell').title !== d.peer) problems.push(`${d.peer} title`);
    if (el.classList.contains('closed-row') !== (d.status === 'CLOSED')) problems.push(`${d.peer} grey`);
    const chosen = window.dashboardState.selectedConn;
    if (el.classList.contains('selected-row') !== (d.id === chosen)) problems.push(`${d.peer} selected`);
  }
  const chosenConn = v.conns.find((c) => c.id === window.dashboardState.selectedConn);
  const detail = chosenConn ? `${chosenConn.peer} (${chosenConn.status})` : 'a connection not in this snapshot';
  if (document.querySelector('#detail-peer').textContent !== detail) problems.push(`detail: ${detail}`);
  // Rows in DOM order, by their top: the sort's order.
  const top = (el) => el.getBoundingClientRect().top;
  const order = els.slice().sort((a, b) => top(a) - top(b)).map((el) => rows.find((r) => r.getElement() === el)?.getData());
  for (let i = 1; i < order.length; i += 1) {
    const a = order[i - 1]?.[field], b = order[i]?.[field];
    const c = typeof a === 'number' ? a - b : String(a).toLowerCase().localeCompare(String(b).toLowerCase());
    if ((dir === 'asc' ? c : -c) > 0) problems.push(`out of order by ${field} ${dir}: ${a} before ${b}`);
  }
  return problems;
}"""

MOMENTS = [0, 1, 2, 3, 1, 0, 2, 1, 3, 0]


@pytest.mark.parametrize(("field", "find"), [("peer", ""), ("status", "dup"), ("in", "qm"),
                                             ("out", "")])  # fmt: skip
def test_scrubbed_rows_show_the_moment_shown_under_every_sort(
    unprotected_page: Any, tmp_path: Path, field: str, find: str,  # noqa: F811
):  # fmt: skip
    from playwright.sync_api import Error

    page = unprotected_page
    path = _write(tmp_path / "churn.mock", _snapshots())
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        page.evaluate("async () => { window.__fmt = await import('/static/js/format.js'); }")
        page.wait_for_function("() => window.dashboardState?.view?.conns.length > 0")
        # A connection chosen (its row marked, its detail shown) whose id is then another
        # peer's, then gone (kept a while as closed).
        page.locator("#timeline").fill("0")
        page.wait_for_function("(ts) => window.dashboardState.view?.ts === ts", arg=START_MS)
        row = page.locator("#connections-table .tabulator-row", has_text="QmAlpha")
        row.locator("[tabulator-field=status]").click()
        page.wait_for_function("() => window.dashboardState.selectedConn === '01'")
        page.fill("#filter-peer", find)
        header = f"#connections-table .tabulator-col[tabulator-field={field}]"
        for dir_ in ("ascending", "descending"):
            while page.get_attribute(header, "aria-sort") != dir_:
                page.click(f"{header} .tabulator-col-title")
            for i in MOMENTS:
                page.locator("#timeline").fill(str(i))
                page.wait_for_function("(ts) => window.dashboardState.view?.ts === ts",
                                       arg=START_MS + i * INTERVAL_MS)  # fmt: skip
                sort = [field, "asc" if dir_ == "ascending" else "desc", find]
                try:  # the table is drawn a moment after the snapshot is shown
                    page.wait_for_function(f"(a) => ({CHECK})(a).length === 0", arg=sort,
                                           timeout=5_000)  # fmt: skip
                except Error:
                    pytest.fail(f"at moment {i}, {sort}: {page.evaluate(CHECK, sort)}")
        assert_nothing_ran(page)


def _write_events(path: Path, snapshots: int, per_snapshot: int) -> Path:
    """A recording of `snapshots` snapshots (one connection) with `per_snapshot` events
    after each, whose content (a JSON object) grows with its number."""
    with RecordingWriter(path, close_stream=True) as writer:
        runtime = pb.Runtime(implementation="py-libp2p", version="0.8.1", platform="test",
                             peer_id="QmSelf")  # fmt: skip
        event_type = runtime.event_types.add(name='Evt<img src=x onerror="xss(2)">')
        event_type.property_types.add(name="text", type=pb.EventType.EventProperty.STRING)
        writer.write_message(pb.ServerMessage(runtime=runtime))
        n = 0
        for i in range(snapshots):
            ts = START_MS + i * INTERVAL_MS
            state = pb.State(instant_ts=ts, start_ts=ts - INTERVAL_MS,
                             snapshot_duration_ms=INTERVAL_MS)  # fmt: skip
            state.subsystems.connections.add(id=b"\x01", peer_id="QmA", status=pb.ACTIVE)
            writer.write_message(pb.ServerMessage(state=state))
            for _ in range(per_snapshot):
                n += 1
                text = f'<b class="xss">event {n}</b> ' + "word " * n
                writer.write_message(pb.ServerMessage(event=pb.Event(
                    type=event_type, ts=ts + n, content=json.dumps({"text": text}))))  # fmt: skip
    return path


# The events table against its rows: [problems]. Every expanded row shows one JSON block,
# of its own event; rows do not overlap (a row's height follows what it holds).
EVENTS_CHECK = """() => {
  const table = Tabulator.findTable('#events-table')[0];
  const rows = table.getRows('active');
  const problems = [];
  const els = [...document.querySelectorAll('#events-table .tabulator-row')];
  const boxes = els.map((el) => el.getBoundingClientRect()).sort((a, b) => a.top - b.top);
  for (let i = 1; i < boxes.length; i += 1) {
    if (boxes[i].top < boxes[i - 1].bottom - 1) problems.push(`rows overlap at ${i}`);
  }
  for (const el of els) {
    const row = rows.find((r) => r.getElement() === el);
    if (!row) { problems.push('a row element of no active row'); continue; }
    const d = row.getData();
    const pres = el.querySelectorAll('pre.event-json');
    if (el.querySelector('[tabulator-field=seq]').textContent !== String(d.seq)) problems.push(`seq ${d.seq}`);
    if (pres.length > 1) problems.push(`${d.seq}: ${pres.length} JSON blocks`);
    const json = JSON.stringify({ ts: d.ts, type: d.type, content: d.content }, null, 2);
    if (pres.length === 1 && pres[0].textContent !== json) problems.push(`${d.seq}: another event's JSON`);
  }
  return problems;
}"""


def test_expanded_event_rows_stay_right_across_the_timeline(unprotected_page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import Error

    page = unprotected_page
    path = _write_events(tmp_path / "events.mock", 4, 6)
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        open_tab(page, "events")
        page.wait_for_function(
            "() => document.querySelectorAll('#events-table .tabulator-row').length >= 6"
        )
        for k in range(3):  # expand three rows
            page.locator("#events-table .tabulator-row").nth(k * 2).locator(
                "[tabulator-field=summary]"
            ).click()
        page.wait_for_function(
            "() => document.querySelectorAll('#events-table pre.event-json').length === 3"
        )
        for i in [3, 2, 1, 0, 3, 1, 2]:
            page.locator("#timeline").fill(str(i))
            page.wait_for_function("(ts) => window.dashboardState.view?.ts === ts",
                                   arg=START_MS + i * INTERVAL_MS)  # fmt: skip
            try:
                page.wait_for_function(f"() => ({EVENTS_CHECK})().length === 0", timeout=5_000)
            except Error:
                pytest.fail(f"at moment {i}: {page.evaluate(EVENTS_CHECK)}")
        assert_nothing_ran(page)


def test_odd_connection_ids_leave_the_choosers_prompt_and_options_right(
    unprotected_page: Any, tmp_path: Path,  # noqa: F811
):  # fmt: skip
    """An empty id (the chooser's "no choice" value) and an id given twice: the prompt
    still reads as the prompt, and each id has one option."""
    from playwright.sync_api import expect

    page = unprotected_page
    conns = [
        {"id": b"", "peer": "QmEmpty"},
        {"id": b"\x07", "peer": "QmSevenOne"},
        {"id": b"\x07", "peer": "QmSevenTwo"},
        {"id": b"\x08", "peer": "QmEight"},
    ]
    path = _write(tmp_path / "odd.mock", [conns, conns])
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        page.wait_for_function("() => window.dashboardState?.view?.conns.length === 4")
        open_tab(page, "traffic")
        page.locator("#timeline").fill("0")
        page.wait_for_function("(ts) => window.dashboardState.view?.ts === ts", arg=START_MS)
        select = page.locator("#traffic-conn")
        expect(select.locator("option").first).to_have_text("choose a connection")
        assert page.evaluate(
            "() => document.querySelector('#traffic-conn').selectedOptions[0].text"
        ) == ("choose a connection")
        values = page.evaluate(
            "() => [...document.querySelectorAll('#traffic-conn option')].map((o) => o.value)"
        )
        assert values == ["", "07", "08"], values  # one option an id, the first one's
        page.select_option("#traffic-conn", values[-1])
        expect(select.locator("option").first).to_have_text("choose a connection")
        assert_nothing_ran(page)
