"""Attack on the page's snapshot and delta messages (fixtures of test_dashboard_browser.py).

A page is sent, after its first ``hello``, ``snapshot`` and ``delta`` messages
(dashboard/page_json.py); a page opened later is sent the same snapshot whole, in its
``hello``. (Streams are no longer in these messages: pages ask ``GET /api/streams``.) What the page shows of one snapshot must not depend
on which it got. The messages here are the real dashboard model's
(:class:`~libp2p_introspection.dashboard.model.DashboardModel`, fed hand-built hostile
snapshots), given to the page over its ``/feed`` in place of a dashboard's (Playwright's
WebSocket routing); the page is the dashboard's own, served by a dashboard process.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    browser,
    open_tab,
    page,
)

from libp2p_introspection.dashboard.browsers import BrowserHub
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.dashboard.streams_api import StreamPages, StreamQuery
from libp2p_introspection.protocol import pb


@pytest.fixture(scope="module")
def dashboard_page_url() -> Iterator[str]:
    """A dashboard serving its page (its node never answers: the feed is the test's)."""
    from cli_process import running

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"ws://127.0.0.1:{unused.getsockname()[1]}/introspect"
    args = ["-m", "libp2p_introspection", "dashboard", nowhere, "--port", "0", "--no-events"]
    with running(args, first_line_timeout=60) as (_, url):
        yield url


def _feed(pg: Any, batches: list[str]) -> None:
    """The page's /feed: these batches (JSON array texts), in order, then nothing."""

    def route(ws: Any) -> None:
        for text in batches:
            ws.send(text)

    pg.route_web_socket("**/feed", route)


def _state(ts: int, stream_open: int) -> pb.State:
    state = pb.State(instant_ts=ts, start_ts=ts - 1_000, snapshot_duration_ms=1_000)
    conn = state.subsystems.connections.add(
        id=b"\x01", peer_id="QmPeer", status=pb.ACTIVE, role=pb.INITIATOR
    )
    conn.timeline.open_ts = 1_000
    stream = conn.streams.streams.add(id=b"\x02", protocol="/p/1", status=pb.ACTIVE)
    stream.timeline.open_ts = stream_open
    stream.traffic.traffic_in.cum_bytes = 7
    return state


@pytest.mark.parametrize(
    ("ts", "stream_open"),
    [
        (2**63, 3),  # a hostile node's clock: beyond 2^53 ms
        (2**53 + 4, 1),
    ],
)
def test_a_stream_has_the_same_exact_age_whether_its_page_was_primed_or_read_from_the_store(
    ts: int, stream_open: int
):
    """A stream's age is ts - open. It was once sent to pages packed as an age the page
    turned back into ``open = ts - age``, which a double cannot hold beyond 2^53 (the row
    came back "never opened", age 0). Pages are now sent their Streams rows by the
    dashboard (``GET /api/streams``), which computes the age in integers: the newest
    snapshot's page (built from the snapshot just converted) and an older moment's page
    (its stored text parsed again) must give the same, exact age."""
    model = DashboardModel(Store(), BrowserHub())
    model.feed_state(_state(ts, stream_open))
    primed = model.streams.answer(model.store, StreamQuery(ts=None))
    from_text = StreamPages().answer(model.store, StreamQuery(ts=ts))
    assert primed is not None and from_text is not None
    assert [r["age"] for r in primed["data"]] == [ts - stream_open]
    assert from_text["data"] == primed["data"]
    assert json.loads(json.dumps(primed))["data"][0]["age"] == ts - stream_open


# Every row of the Connections table, then of the Streams table, as the page holds them.
TABLE_ROWS = """async (tab) => {
  const tables = await import('/static/js/tables.js');
  await new Promise((r) => requestAnimationFrame(r));
  await tables.allSet();
  const t = Tabulator.findTable(tab === 'streams' ? '#streams-table' : '#connections-table')[0];
  const rows = t.getData().map((d) => JSON.stringify(d, Object.keys(d).sort()));
  rows.sort();
  const v = window.dashboardState.view;
  return { rows, n: v.conns.length, header: [document.getElementById('num-conns').textContent,
           document.getElementById('num-streams').textContent] };
}"""

HOSTILE = ["", "__proto__", "constructor", "<img src=x onerror=xss(1)>", "a" * 1100, "toString"]


def _hostile_states(seed: int, n: int) -> list[pb.State]:
    """n snapshots of a few connections whose ids come back with other content, whose
    fields are cleared, whose identify data comes, changes and vanishes, duplicated ids."""
    import random

    rng = random.Random(seed)
    states = []
    for k in range(n):
        ts = 1_700_000_000_000 + 1_000 * k
        state = pb.State(instant_ts=ts, start_ts=ts - 1_000, snapshot_duration_ms=1_000)
        for _ in range(rng.randint(0, 5)):
            conn = state.subsystems.connections.add(
                id=rng.choice([b"\x01", b"\x02", b"\x03", b"\x00" * 70]),
                peer_id=rng.choice([*HOSTILE, "QmA", "QmB"]),
                status=rng.choice([pb.ACTIVE, pb.CLOSED, 7]),
                role=rng.choice([pb.INITIATOR, pb.RESPONDER]),
            )
            conn.timeline.open_ts = rng.choice([0, ts - 5_000])
            conn.endpoints.src_multiaddr = rng.choice(HOSTILE)
            conn.attribs.multiplexer = rng.choice(HOSTILE)
            conn.traffic.traffic_in.cum_bytes = rng.choice([0, 5, 2**53 + 1])
            conn.traffic.traffic_in.inst_bw = rng.choice([0, 9])
            if rng.random() < 0.6:
                conn.peer.agent_version = rng.choice(HOSTILE)
                conn.peer.protocols.extend(rng.sample(HOSTILE, rng.randint(0, 2)))
            for j in range(rng.randint(0, 3)):
                stream = conn.streams.streams.add(
                    id=bytes([j]), protocol=rng.choice(HOSTILE), status=pb.ACTIVE
                )
                stream.timeline.open_ts = rng.choice([0, ts - 500])
                stream.traffic.traffic_in.cum_bytes = rng.choice([0, 3])
        states.append(state)
    return states


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_page_following_deltas_shows_what_a_fresh_page_shows_of_every_snapshot(
    page: Any,  # noqa: F811
    browser: Any,  # noqa: F811
    dashboard_page_url: str,
    seed: int,
):
    """Hostile snapshots in turn; after each, the page that followed the deltas and a page
    opened then (a hello) hold the same rows in both tables, and the same counts."""
    model = DashboardModel(Store(), BrowserHub(), closed_ttl_ms=2_500)
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    sockets: list[Any] = []

    def route(ws: Any) -> None:
        sockets.append(ws)
        ws.send(model.hello())
        ws.on_message(lambda m: ws.send(model.hello()) if m == "resync" else None)

    page.route_web_socket("**/feed", route)
    model.feed_state(_hostile_states(seed, 1)[0])
    page.goto(dashboard_page_url)
    fresh = browser.new_page()
    try:
        for k, state in enumerate(_hostile_states(seed, 10)):
            if k == 0:
                continue
            start = len(sent)
            model.feed_state(state)
            sockets[-1].send("[" + ",".join(sent[start:]) + "]")
            page.wait_for_function("(ts) => window.dashboardState?.view?.ts === ts",
                                   arg=state.instant_ts)  # fmt: skip
            _feed(fresh, [model.hello()])
            fresh.goto(dashboard_page_url)
            fresh.wait_for_function("(ts) => window.dashboardState?.view?.ts === ts",
                                    arg=state.instant_ts)  # fmt: skip
            for tab in ("connections", "streams"):
                open_tab(page, tab)
                open_tab(fresh, tab)
                got, want = page.evaluate(TABLE_ROWS, tab), fresh.evaluate(TABLE_ROWS, tab)
                assert got == want, (k, tab, got, want)
            open_tab(page, "connections")
        assert page.evaluate("() => window.dashboardState.deltas") > 0
    finally:
        fresh.close()


@pytest.mark.parametrize("how", ["dropped", "duplicated", "reordered"])
def test_a_page_that_misses_gets_twice_or_out_of_order_ends_showing_the_latest_exactly(
    page: Any,  # noqa: F811
    browser: Any,  # noqa: F811
    dashboard_page_url: str,
    how: str,
):
    """Messages lost, sent twice or swapped on the way: the page never shows a snapshot
    made of the wrong base, and ends with what a fresh page shows of the latest."""
    model = DashboardModel(Store(), BrowserHub(), closed_ttl_ms=2_500)
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    sockets: list[Any] = []

    def route(ws: Any) -> None:
        sockets.append(ws)
        ws.send(model.hello())
        ws.on_message(lambda m: ws.send(model.hello()) if m == "resync" else None)

    page.route_web_socket("**/feed", route)
    states = _hostile_states(7, 8)
    model.feed_state(states[0])
    page.goto(dashboard_page_url)
    page.wait_for_function("(ts) => window.dashboardState?.view?.ts === ts",
                           arg=states[0].instant_ts)  # fmt: skip
    messages = []
    for state in states[1:]:
        start = len(sent)
        model.feed_state(state)
        messages.append(",".join(sent[start:]))
    if how == "dropped":
        del messages[2]
    elif how == "duplicated":
        messages.insert(3, messages[2])
    else:
        messages[2], messages[3] = messages[3], messages[2]
    for text in messages:
        sockets[-1].send(f"[{text}]")
    last = states[-1].instant_ts
    page.wait_for_function("(ts) => window.dashboardState?.view?.ts === ts", arg=last)
    assert page.evaluate("() => window.dashboardState.resyncs") >= 1
    fresh = browser.new_page()
    try:
        _feed(fresh, [model.hello()])
        fresh.goto(dashboard_page_url)
        fresh.wait_for_function("(ts) => window.dashboardState?.view?.ts === ts", arg=last)
        for tab in ("connections", "streams"):
            open_tab(page, tab)
            open_tab(fresh, tab)
            got, want = page.evaluate(TABLE_ROWS, tab), fresh.evaluate(TABLE_ROWS, tab)
            assert got == want, (tab, got, want)
    finally:
        fresh.close()


def _route_snapshots(pg: Any, model: DashboardModel) -> None:
    """GET /api/snapshot?ts= answered from the model's store, as the dashboard does."""
    from urllib.parse import parse_qs, urlparse

    def answer(route: Any) -> None:
        ts = int(parse_qs(urlparse(route.request.url).query)["ts"][0])
        stored = model.store.at(ts)
        route.fulfill(status=200, content_type="application/json", body=stored.text)

    pg.route("**/api/snapshot?*", answer)


def test_scrubbing_back_while_deltas_flow_then_returning_to_live_shows_the_latest_exactly(
    page: Any,  # noqa: F811
    browser: Any,  # noqa: F811
    dashboard_page_url: str,
):
    model = DashboardModel(Store(), BrowserHub(), closed_ttl_ms=2_500)
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    sockets: list[Any] = []

    def route(ws: Any) -> None:
        sockets.append(ws)
        ws.send(model.hello())
        ws.on_message(lambda m: ws.send(model.hello()) if m == "resync" else None)

    page.route_web_socket("**/feed", route)
    _route_snapshots(page, model)
    states = _hostile_states(11, 9)
    model.feed_state(states[0])
    page.goto(dashboard_page_url)

    def step(state: pb.State) -> None:
        start = len(sent)
        model.feed_state(state)
        sockets[-1].send("[" + ",".join(sent[start:]) + "]")

    for state in states[1:5]:
        step(state)
    page.wait_for_function("(ts) => window.dashboardState?.view?.ts === ts",
                           arg=states[4].instant_ts)  # fmt: skip
    # The slider is drawn on the next frame after a message: wait until it spans the timeline
    # (a value past its old max would be clamped), then move it as a user would.
    drawn = """() => { const n = window.dashboardState?.timeline?.length;
                       return n > 1 && document.getElementById('timeline').max === String(n - 1); }"""
    scrub = """(i) => { const s = document.getElementById('timeline'); s.value = String(i);
                        s.dispatchEvent(new Event('input')); }"""
    page.wait_for_function(drawn)
    page.evaluate(scrub, 1)
    page.wait_for_function("(ts) => window.dashboardState.view.ts === ts", arg=states[1].instant_ts)
    fresh = browser.new_page()
    try:
        _route_snapshots(fresh, model)
        _feed(fresh, [model.hello()])
        fresh.goto(dashboard_page_url)
        fresh.wait_for_function("() => window.dashboardState?.view")
        fresh.wait_for_function(drawn)
        fresh.evaluate(scrub, 1)
        fresh.wait_for_function("(ts) => window.dashboardState.view.ts === ts",
                                arg=states[1].instant_ts)  # fmt: skip
        for tab in ("connections", "streams"):
            open_tab(page, tab)
            open_tab(fresh, tab)
            assert page.evaluate(TABLE_ROWS, tab) == fresh.evaluate(TABLE_ROWS, tab), tab
        open_tab(page, "connections")
        for state in states[5:]:  # deltas while the past is shown
            step(state)
        page.wait_for_function("(n) => window.dashboardState.timeline.length === n", arg=9)
        assert page.evaluate("() => window.dashboardState.view.ts") == states[1].instant_ts
        page.click("#live-btn")
        last = states[-1].instant_ts
        page.wait_for_function("(ts) => window.dashboardState.view.ts === ts", arg=last)
        _feed(fresh, [model.hello()])
        fresh.goto(dashboard_page_url)
        fresh.wait_for_function("(ts) => window.dashboardState?.view?.ts === ts", arg=last)
        for tab in ("connections", "streams"):
            open_tab(page, tab)
            open_tab(fresh, tab)
            assert page.evaluate(TABLE_ROWS, tab) == fresh.evaluate(TABLE_ROWS, tab), tab
    finally:
        fresh.close()


@pytest.mark.xfail(strict=True, reason="known: the page compares timestamps as doubles, equal beyond 2^53 ms")
def test_snapshots_beyond_2_53_ms_are_as_many_on_the_timeline_as_a_fresh_page_counts(
    page: Any,  # noqa: F811
    browser: Any,  # noqa: F811
    dashboard_page_url: str,
):
    """Two snapshots whose instant_ts differ beyond 2^53 ms are two stored snapshots; a
    page that was sent them one by one and a fresh page must count as many."""
    model = DashboardModel(Store(), BrowserHub())
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    sockets: list[Any] = []

    def route(ws: Any) -> None:
        sockets.append(ws)
        ws.send(model.hello())

    page.route_web_socket("**/feed", route)
    page.goto(dashboard_page_url)
    page.wait_for_function("() => window.dashboardState?.hellos >= 1")
    for ts in (2**53 + 2, 2**53 + 3, 2**53 + 5):
        start = len(sent)
        model.feed_state(_state(ts, 1))
        sockets[-1].send("[" + ",".join(sent[start:]) + "]")
    assert len(model.store.timeline()) == 3
    page.wait_for_function("() => window.dashboardState.deltas >= 2")
    fresh = browser.new_page()
    try:
        _feed(fresh, [model.hello()])
        fresh.goto(dashboard_page_url)
        fresh.wait_for_function("() => window.dashboardState?.view")
        counted = "() => document.getElementById('timeline-range').textContent"
        fresh.wait_for_function(f"() => ({counted})().includes('snapshots kept')")
        page.wait_for_function(f"() => ({counted})().includes('snapshots kept')")
        assert page.evaluate(counted) == fresh.evaluate(counted)
        assert page.evaluate("() => window.dashboardState.timeline.length") == 3
    finally:
        fresh.close()
