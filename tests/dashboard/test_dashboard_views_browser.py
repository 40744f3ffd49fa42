"""The §3.1 views in headless Chromium (as test_dashboard_browser.py, whose fixtures and
helpers this reuses): the node header, the agent on connections, Protocols, Pubsub,
Resources and the new events, on a recording of a node that reports everything, on one
recorded before the extensions, and with a hostile string in every new field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_process import running
from full_node import HOSTILE_FIELDS, PEER_A, payload, write_full_recording
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    _open_page,
    assert_nothing_ran,
    browser,
    open_tab,
    page,
    shot,
)


def _dashboard(path: Path) -> Any:
    return running(["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)],
                   first_line_timeout=60)  # fmt: skip


def test_each_new_view_shows_a_full_snapshot(page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    with _dashboard(write_full_recording(tmp_path / "full.mock")) as (_, url):
        page.goto(url)
        # The header: addresses, reachability, the protocols the node handles.
        expect(page.locator("#node-listen code")).to_have_text(
            ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.1.1.1/tcp/4001"]
        )
        expect(page.locator("#node-observed")).to_have_text("/ip4/203.0.113.7/tcp/4001")
        expect(page.locator("#node-reach")).to_have_text("private (behind NAT)")
        expect(page.locator("#node-protocols-count")).to_have_text("3 protocols")
        page.click("#node-protocols summary")
        expect(page.locator("#node-protocols-list li")).to_have_text(
            ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/meshsub/1.1.0"]
        )
        # Connections: the agent, the identify data in the tooltip and the detail.
        rows = page.locator("#connections-table .tabulator-row")
        expect(rows).to_have_count(2)
        agents = page.locator("#connections-table .tabulator-row [tabulator-field=agent]")
        expect(agents).to_have_text(["py-libp2p/0.8.1", "not identified"])
        agents.first.hover()
        tip = page.locator(".tabulator-tooltip").last
        expect(tip).to_contain_text("protocol version: ipfs/0.1.0")
        expect(tip).to_contain_text("listen addresses: /ip4/10.0.0.1/tcp/4001")
        rows.first.locator("[tabulator-field=status]").click()
        expect(page.locator("#detail-peerinfo")).to_contain_text("sees us at/ip4/127.0.0.1/tcp/4001")
        page.click("#detail-close")

        open_tab(page, "protocols")
        expect(page.locator("#protocols-summary")).to_contain_text("3 protocols · 3 active streams")
        protos = page.locator("#protocols-table .tabulator-row [tabulator-field=proto]")
        expect(protos).to_have_text(["/meshsub/1.1.0", "/ipfs/ping/1.0.0", "(closed before negotiating)"])
        first = page.locator("#protocols-table .tabulator-row").first
        expect(first.locator("[tabulator-field=active]")).to_have_text("2")
        expect(first.locator("[tabulator-field=in]")).to_have_text("11.7 KiB2.93 KiB/s")
        expect(page.locator("#chart-protocols .u-legend")).to_contain_text("/meshsub/1.1.0")
        expect(page.locator("#chart-protocols .u-legend")).to_contain_text("(not negotiated)")
        shot(page, "views-protocols")

        open_tab(page, "pubsub")
        expect(page.locator("#pubsub-summary")).to_contain_text(
            "router /meshsub/1.1.0 · 3 topics (2 subscribed) · 2 peers · 1 graft and 1 prune"
        )
        blocks = page.locator("#pubsub-topics-table .tabulator-row").first
        expect(blocks.locator("[tabulator-field=name]")).to_have_text("blocks")
        expect(blocks.locator("[tabulator-field=mesh]")).to_have_text("1")
        expect(blocks.locator("[tabulator-field=msgIn]")).to_have_text("205.0/s")
        blocks.locator("[tabulator-field=mesh]").hover()
        expect(page.locator(".tabulator-tooltip").last).to_have_text(PEER_A)
        scores = page.locator("#pubsub-peers-table .tabulator-row [tabulator-field=score]")
        expect(scores).to_have_text(["-1.250", "2.500"])
        shot(page, "views-pubsub")

        open_tab(page, "resources")
        expect(page.locator("#resources-summary")).to_contain_text("2 scopes · 6 refused reservations")
        scope = page.locator("#resources-table .tabulator-row")
        expect(scope.nth(0).locator("[tabulator-field=connsUsed]")).to_contain_text("2 / 128")
        expect(scope.nth(1).locator("[tabulator-field=streamsUsed]")).to_have_text("2 / no limit")
        shot(page, "views-resources")

        open_tab(page, "events")
        summaries = page.locator("#events-table .tabulator-row [tabulator-field=summary]")
        expect(summaries).to_have_count(6)
        expect(summaries.first).to_have_text('12D3KooW…AAAAAA left our mesh of "txs" (we asked)')
        expect(page.locator("#events-table")).to_contain_text("reachability is now PRIVATE")

        # An earlier moment: the views follow the timeline (the fewer messages then).
        page.locator("#timeline").fill("0")
        open_tab(page, "pubsub")
        expect(blocks.locator("[tabulator-field=msgIn]")).to_have_text("5—")


def test_a_node_without_the_extensions_says_so(page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    with _dashboard(write_full_recording(tmp_path / "old.mock", extensions=False)) as (_, url):
        page.goto(url)
        expect(page.locator("#connections-table .tabulator-row")).to_have_count(2)
        expect(page.locator("#node-ext-absent")).to_be_visible()
        expect(page.locator("#node-ext")).to_be_hidden()
        expect(page.locator("#connections-table .tabulator-row [tabulator-field=agent]")).to_have_text(
            ["not identified", "not identified"]
        )
        for name in ("pubsub", "resources"):
            expect(page.locator(f"nav.tabs button[data-tab={name}]")).to_be_hidden()
        open_tab(page, "protocols")
        expect(page.locator("#protocols-summary")).to_contain_text("reports no per-protocol traffic")
        expect(page.locator("#chart-protocols")).to_be_hidden()


def test_the_pubsub_tab_of_a_snapshot_without_pubsub_says_the_node_runs_none(
    page: Any, tmp_path: Path  # noqa: F811
):
    from playwright.sync_api import expect

    from libp2p_introspection.protocol import pb

    late = pb.State(instant_ts=1_700_000_100_000, start_ts=1_700_000_099_000)  # without them
    path = write_full_recording(tmp_path / "full.mock", then=(late,))
    with _dashboard(path) as (_, url):
        page.goto(url)
        expect(page.locator("nav.tabs button[data-tab=pubsub]")).to_be_hidden()
        page.locator("#timeline").fill("0")  # the first snapshot had pubsub
        open_tab(page, "pubsub")
        expect(page.locator("#pubsub-topics-table .tabulator-row")).to_have_count(3)
        page.click("#live-btn")
        expect(page.locator("#pubsub-summary")).to_have_text(
            "This node does not run pubsub: no floodsub or gossipsub router in this snapshot."
        )
        expect(page.locator("#pubsub-body")).to_be_hidden()
        # The tab shown stays (it says why it is empty); the other one goes.
        expect(page.locator("nav.tabs button[data-tab=resources]")).to_be_hidden()
        page.locator("#timeline").fill("0")
        open_tab(page, "resources")
        page.click("#live-btn")
        expect(page.locator("#resources-summary")).to_contain_text("resource manager is off")


@pytest.fixture
def unprotected_page(browser: Any) -> Iterator[Any]:  # noqa: F811
    """A page whose CSP the browser ignores: the page's own escaping must hold alone."""
    yield from _open_page(browser, bypass_csp=True)


