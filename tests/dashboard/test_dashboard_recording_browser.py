"""The page tells what a hostile recording's loading skipped (headless Chromium, as in
test_dashboard_browser.py, whose browser and page fixtures this reuses)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cli_process import running
from hostile_records import empty_connections_state, normal_state, runtime, write
from test_dashboard_browser import browser, page  # noqa: F401 - the fixtures


def test_a_snapshot_skipped_for_the_limits_is_shown_on_the_page(page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    path = write(tmp_path / "million.mock", [runtime(), normal_state(1_000),
                                             empty_connections_state(1_000_000, 2_000)])  # fmt: skip
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path)]
    with running(args, first_line_timeout=60) as (_, url):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        page.goto(url)
        expect(page.locator("#recording-name")).to_contain_text(
            "1 snapshots · 0 events · 1 skipped (over the expansion limits)"
        )
        expect(page.locator("#message")).to_contain_text("more than 40,000 connections")
        expect(page.locator("#connections-table .tabulator-row")).to_have_count(2)
