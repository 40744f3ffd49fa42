"""``nodes --prometheus-sd FILE``: a Prometheus file-based service discovery file of
the registered metrics endpoints, kept current as servers come and go, and a real
Prometheus (Debian's /usr/bin/prometheus) that follows three servers through it.

The servers are real (in this process, registered in the test's own registry);
the ``nodes`` command runs as a user runs it, in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from metrics_helpers import prometheus_binary
from test_metrics_prometheus import MAX_WAIT_S, _free_port, _query

from libp2p_introspection.client.prometheus_sd import render, write_atomically
from libp2p_introspection.protocol.discovery import ServerEntry
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

CLI = [sys.executable, "-m", "libp2p_introspection"]


def _source(seed: int) -> SyntheticSource:
    return SyntheticSource(SyntheticOptions(connections=3, streams=1, seed=seed, churn=0.34))


def _expected(server, *, token: bool = False) -> dict[str, object]:
    """The target group a user expects for ``server``: its metrics port and its node."""
    entry = server.entry()
    return {
        "targets": [f"127.0.0.1:{server.metrics.port}"],
        "labels": {"peer_id": entry.peer_id, "implementation": entry.implementation,
                   "token_required": "true" if token else "false"},
    }  # fmt: skip


def _groups(path: Path) -> list[dict[str, object]]:
    return sorted(json.loads(path.read_text()), key=lambda g: g["targets"])


async def _wait_for_file(path: Path, process: subprocess.Popen, differs_from: object) -> object:
    """The file's groups once they are not ``differs_from`` (bounded: 120 s)."""
    with trio.move_on_after(MAX_WAIT_S):
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            if path.exists():
                groups = _groups(path)
                if groups != differs_from:
                    return groups
            await trio.sleep(0.2)
    pytest.fail(f"{path} did not change within {MAX_WAIT_S} s")


