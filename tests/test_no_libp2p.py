"""``serve --source mock`` and ``serve --source FILE`` run without py-libp2p (issue 11, point 3):
the synthetic node and a replay share the event vocabulary with the introspector, not its
py-libp2p modules, so neither loads them nor needs them to be installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_process import read_line

SCRIPT = str(Path(__file__).with_name("no_libp2p_cli.py"))


@pytest.mark.parametrize("source", ["mock", "recording"])
def test_serve_mock_and_file_import_no_libp2p(source: str, fixtures_dir: Path) -> None:
    """The CLI serves the source with every ``libp2p`` import made to fail; a client gets
    snapshots and events; at exit not one ``libp2p`` module is in ``sys.modules``."""
    args = (
        ["--source", "mock", "--connections", "20", "--events-per-second", "50"]
        if source == "mock"
        else ["--source", str(fixtures_dir / "sample-dht-2min.mock"), "--speed", "20"]
    )
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "serve", *args, "--port", "0", "--interval-ms", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        url = read_line(process, 60)
        assert url.startswith("ws://127.0.0.1:"), url
        watched = subprocess.run(
            [sys.executable, "-m", "libp2p_introspection", "watch", url, "--count", "4",
             "--events", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert watched.returncode == 0, watched.stderr
        lines = [json.loads(line) for line in watched.stdout.splitlines()]
        kinds = [line.get("kind") for line in lines]
        assert kinds.count("state") == 4 and "event" in kinds, kinds
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate(timeout=5)
    assert "blocked import" not in stderr, stderr
    assert "libp2p modules loaded: 0 []" in stderr, stderr
