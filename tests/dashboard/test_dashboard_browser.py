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

import os
import re
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
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
SAMPLE_PEER = "8de3166db28fddb199f05be0acea65772e7a1b289086902160d1060e83dac2fd"
#: Bound on any one thing the page should come to show, ms.
SHOW_TIMEOUT_MS = 20_000
INTERVAL_MS = 300


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


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(SHOW_TIMEOUT_MS)
    # Assertions have their own timeout (5 s by default): a loaded 2-core machine
    # can need longer to reconnect and redraw, so they wait as long as actions do.
    expect.set_options(timeout=SHOW_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def shown_ts(page: Any) -> int:
    return int(page.get_attribute("#snapshot-ts", "data-ts") or 0)


def wait_shown_ts_above(page: Any, ts: int) -> None:
    page.wait_for_function(
        "(ts) => Number(document.querySelector('#snapshot-ts').dataset.ts || 0) > ts", arg=ts
    )


def open_tab(page: Any, name: str) -> None:
    page.click(f"nav.tabs button[data-tab={name}]")
    page.wait_for_selector(f"#tab-{name}.active")


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
    expect(page.locator("#dht-table .tabulator-group").first).to_contain_text("common prefix length")
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
    expect(page.locator("#events-table pre.event-json").first).to_contain_text(f'"type": "{wanted}"')
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
    time.sleep(3 * INTERVAL_MS / 1000)  # a snapshot asked for before the pause may still come
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
        expect(page.locator("#conn-state")).to_have_text("disconnected")
        expect(page.locator("#connections-table .tabulator-row")).to_have_count(10)
        expect(page.locator("#timeline")).to_have_attribute("max", "29")
        open_tab(page, "dht")
        expect(page.locator("#dht-summary")).to_contain_text("k=20 \u03b1=3")
        shot(page, "recording-dht")
        open_tab(page, "events")
        expect(page.locator("#event-chips .chip[data-type=InboundDHTQuery] .n")).to_have_text("465")
        shot(page, "recording-events")