async def _serve(number: int, config: ServerConfig, stop: trio.Event, *,
                 task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve a synthetic node until ``stop`` is set (each server in its own task, so
    that any one of them can stop while the others go on)."""
    async with open_introspection_server(_source(number), config) as server:
        task_status.started(server)
        await stop.wait()


async def test_the_sd_file_lists_the_metrics_endpoints_and_follows_them(tmp_path: Path):
    sd = tmp_path / "libp2p.json"
    stops = [trio.Event() for _ in range(4)]
    async with trio.open_nursery() as nursery:
        servers = []
        for number in range(3):
            token = "sekrit-token-value" if number == 2 else None
            config = ServerConfig(port=0, metrics_port=0, token=token, interval_ms=250)
            servers.append(await nursery.start(_serve, number, config, stops[number]))
        # a server without metrics: nothing to scrape, not in the file
        await nursery.start(_serve, 9, ServerConfig(port=0, interval_ms=250), stops[3])
        try:
            once = await trio.run_process([*CLI, "nodes", "--prometheus-sd", str(sd), "--once"],
                                          capture_stdout=True, capture_stderr=True, check=False)  # fmt: skip
            assert once.returncode == 0, once.stderr
            expected = sorted([_expected(servers[0]), _expected(servers[1]),
                               _expected(servers[2], token=True)], key=lambda g: g["targets"])  # fmt: skip
            assert _groups(sd) == expected
            assert b"sekrit-token-value" not in sd.read_bytes()
            assert oct(sd.stat().st_mode & 0o777) == oct(0o644)  # Prometheus may be another user
            assert b"wrote 3 metrics targets" in once.stderr

            stopped = _expected(servers[1])
            follower = subprocess.Popen([*CLI, "nodes", "--prometheus-sd", str(sd)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            try:
                await _wait_for_file(sd, follower, differs_from=None)
                stops[1].set()  # one node stops: its entry leaves the registry
                after = await _wait_for_file(sd, follower, differs_from=expected)
                assert after == [group for group in expected if group != stopped]
                assert len(after) == 2
            finally:
                follower.send_signal(signal.SIGINT)
                assert follower.wait(timeout=30) == 0  # Ctrl-C ends it cleanly
                follower.stderr.close()
            assert _groups(sd) == after  # the file stays as last written
        finally:
            for stop in stops:
                stop.set()


def _entry(metrics_url: str | None) -> ServerEntry:
    return ServerEntry(url="ws://127.0.0.1:1/introspect", peer_id="12D3KooWx",
                       implementation="py-libp2p", pid=1, started_ms=0,
                       token_required=False, metrics_url=metrics_url)  # fmt: skip


def test_metrics_path_and_scheme_are_set_when_not_the_defaults_and_bad_urls_are_skipped():
    groups = json.loads(render([
        _entry("https://127.0.0.1:9000/node/metrics"), _entry(None), _entry("ftp://h:1/x"),
        _entry("http://nohost/metrics"), _entry("http://127.0.0.1:99999999/metrics"),
        _entry("http://[::1]:9001/metrics"),
    ]))  # fmt: skip
    assert groups == [
        {"targets": ["127.0.0.1:9000"],
         "labels": {"peer_id": "12D3KooWx", "implementation": "py-libp2p",
                    "token_required": "false", "__metrics_path__": "/node/metrics",
                    "__scheme__": "https"}},
        {"targets": ["[::1]:9001"],
         "labels": {"peer_id": "12D3KooWx", "implementation": "py-libp2p",
                    "token_required": "false"}},
    ]  # fmt: skip


def test_the_file_is_replaced_by_a_rename_and_a_failed_write_leaves_nothing(tmp_path: Path):
    path = tmp_path / "sd.json"
    write_atomically(str(path), b"[]\n")
    first = path.stat().st_ino
    write_atomically(str(path), b'[{"targets": []}]\n')
    # a new file renamed over the old one: a reader holding the old one sees it whole
    assert path.stat().st_ino != first and path.read_bytes() == b'[{"targets": []}]\n'
    assert sorted(os.listdir(tmp_path)) == ["sd.json"]  # no temporary file left
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(OSError):
        write_atomically(str(tmp_path / "a-directory"), b"[]\n")
    assert sorted(os.listdir(tmp_path)) == ["a-directory", "sd.json"]


async def test_a_real_prometheus_scrapes_three_nodes_found_through_the_sd_file(tmp_path: Path):
    binary = prometheus_binary()
    sd = tmp_path / "libp2p.json"
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(open_introspection_server(
                _source(number), ServerConfig(port=0, metrics_port=0, interval_ms=250)))
            for number in range(3)
        ]  # fmt: skip
        follower = subprocess.Popen([*CLI, "nodes", "--prometheus-sd", str(sd)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        web = _free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: py-libp2p\n"
            f"    file_sd_configs:\n      - files: ['{sd}']\n        refresh_interval: 1s\n"
        )
        prometheus = None
        try:
            await _wait_for_file(sd, follower, differs_from=None)
            prometheus = subprocess.Popen(
                [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{web}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            api = f"http://127.0.0.1:{web}"
            peers = {server.entry().peer_id for server in servers}
            instances = {f"127.0.0.1:{server.metrics.port}" for server in servers}
            with trio.move_on_after(MAX_WAIT_S):
                while True:
                    assert prometheus.poll() is None, "prometheus exited"
                    try:
                        up = await trio.to_thread.run_sync(_query, api, 'up{job="py-libp2p"} == 1')
                        opened = await trio.to_thread.run_sync(
                            _query, api, "sum by (instance, peer_id) "
                            "(libp2p_swarm_connections_opened_total)")  # fmt: skip
                    except OSError:
                        up = opened = []  # not listening yet
                    if len(up) == 3 and len(opened) == 3:
                        break
                    await trio.sleep(0.5)
            assert {row["metric"]["instance"] for row in up} == instances, up
            assert {row["metric"]["peer_id"] for row in up} == peers
            assert {row["metric"]["peer_id"] for row in opened} == peers, opened
            assert {row["metric"]["instance"] for row in opened} == instances
            assert all(float(row["value"][1]) >= 3 for row in opened)  # 3 ACTIVE each, at least
        finally:
            for process in (prometheus, follower):
                if process is None:
                    continue
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            follower.stderr.close()
