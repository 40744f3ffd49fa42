"""The Nodes view in Chromium: several real introspection servers on loopback (synthetic
nodes, registered in a registry of their own) and a dashboard following them, served
by trio in a thread of the test (bench.nodes_view.NodesInThread, which the benchmark
uses too). Assertions are on what the page shows; every wait is bounded.
"""

from __future__ import annotations

from typing import Any

from test_dashboard_browser import browser, page, shot  # noqa: F401 - the fixtures

from bench.nodes_view import NodesInThread

HOSTILE_PEER = "<img src=x onerror=xss('peer')>12D3KooW"
HOSTILE_IMPL = "<script>xss('impl')</script><b class=xss>py</b>"


def rows(page: Any) -> list[dict[str, str]]:  # noqa: F811 - a page, not the fixture
    return page.eval_on_selector_all(
        "#nodes-body tr",
        """trs => trs.map(tr => ({
            id: tr.dataset.id, cls: tr.className,
            status: tr.querySelector('.c-status span').textContent,
            peer: tr.querySelector('.c-peer code').textContent,
            peerTitle: tr.querySelector('.c-peer code').title,
            impl: tr.querySelector('.c-impl span').textContent,
            url: tr.querySelector('.c-url code').textContent,
            conns: tr.querySelector('.c-conns span').textContent}))""",
    )


def test_the_nodes_view_lists_focuses_and_shows_gone_nodes(page):  # noqa: F811
    from playwright.sync_api import expect

    with NodesInThread(3, interval_ms=300, node_pull_s=0.2,
                       names={2: (HOSTILE_PEER, HOSTILE_IMPL)}) as nodes:  # fmt: skip
        servers = nodes.servers
        page.goto(nodes.dashboard_url)
        page.click("button[data-tab=nodes]")
        expect(page.locator("#nodes-body tr.node-live")).to_have_count(3)
        expect(page.locator("#nodes-total")).to_have_text("3")
        shown = {row["url"]: row for row in rows(page)}
        assert set(shown) == {s.url for s in servers}
        for server in servers[:2]:
            row = shown[server.url]
            assert row["peer"] == server.runtime.peer_id
            assert row["impl"] == "py-libp2p (synthetic)"
            assert row["conns"] == "20"
        # Hostile names are text: shown as written, never parsed as markup.
        hostile = shown[servers[2].url]
        assert (hostile["peer"], hostile["peerTitle"], hostile["impl"]) == (
            HOSTILE_PEER, HOSTILE_PEER, HOSTILE_IMPL)  # fmt: skip
        assert page.evaluate("() => window.__xss") == []
        assert page.evaluate("() => window.__injected") == []
        # The dashboard was started for the first server: its row is the focused one.
        expect(page.locator("#nodes-body tr.focused .c-url code")).to_have_text(servers[0].url)
        expect(page.locator("#peer-id")).to_have_text(servers[0].runtime.peer_id)

        # A click focuses another node: the node card and every other view show it.
        page.click(f"#nodes-body tr[data-id={shown[servers[1].url]['id']}] .c-impl")
        expect(page.locator("#peer-id")).to_have_text(servers[1].runtime.peer_id)
        expect(page.locator("#server-url")).to_have_text(servers[1].url)
        expect(page.locator("#nodes-body tr.focused .c-url code")).to_have_text(servers[1].url)
        page.click("button[data-tab=connections]")
        peers_before = page.evaluate("() => window.dashboardState.view.conns.map(c => c.peer)")
        page.click("button[data-tab=nodes]")
        page.click(f"#nodes-body tr[data-id={hostile['id']}] .c-status")
        expect(page.locator("#peer-id")).to_have_text(HOSTILE_PEER)
        expect(page.locator("#runtime-impl")).to_have_text(HOSTILE_IMPL)
        page.click("button[data-tab=connections]")
        page.wait_for_function(
            "(before) => { const v = window.dashboardState.view; return v && v.conns.length === 20 &&"
            " v.conns.every(c => !before.includes(c.peer)); }", arg=peers_before)  # fmt: skip
        page.click("button[data-tab=nodes]")
        shot(page, "nodes-view")

        # A node that stops stays listed, as gone.
        stopped = servers[1].url
        nodes.stop(1)
        gone = page.locator("#nodes-body tr.node-gone")
        expect(gone).to_have_count(1)
        expect(gone.locator(".c-url code")).to_have_text(stopped)
        expect(gone.locator(".c-status span")).to_have_text("gone")
        expect(page.locator("#nodes-body tr.node-live")).to_have_count(2)
        expect(page.locator("#nodes-summary")).to_contain_text("2 live")
        shot(page, "nodes-view-gone")
        assert page.evaluate("() => window.__xss") == []
