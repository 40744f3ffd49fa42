"""``libp2p-introspect dashboard`` and ``demo`` (with its dashboard) as a user runs them, no browser."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cli_process import running
from dashboard_process import read_lines_until

SAMPLE_PEER = "8de3166db28fddb199f05be0acea65772e7a1b289086902160d1060e83dac2fd"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_dashboard_file_prints_its_url_and_serves_the_recording(fixtures_dir: Path):
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0",
            "--file", str(fixtures_dir / "sample-1min.mock")]  # fmt: skip
    with running(args, first_line_timeout=60) as (_, url):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        status = get_json(url + "api/status")
        assert status["mode"] == "recording" and status["recording"]["states"] == 30
        assert status["connection"] == "disconnected"
        snapshot = get_json(url + "api/snapshot")
        assert len(snapshot["conns"]) == 10


def test_dashboard_refuses_what_it_cannot_show(tmp_path: Path):
    junk = tmp_path / "junk.mock"
    junk.write_bytes(b"this is not a recording")
    result = subprocess.run(
        [sys.executable, "-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(junk)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "cannot show" in result.stderr, result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "libp2p_introspection", "dashboard", "http://127.0.0.1:1/"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "WebSocket URL" in result.stderr


def test_demo_prints_the_ws_url_first_then_its_dashboard_which_follows_the_node():
    args = ["-m", "libp2p_introspection", "demo", "--port", "0", "--dashboard-port", "0",
            "--interval-ms", "300", "--nodes", "2", "--no-churn", "--seed", "3"]  # fmt: skip
    with running(args, first_line_timeout=90) as (process, first):
        assert first.startswith("ws://127.0.0.1:") and first.endswith("/introspect")
        lines = read_lines_until(process, lambda line: line.startswith("Dashboard: "), 30)
        dashboard = lines[-1].split()[1]
        assert dashboard.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 30
        while True:
            status = get_json(dashboard + "api/status")
            if status["connection"] == "connected" and status["store"]["snapshots"] >= 2:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["url"] == first and status["mode"] == "live"
        assert get_json(dashboard + "api/snapshot")["conns"]
