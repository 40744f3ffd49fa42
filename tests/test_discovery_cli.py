"""Discovery as a user meets it (PROTOCOL.md §6): several servers on one machine, each
started without a port, found by ``nodes`` and by clients without a URL."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack

from cli_process import running

from libp2p_introspection.protocol.discovery import INTROSPECTION_PORTS

CLI = [sys.executable, "-m", "libp2p_introspection"]
MOCK = ["-m", "libp2p_introspection", "serve", "--source", "mock", "--connections", "3",
        "--interval-ms", "100"]  # fmt: skip


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _nodes() -> list[dict[str, object]]:
    result = _cli("nodes", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _wait_for_nodes(count: int, timeout: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        found = _nodes()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_two_servers_without_a_port_both_serve_and_nodes_lists_them():
    with running(MOCK) as (first, url1), running([*MOCK, "--token", "abc123"]) as (second, url2):
        assert url1 != url2
        assert {_port(url1), _port(url2)} <= set(INTROSPECTION_PORTS.candidates())
        found = _nodes()
        assert [(n["url"], n["pid"], n["token_required"]) for n in found] == [
            (url1, first.pid, False), (url2, second.pid, True)
        ]  # fmt: skip
        for node in found:
            assert node["implementation"] == "py-libp2p (synthetic)"
            assert node["metrics_url"] is None and 0 <= node["age_s"] < 120
            assert isinstance(node["peer_id"], str) and node["peer_id"]
        table = _cli("nodes")
        assert table.returncode == 0
        assert url1 in table.stdout and url2 in table.stdout and "required" in table.stdout
        # Not on a terminal, a client without a URL cannot ask: it lists them.
        result = _cli("watch", "--count", "1")
        assert result.returncode == 2
        assert url1 in result.stderr and url2 in result.stderr
    # Both stopped (Ctrl-C): their entries are gone.
    assert _nodes() == []


def test_a_client_without_a_url_connects_to_the_one_registered_server():
    with running([*MOCK, "--port", "0"]) as (_, url):
        result = _cli("watch", "--count", "1", "--no-events")
        assert result.returncode == 0, result.stderr
        assert f"connecting to {url}" in result.stderr
        assert result.stdout.strip()
        recorded = _cli("record", "--count", "2", "-o", os.devnull, "--no-progress")
        assert recorded.returncode == 0, recorded.stderr
        assert f"connecting to {url}" in recorded.stderr


def _talk(argv: list[str], answer: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal; answer its question; return (exit, output)."""
    main, child = pty.openpty()
    process = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    output, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if not answered and b"Which one" in output:
                    os.write(main, answer.encode() + b"\n")
                    answered = True
            elif process.poll() is not None:
                break
        return process.wait(timeout=15), output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)


def test_on_a_terminal_the_client_names_the_servers_and_asks_which():
    with ExitStack() as stack:
        _, url1 = stack.enter_context(running([*MOCK, "--port", "0"]))
        _, url2 = stack.enter_context(running([*MOCK, "--port", "0", "--token", "abc123"]))
        # The token goes to the one server chosen (which requires it).
        code, output = _talk([*CLI, "watch", "--count", "1", "--no-events", "--token",
                              "abc123"], "2")  # fmt: skip
        assert code == 0, output
        assert f"1) {url1}" in output and f"2) {url2}" in output
        assert "token required" in output
        assert f"connecting to {url2}" in output


def test_two_nodes_each_attaching_without_a_port_both_work(tmp_path):
    script = tmp_path / "node.py"
    script.write_text(
        "import trio\n"
        "from libp2p import new_host\n"
        "from multiaddr import Multiaddr\n"
        "from libp2p_introspection.attach import attach_introspection\n"
        "async def main():\n"
        "    host = new_host()\n"
        "    async with host.run(listen_addrs=[Multiaddr('/ip4/127.0.0.1/tcp/0')]):\n"
        "        async with attach_introspection(host) as server:\n"
        "            print(server.url, host.get_id(), flush=True)\n"
        "            await trio.sleep_forever()\n"
        "try:\n"
        "    trio.run(main)\n"
        "except* KeyboardInterrupt:\n"
        "    pass\n"
    )
    with running([str(script)]) as (a, line1), running([str(script)]) as (b, line2):
        (url1, peer1), (url2, peer2) = line1.split(), line2.split()
        assert url1 != url2 and peer1 != peer2
        found = _nodes()
        assert {(n["url"], n["peer_id"], n["pid"]) for n in found} == {
            (url1, peer1, a.pid), (url2, peer2, b.pid)
        }  # fmt: skip
        assert all(n["implementation"] == "py-libp2p" for n in found)
        for url in (url1, url2):
            result = _cli("watch", url, "--count", "1", "--no-events")
            assert result.returncode == 0, result.stderr


def test_demo_all_serves_and_registers_every_node():
    with running(["-m", "libp2p_introspection", "demo", "--all", "--nodes", "3",
                  "--no-dashboard", "--port", "0", "--interval-ms", "200"],
                 first_line_timeout=120) as (demo, url):  # fmt: skip
        found = _wait_for_nodes(3)
        assert len(found) == 3, found
        assert {n["pid"] for n in found} == {demo.pid}
        assert len({n["peer_id"] for n in found}) == 3
        assert url in {n["url"] for n in found}
        for node in found:
            assert node["implementation"] == "py-libp2p"
            result = _cli("watch", str(node["url"]), "--count", "2", "--no-events", "--json")
            assert result.returncode == 0, result.stderr
            lines = [json.loads(line) for line in result.stdout.splitlines()]
            # Each is a live node of the network: it has connections of its own.
            assert any(line.get("connections", 0) > 0 for line in lines), lines
        # ... and its own Prometheus endpoint, registered with it.
        metrics = [node["metrics_url"] for node in found]
        assert None not in metrics and len(set(metrics)) == 3, metrics
        for metrics_url in metrics:
            with urllib.request.urlopen(metrics_url, timeout=30) as answer:
                assert b"libp2p_swarm_connections_opened_total" in answer.read()
    assert _nodes() == []


def test_announce_with_a_loopback_host_is_an_error_naming_host():
    result = _cli("serve", "--source", "mock", "--announce")
    assert result.returncode == 2
    assert "--host" in result.stderr and "--announce" in result.stderr
    assert "loopback" in result.stderr


def test_nodes_with_no_server_says_where_clients_go():
    result = _cli("nodes")
    assert result.returncode == 0
    assert "No introspection server found" in result.stdout
    assert "ws://127.0.0.1:8845/introspect" in result.stdout
    assert _nodes() == []
