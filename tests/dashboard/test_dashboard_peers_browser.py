"""The Peers view and Save recording in headless Chromium (as test_dashboard_browser.py,
whose fixtures and helpers this reuses): peers grouped by agent with their counts, on a
recording and along the timeline; the file Save recording downloads, from a recording
and from a live node while paused, read back by the project's reader and by the page;
and no other page can have it."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from cli_process import running
from full_node import write_full_recording
from peers_recording import GO, PEERS, PY, write_peers_recording
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    assert_nothing_ran,
    browser,
    open_tab,
    page,
    shot,
)

from libp2p_introspection.protocol.recording import RecordingReader

GROUPS = "#peers-table .tabulator-group"
ROWS = "#peers-table .tabulator-row:not(.tabulator-group)"


def _dashboard(*args: str) -> Any:
    return running(["-m", "libp2p_introspection", "dashboard", "--port", "0", *args],
                   first_line_timeout=60)  # fmt: skip


def _records(data: bytes) -> list[tuple[str, bytes]]:
    """(kind, ServerMessage bytes) of every record; any bad checksum or cut record raises."""
    with RecordingReader(io.BytesIO(data), errors="raise") as reader:
        return [(record.kind, record.data) for record in reader]


def test_the_peers_view_groups_the_peers_by_agent_along_the_timeline(page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    with _dashboard("--file", str(write_peers_recording(tmp_path / "peers.mock"))) as (_, url):
        page.goto(url)
        open_tab(page, "peers")
        expect(page.locator("#peers-summary")).to_have_text("6 peers (5 identified) · 4 agents")
        # The most common agent first; the peers without an agent version, then those not
        # identified, last. A peer on two connections is one peer.
        expect(page.locator(GROUPS)).to_have_text([
            f"{GO}3 peers", f"{PY}1 peer", "(no agent version)1 peer", "(not identified)1 peer",
        ])  # fmt: skip
        expect(page.locator("#peers-agents .chip")).to_have_text(
            [f"{GO}3", f"{PY}1", "(no agent version)1", "(not identified)1"]
        )
        expect(page.locator(ROWS)).to_have_count(len(PEERS))
        py = page.locator(ROWS).filter(has=page.locator(f'[title="{_peer(PY)}"]'))
        expect(py.locator("[tabulator-field=conns]")).to_have_text("1 / 2")  # one of them closed
        expect(py.locator("[tabulator-field=protoVersion]")).to_have_text("ipfs/0.1.0")
        expect(py.locator("[tabulator-field=listen]")).to_have_text("/ip4/10.0.0.4/tcp/4001 +1")
        expect(py.locator("[tabulator-field=observed]")).to_have_text("/ip4/203.0.113.7/tcp/4001")
        py.locator("[tabulator-field=nprotocols]").hover()
        expect(page.locator(".tabulator-tooltip").last).to_have_text(
            "/ipfs/id/1.0.0\n/ipfs/ping/1.0.0"
        )
        unknown = page.locator(ROWS).filter(has=page.locator(f'[title="{_peer(None)}"]'))
        expect(unknown.locator("[tabulator-field=protoVersion]")).to_have_text("—")
        shot(page, "peers")

        # A chip shows that agent's peers alone; again, every agent's.
        page.locator("#peers-agents .chip", has_text=GO).click()
        expect(page.locator(GROUPS)).to_have_text([f"{GO}3 peers"])
        expect(page.locator(ROWS)).to_have_count(3)
        page.locator("#peers-agents .chip", has_text=GO).click()
        expect(page.locator(ROWS)).to_have_count(len(PEERS))

        # The first snapshot: the go-libp2p peers only.
        page.locator("#timeline").fill("0")
        expect(page.locator("#peers-summary")).to_have_text("3 peers (3 identified) · 1 agent")
        expect(page.locator(GROUPS)).to_have_text([f"{GO}3 peers"])
        page.click("#live-btn")
        expect(page.locator("#peers-summary")).to_have_text("6 peers (5 identified) · 4 agents")


def _peer(agent: str | None) -> str:
    return next(peer for peer, (a, _) in PEERS.items() if a == agent)


def test_save_recording_of_an_opened_recording_downloads_the_same_file(page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    path = write_full_recording(tmp_path / "full.mock")
    with _dashboard("--file", str(path)) as (_, url):
        page.goto(url)
        expect(page.locator("#recording-name")).to_contain_text("4 snapshots · 6 events")
        save = page.locator("#save-recording")
        expect(save).to_be_visible()
        expect(save).to_have_attribute("title", re.compile("4 snapshots .* of this recording"))
        with page.expect_download() as download:
            save.click()
        saved = download.value
        assert saved.failure() is None
        assert re.fullmatch(r"12D3KooW-OwnOwn_20231114T221320Z_3s\.mock", saved.suggested_filename)
        data = Path(saved.path()).read_bytes()
        assert data == path.read_bytes()  # each record as the file held it, in its order
        assert_nothing_ran(page)


def test_save_recording_of_a_live_node_while_paused_reads_back_in_the_page(
    page: Any,  # noqa: F811
    tmp_path: Path,
):
    from playwright.sync_api import expect

    source = write_full_recording(tmp_path / "full.mock")
    serve = ["-m", "libp2p_introspection", "serve", "--source", str(source), "--loop",
             "--port", "0"]  # fmt: skip
    with running(serve, first_line_timeout=60) as (_, ws_url), _dashboard(ws_url) as (_, url):
        page.goto(url)
        expect(page.locator("#conn-state")).to_have_text("connected")
        page.wait_for_function(
            "() => window.dashboardState.timeline.length >= 3 && window.dashboardState.events.length >= 6"
        )
        page.click("#pause-btn")
        expect(page.locator("#feed-state")).to_have_text("paused")
        expect(page.locator("#save-recording")).to_have_attribute("title", re.compile("kept while paused"))
        # A snapshot asked for before the pause may still come: save until the store was
        # the same before and after the download (twice at most, then).
        status = "() => fetch('/api/status').then((r) => r.json()).then((s) => s.store)"
        for _ in range(3):
            before = page.evaluate(status)
            with page.expect_download() as download:
                page.click("#save-recording")
            data = Path(download.value.path()).read_bytes()
            kept = page.evaluate(status)
            if kept == before:
                break
        assert kept == before, (before, kept)
        kinds = [kind for kind, _ in _records(data)]
        assert kinds[0] == "runtime" and kinds.count("runtime") == 1
        assert kinds.count("state") == kept["snapshots"] >= 3, (kinds, kept)
        assert kinds.count("event") == kept["events"] >= 6, (kinds, kept)
        assert re.fullmatch(r"12D3KooW-OwnOwn_\d{8}T\d{6}Z_\d+s\.mock", download.value.suggested_filename)

        # The page opens it as any recording: the same snapshots and events.
        page.set_input_files("#file-input", files=[
            {"name": "saved.mock", "mimeType": "application/octet-stream", "buffer": data}
        ])  # fmt: skip
        expect(page.locator("#recording-name")).to_contain_text(
            f"saved.mock · {kept['snapshots']} snapshots · {kept['events']} events"
        )
        open_tab(page, "peers")
        expect(page.locator(GROUPS)).to_have_text(["py-libp2p/0.8.11 peer", "(not identified)1 peer"])


class _OtherSite:
    """Another site's pages, served on loopback: each tries to have the saved recording."""

    def __init__(self, dashboard: str) -> None:
        import http.server
        import threading

        target = dashboard.rstrip("/") + "/api/recording/save"
        done = '.then((r) => r.status, (e) => "refused").then((s) => { document.title = "done " + s; })'
        pages = {
            # A script reading it (CORS), and one that asks blind (no-cors: an opaque
            # answer, which Cross-Origin-Resource-Policy refuses the page too).
            "/fetch": f'<script>fetch("{target}"){done}</script>',
            "/no-cors": f'<script>fetch("{target}", {{mode: "no-cors"}}){done}</script>',
            # A link to it (a download the user did not ask for).
            "/link": f'<a id=a href="{target}" download>x</a><script>a.click()</script>',
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


def test_no_other_page_can_have_the_saved_recording(page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    path = write_full_recording(tmp_path / "full.mock")
    with _dashboard("--file", str(path)) as (_, url):
        other = _OtherSite(url)
        try:
            for origin in (f"http://evil.test:{other.port}", f"http://127.0.0.1:{other.port}"):
                for name in ("/fetch", "/no-cors"):
                    failed: list[str] = []

                    def note(request: Any, failed: list[str] = failed) -> None:
                        failed.append(request.url)

                    page.on("requestfailed", note)
                    page.goto(origin + name)
                    page.wait_for_function("() => document.title.startsWith('done')")
                    # The script read nothing: the browser refused it the answer (which
                    # the dashboard refused too: test_dashboard_save.py).
                    assert page.title() == "done refused", (origin, name, page.title())
                    assert any("/api/recording/save" in u for u in failed), (origin, name)
                    page.remove_listener("requestfailed", note)
                # A link on that page: a navigation (another site's link cannot make a
                # download of it), answered with the refusal.
                with page.expect_response(lambda r: "/api/recording/save" in r.url) as answer:
                    page.goto(origin + "/link")
                assert answer.value.status == 403, (origin, answer.value.status)
                expect(page.locator("body")).to_contain_text(
                    "only the dashboard's own page can save the recording"
                )
        finally:
            other.close()