def _tooltip(shown: Any, cell: Any) -> str:
    from playwright.sync_api import expect

    shown.mouse.move(0, 0)
    cell.hover()
    tip = shown.locator(".tabulator-tooltip").last
    expect(tip).to_be_visible()
    return tip.text_content() or ""


def test_hostile_strings_in_every_new_field_show_as_text(unprotected_page: Any, tmp_path: Path):
    from playwright.sync_api import expect

    pg = unprotected_page
    with _dashboard(write_full_recording(tmp_path / "hostile.mock", hostile=True)) as (_, url):
        pg.goto(url)
        expect(pg.locator("#connections-table .tabulator-row")).to_have_count(2)
        seen = [_tooltip(pg, pg.locator("#connections-table .tabulator-row [tabulator-field=agent]").first)]
        pg.locator("#connections-table .tabulator-row").first.locator(
            "[tabulator-field=status]").click()  # fmt: skip
        expect(pg.locator("#detail-peerinfo dl")).to_be_visible()
        pg.click("#node-protocols summary")
        expect(pg.locator("#node-protocols-list li").first).to_be_visible()
        # What each view shows, read while it is shown (a hidden table drops its rows).
        seen.append(pg.evaluate("() => document.body.textContent"))
        for tab in ("peers", "protocols", "pubsub", "resources", "events"):
            open_tab(pg, tab)
            expect(pg.locator(f"#tab-{tab} .tabulator-row").first).to_be_visible()
            seen.append(pg.locator(f"#tab-{tab}").text_content() or "")
            if tab == "pubsub":
                topic = pg.locator("#pubsub-topics-table .tabulator-row").filter(has_text="ext.topic")
                seen.append(_tooltip(pg, topic.locator("[tabulator-field=mesh]")))
                peers = pg.locator("#pubsub-peers-table .tabulator-row")
                seen.append(_tooltip(pg, peers.first.locator("[tabulator-field=topics]")))
                seen.append(peers.first.locator(".peer-cell").get_attribute("title") or "")
        shown = "\n".join(seen)
        missing = [f for f in HOSTILE_FIELDS if payload(f) not in shown]
        assert not missing, f"not shown as text: {missing}"
        shot(pg, "views-hostile")
        assert_nothing_ran(pg)
